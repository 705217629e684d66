//! Start, hibernate, wake and terminate: each idempotent, keyed by the
//! domain name, so a command delivered twice does no harm.
//!
//! Hibernate is libvirt's managed save: QEMU writes the VM's memory and
//! device state to libvirt's save directory and exits, releasing its CPU
//! and RAM; the domain is shut off with a managed save image. Wake is a
//! plain start, which libvirt turns into a restore from that image (and
//! deletes it): the guest continues where it was.

use crate::Shared;
use crate::domain::{DomainPlan, Overlay, domain_name, validate_name, validate_session_id};
use crate::error::is_missing;
use crate::labels::SessionMetadata;
use crate::observe::{Found, lookup};
use crate::storage::{self, PoolDisk};
use streamspace_agent::intent::Intent;
use streamspace_agent::{OrNotFound, PlatformError, PlatformResult};
use streamspace_protocol::{Phase, SessionId, SessionReport, SessionSpec};
use virt::domain::Domain;
use virt::error::ErrorNumber;
use virt_sys as sys;

impl Shared {
    /// Defines and starts the session's domain if needed, or makes sure
    /// the existing one runs. An existing domain keeps its spec (a changed
    /// one takes effect after terminate and start).
    #[tracing::instrument(skip(self, spec), fields(session_id = %spec.session_id, agent_id = %self.agent_id))]
    pub(crate) async fn start(&self, spec: &SessionSpec) -> PlatformResult<SessionReport> {
        validate_session_id(&spec.session_id).map_err(PlatformError::Invalid)?;
        let session_id = &spec.session_id;
        self.intents.clear(session_id);
        if let Some(found) = self.inspect(session_id).await? {
            self.check_owner(&found)?;
            return self
                .ensure_running(session_id, &found, Phase::Starting)
                .await;
        }

        // Resolved first: the domain names its path (domain.rs says why).
        let base = self.check_base(&spec.image).await?;
        let name = domain_name(session_id);
        let pool = &self.options.pool;
        let overlay = PoolDisk {
            pool: pool.clone(),
            volume: format!("{name}.qcow2"),
        };
        let home = match &spec.home {
            Some(home) => {
                validate_name("home volume", &home.volume).map_err(PlatformError::Invalid)?;
                Some(PoolDisk {
                    pool: pool.clone(),
                    volume: format!("{}.qcow2", home.volume),
                })
            }
            None => None,
        };
        let serial_log = self
            .options
            .log_dir
            .join(format!("{name}.serial.log"))
            .to_string_lossy()
            .into_owned();
        let mut metadata = SessionMetadata::of(spec, &self.agent_id);
        metadata.overlay = Some((overlay.pool.clone(), overlay.volume.clone()));
        metadata.serial_log = Some(serial_log.clone());
        let plan = DomainPlan::new(
            spec,
            self.acceleration,
            Overlay {
                disk: overlay.clone(),
                base: base.clone(),
            },
            home.clone(),
            serial_log,
            self.options.network.clone(),
            metadata,
        )
        .map_err(PlatformError::Invalid)?;
        let description = plan.render();
        let home_bytes = spec.vm.home_size().bytes();
        let hypervisor = self.hypervisor.clone();
        let uri = self.hypervisor.uri().to_owned();
        self.hypervisor
            .call(move |conn| {
                storage::create_overlay(conn, &uri, &overlay, &base)?;
                if let Some(home) = &home {
                    storage::create_home(conn, &uri, home, home_bytes)?;
                }
                let domain = Domain::define_xml(conn, &description)
                    .map_err(|e| hypervisor.error(format!("define domain {name}"), &e))?;
                tracing::info!(domain = %name, "defined domain");
                // A domain that cannot start is kept: its state says why
                // (phase.rs), and terminate removes it.
                domain
                    .create()
                    .map_err(|e| hypervisor.error(format!("start domain {name}"), &e))?;
                tracing::info!(domain = %name, "started domain");
                Ok(())
            })
            .await?;
        Ok(SessionReport::new(session_id, Phase::Starting))
    }

    /// Saves the VM's memory to disk and stops it (managed save).
    #[tracing::instrument(skip(self), fields(agent_id = %self.agent_id))]
    pub(crate) async fn hibernate(&self, session_id: &SessionId) -> PlatformResult<SessionReport> {
        let found = self
            .inspect_owned(session_id)
            .await
            .or_not_found(session_id)?;
        // Recorded first so the watcher reads the events as ours.
        self.intents.set(session_id, Intent::Hibernate);
        if is_live(found.state.state) {
            let name = found.name.clone();
            let hypervisor = self.hypervisor.clone();
            self.hypervisor
                .call(move |conn| {
                    let failed =
                        |e: &virt::error::Error| hypervisor.error(format!("save domain {name}"), e);
                    let Some(domain) = lookup(conn, &name).map_err(|e| failed(&e))? else {
                        return Ok(());
                    };
                    match domain.managed_save(0) {
                        Ok(_) => {
                            tracing::info!(domain = %name, "saved the VM's memory (managed save)")
                        }
                        // Stopped meanwhile: its status says how.
                        Err(e) if e.code() == ErrorNumber::OperationInvalid => {}
                        Err(e) => return Err(failed(&e)),
                    }
                    Ok(())
                })
                .await?;
        }
        self.status(session_id).await
    }

    /// Restores a hibernated VM (or boots a stopped one again).
    #[tracing::instrument(skip(self), fields(agent_id = %self.agent_id))]
    pub(crate) async fn wake(&self, session_id: &SessionId) -> PlatformResult<SessionReport> {
        let found = self
            .inspect_owned(session_id)
            .await
            .or_not_found(session_id)?;
        self.intents.clear(session_id);
        self.ensure_running(session_id, &found, Phase::Waking).await
    }

    /// Destroys and undefines the domain (with its managed save image) and
    /// deletes its overlay and serial log; the home disk is kept.
    #[tracing::instrument(skip(self), fields(agent_id = %self.agent_id))]
    pub(crate) async fn terminate(&self, session_id: &SessionId) -> PlatformResult<SessionReport> {
        let found = match self.inspect(session_id).await? {
            // Never remove a domain of the same name another agent owns.
            Some(found) if !self.is_ours(&found) => {
                return Ok(SessionReport::new(session_id, Phase::Terminated));
            }
            found => found,
        };
        self.intents.set(session_id, Intent::Terminate);
        let name = domain_name(session_id);
        let metadata = found.as_ref().and_then(|f| f.metadata.clone());
        let overlay = match metadata.as_ref().and_then(|m| m.overlay.clone()) {
            Some((pool, volume)) => PoolDisk { pool, volume },
            // A start that failed before defining the domain may have left
            // its overlay (named by the session id, so ours).
            None => PoolDisk {
                pool: self.options.pool.clone(),
                volume: format!("{name}.qcow2"),
            },
        };
        let hypervisor = self.hypervisor.clone();
        let uri = self.hypervisor.uri().to_owned();
        let defined = found.is_some();
        self.hypervisor
            .call(move |conn| {
                if defined {
                    remove_domain(conn, &hypervisor, &name)?;
                }
                storage::delete_volume(conn, &uri, &overlay)
            })
            .await?;
        if let Some(log) = metadata.and_then(|m| m.serial_log) {
            match tokio::fs::remove_file(&log).await {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => tracing::warn!(log, error = %e, "could not remove the serial log"),
            }
        }
        tracing::info!("terminated the session's VM");
        Ok(SessionReport::new(session_id, Phase::Terminated))
    }

    /// Starts (or resumes) a domain unless it runs; reports `Running` if it
    /// already did, `Waking` when a managed save is restored and `started`
    /// otherwise.
    async fn ensure_running(
        &self,
        session_id: &SessionId,
        found: &Found,
        started: Phase,
    ) -> PlatformResult<SessionReport> {
        let state = found.state;
        let phase = match state.state {
            sys::VIR_DOMAIN_RUNNING | sys::VIR_DOMAIN_BLOCKED => {
                return Ok(self.report(session_id, found));
            }
            sys::VIR_DOMAIN_PAUSED if state.reason == sys::VIR_DOMAIN_PAUSED_SAVE as i32 => {
                return Err(PlatformError::Unavailable(format!(
                    "session {session_id} is being hibernated; wake it once that is done"
                )));
            }
            sys::VIR_DOMAIN_PAUSED | sys::VIR_DOMAIN_PMSUSPENDED => Phase::Running,
            _ if state.has_managed_save => Phase::Waking,
            _ => started,
        };
        let name = found.name.clone();
        let hypervisor = self.hypervisor.clone();
        self.hypervisor
            .call(move |conn| {
                let failed = |action: &str, e: &virt::error::Error| {
                    hypervisor.error(format!("{action} domain {name}"), e)
                };
                let domain = lookup(conn, &name)
                    .map_err(|e| failed("look up", &e))?
                    .ok_or_else(|| PlatformError::Unavailable(format!("domain {name} vanished")))?;
                let result = match state.state {
                    sys::VIR_DOMAIN_PAUSED => domain.resume().map(drop),
                    sys::VIR_DOMAIN_PMSUSPENDED => domain.pm_wakeup(0).map(drop),
                    _ => domain.create().map(drop),
                };
                match result {
                    Ok(()) => Ok(()),
                    // Started by someone else meanwhile.
                    Err(e)
                        if e.code() == ErrorNumber::OperationInvalid
                            && domain.is_active().unwrap_or(false) =>
                    {
                        Ok(())
                    }
                    Err(e) => Err(failed("start", &e)),
                }
            })
            .await?;
        tracing::info!(%phase, "started the session's VM");
        Ok(SessionReport::new(session_id, phase))
    }
}

/// A domain whose QEMU runs (and so holds memory).
fn is_live(state: u32) -> bool {
    matches!(
        state,
        sys::VIR_DOMAIN_RUNNING
            | sys::VIR_DOMAIN_BLOCKED
            | sys::VIR_DOMAIN_PAUSED
            | sys::VIR_DOMAIN_PMSUSPENDED
    )
}

/// Destroys (if running) and undefines a domain, with its managed save
/// image, snapshot and checkpoint metadata and UEFI variables; a domain
/// that is gone already is fine.
fn remove_domain(
    conn: &virt::connect::Connect,
    hypervisor: &crate::conn::Hypervisor,
    name: &str,
) -> PlatformResult<()> {
    let failed = |action: &str, e: &virt::error::Error| {
        hypervisor.error(format!("{action} domain {name}"), e)
    };
    let Some(domain) = lookup(conn, name).map_err(|e| failed("look up", &e))? else {
        return Ok(());
    };
    if domain.is_active().unwrap_or(true) {
        match domain.destroy() {
            Ok(()) => tracing::info!(domain = name, "destroyed domain"),
            Err(e) if is_missing(&e) || e.code() == ErrorNumber::OperationInvalid => {}
            Err(e) => return Err(failed("destroy", &e)),
        }
    }
    let flags = sys::VIR_DOMAIN_UNDEFINE_MANAGED_SAVE
        | sys::VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA
        | sys::VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA
        | sys::VIR_DOMAIN_UNDEFINE_NVRAM;
    match domain.undefine_flags(flags) {
        Ok(()) => tracing::info!(domain = name, "undefined domain"),
        Err(e) if is_missing(&e) => {}
        Err(e) => return Err(failed("undefine", &e)),
    }
    Ok(())
}
