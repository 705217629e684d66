//! Start, hibernate, wake and terminate: each idempotent, keyed by the
//! container name, so a command delivered twice does no harm.

use crate::container::{
    ContainerSettings, STOP_TIMEOUT_SECS, container_config, container_name, validate_session_id,
};
use crate::error::{is_conflict, is_not_found};
use crate::existing::{missing_confinement, rewiring};
use crate::{Shared, gpu};
use bollard::models::{
    ContainerCreateBody, ContainerInspectResponse, ContainerStateStatusEnum, NetworkConnectRequest,
    NetworkDisconnectRequest,
};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, RemoveContainerOptionsBuilder, StopContainerOptionsBuilder,
};
use streamspace_agent::confinement::Confinement;
use streamspace_agent::intent::Intent;
use streamspace_agent::{OrNotFound, PlatformError, PlatformResult, homes};
use streamspace_protocol::{Phase, SessionId, SessionReport, SessionSpec};

impl Shared {
    /// Creates the session's container if needed and makes sure it runs.
    /// An existing container keeps its spec (a changed one takes effect
    /// after terminate and start); it is confined and on the sessions
    /// network before it starts again ([`Shared::prepare_restart`]).
    #[tracing::instrument(skip(self, spec), fields(session_id = %spec.session_id, agent_id = %self.agent_id))]
    pub(crate) async fn start(&self, spec: &SessionSpec) -> PlatformResult<SessionReport> {
        validate_session_id(&spec.session_id).map_err(PlatformError::Invalid)?;
        // Before anything is created: confinement that cannot be applied.
        let confinement = Confinement::of(&spec.security, &self.options.allowed_capabilities)
            .map_err(PlatformError::Invalid)?;
        let session_id = &spec.session_id;
        let name = container_name(session_id);
        self.intents.clear(session_id);

        if let Some(existing) = self.inspect_by_name(&name).await? {
            self.check_owner(&name, &existing)?;
            return self
                .ensure_running(session_id, &existing, Phase::Starting)
                .await;
        }

        // Pulled already, with progress, when the executor asked; this
        // only checks it is there (or pulls it, for a caller that did not).
        self.pull(&spec.image, spec.registry_auth.as_ref(), &|_| {})
            .await?;
        self.check_shared_volumes(spec).await?;
        let network = self.sessions_network().await?;
        // GPUs are picked and the container made under one turn, so that
        // two starts cannot pick the same.
        let _gpu_turn = match spec.resources.gpus() {
            0 => None,
            _ => Some(self.gpu_turn.lock().await),
        };
        let gpus = self.session_gpus(spec).await?;
        let settings = ContainerSettings {
            agent_id: &self.agent_id,
            publish_host: self.options.publish_host,
            network: &network,
            home_volume: homes::prepare(self, spec).await?,
            bound_json_logs: self.bound_json_logs,
            gpus: &gpus,
            nvidia_runtime: self.gpus.nvidia_runtime,
        };
        let config = container_config(spec, &confinement, &settings);
        // The container is kept, as any that could not start: its state
        // says why (`phase.rs`), and terminate removes it.
        match self.create_and_start(&name, config).await {
            Err(e) if gpu::is_missing_driver(&e.to_string()) => {
                return Err(self.no_gpu_driver(session_id, &e.to_string()));
            }
            result => result?,
        }
        tracing::info!("started container");
        Ok(SessionReport::new(session_id, Phase::Starting))
    }

    /// Creates and starts the container.
    async fn create_and_start(
        &self,
        name: &str,
        config: ContainerCreateBody,
    ) -> PlatformResult<()> {
        let options = CreateContainerOptionsBuilder::new().name(name).build();
        match self.docker.create_container(Some(options), config).await {
            Ok(created) => tracing::info!(container_id = %created.id, "created container"),
            // A concurrent start won the race; starting it is all that is left.
            Err(e) if is_conflict(&e) => tracing::debug!("container already created"),
            Err(e) => return Err(self.error(format!("create container {name}"), e)),
        }
        self.docker
            .start_container(name, None)
            .await
            .map_err(|e| self.error(format!("start container {name}"), e))
    }

    /// Stops the container and keeps it and its volume.
    #[tracing::instrument(skip(self), fields(agent_id = %self.agent_id))]
    pub(crate) async fn hibernate(&self, session_id: &SessionId) -> PlatformResult<SessionReport> {
        let name = container_name(session_id);
        let container = self
            .inspect_owned(session_id)
            .await
            .or_not_found(session_id)?;
        // Recorded before the stop so the watcher sees the `die` as ours.
        self.intents.set(session_id, Intent::Hibernate);
        if is_live(&container) {
            let options = StopContainerOptionsBuilder::new()
                .t(STOP_TIMEOUT_SECS)
                .build();
            match self.docker.stop_container(&name, Some(options)).await {
                Ok(()) => tracing::info!("stopped container"),
                Err(e) if is_not_found(&e) => {
                    return Err(PlatformError::NotFound(session_id.clone()));
                }
                Err(e) => return Err(self.error(format!("stop container {name}"), e)),
            }
        }
        self.status(session_id).await
    }

    /// Starts a hibernated session's container again.
    #[tracing::instrument(skip(self), fields(agent_id = %self.agent_id))]
    pub(crate) async fn wake(&self, session_id: &SessionId) -> PlatformResult<SessionReport> {
        let container = self
            .inspect_owned(session_id)
            .await
            .or_not_found(session_id)?;
        self.intents.clear(session_id);
        self.ensure_running(session_id, &container, Phase::Waking)
            .await
    }

    /// Removes the container (by force, running or not); volumes are kept.
    #[tracing::instrument(skip(self), fields(agent_id = %self.agent_id))]
    pub(crate) async fn terminate(&self, session_id: &SessionId) -> PlatformResult<SessionReport> {
        let name = container_name(session_id);
        // Never remove a container of the same name that another agent owns.
        if self.inspect_owned(session_id).await?.is_none() {
            return Ok(SessionReport::new(session_id, Phase::Terminated));
        }
        // Recorded before the removal so the watcher sees the `destroy` as ours.
        self.intents.set(session_id, Intent::Terminate);
        let options = RemoveContainerOptionsBuilder::new().force(true).build();
        match self.docker.remove_container(&name, Some(options)).await {
            Ok(()) => tracing::info!("removed container"),
            Err(e) if is_not_found(&e) => tracing::debug!("container already gone"),
            Err(e) => return Err(self.error(format!("remove container {name}"), e)),
        }
        Ok(SessionReport::new(session_id, Phase::Terminated))
    }

    /// Starts (or unpauses) a container unless it runs; reports `Running` if
    /// it already did and `started` otherwise. A stopped container is first
    /// made fit to start again ([`Shared::prepare_restart`]).
    async fn ensure_running(
        &self,
        session_id: &SessionId,
        container: &ContainerInspectResponse,
        started: Phase,
    ) -> PlatformResult<SessionReport> {
        let name = container_name(session_id);
        match status_of(container) {
            Some(ContainerStateStatusEnum::RUNNING) => {
                return Ok(SessionReport::new(session_id, Phase::Running));
            }
            Some(ContainerStateStatusEnum::PAUSED) => {
                self.docker
                    .unpause_container(&name)
                    .await
                    .map_err(|e| self.error(format!("unpause container {name}"), e))?;
                tracing::info!("unpaused container");
                return Ok(SessionReport::new(session_id, Phase::Running));
            }
            _ => {}
        }
        self.prepare_restart(session_id, container).await?;
        match self.docker.start_container(&name, None).await {
            Ok(()) => tracing::info!("started container"),
            Err(e) if gpu::is_missing_driver(&e.to_string()) => {
                return Err(self.no_gpu_driver(session_id, &e.to_string()));
            }
            // Docker also answers 404 for a network the container names;
            // only a container that is gone makes the session's gone.
            Err(e) if is_not_found(&e) && self.inspect_by_name(&name).await?.is_none() => {
                return Err(PlatformError::NotFound(session_id.clone()));
            }
            Err(e) => return Err(self.error(format!("start container {name}"), e)),
        }
        Ok(SessionReport::new(session_id, started))
    }

    /// Refuses a container that is not confined, and moves one that is off
    /// the sessions network onto it (see `existing.rs` for why).
    async fn prepare_restart(
        &self,
        session_id: &SessionId,
        container: &ContainerInspectResponse,
    ) -> PlatformResult<()> {
        let missing = missing_confinement(container, &self.options.allowed_capabilities);
        if !missing.is_empty() {
            return Err(PlatformError::Invalid(format!(
                "the container of session {session_id} was created before sessions were \
                 isolated from each other, or with a capability this agent no longer allows \
                 (it lacks {}), and it is not started again as it is: \
                 terminate the session and start a new one; its home is kept",
                missing.join(", ")
            )));
        }
        let network = self.sessions_network().await?;
        let name = container_name(session_id);
        let rewiring = rewiring(container, &self.options.network, &network);
        for stale in &rewiring.leave {
            let request = NetworkDisconnectRequest {
                container: name.clone(),
                force: None,
            };
            // Docker forgets a stopped container's network by the name it
            // lists it under, even when that network is gone. Should it
            // refuse, the start below says why.
            match self.docker.disconnect_network(stale, request).await {
                Ok(()) => tracing::info!(network = %stale, "left a stale network"),
                Err(e) => tracing::warn!(network = %stale, error = %e, "could not leave a network"),
            }
        }
        if rewiring.join {
            let request = NetworkConnectRequest {
                container: name.clone(),
                endpoint_config: None,
            };
            self.docker
                .connect_network(&network, request)
                .await
                .map_err(|e| {
                    self.error(format!("attach container {name} to network {network}"), e)
                })?;
            tracing::info!(network = %self.options.network, "joined the sessions network");
        }
        Ok(())
    }
}

/// A container whose process exists (running, paused or restarting).
fn is_live(container: &ContainerInspectResponse) -> bool {
    matches!(
        status_of(container),
        Some(
            ContainerStateStatusEnum::RUNNING
                | ContainerStateStatusEnum::PAUSED
                | ContainerStateStatusEnum::RESTARTING
        )
    )
}

fn status_of(container: &ContainerInspectResponse) -> Option<ContainerStateStatusEnum> {
    container.state.as_ref()?.status
}
