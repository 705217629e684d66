//! The libvirt platform: each session is a virtual machine, a libvirt
//! domain named `streamspace-<session_id>`, booting from a copy-on-write
//! overlay of its template's base disk, with the user's home as a second
//! disk that outlives sessions, its labels in the domain's `<metadata>` (so
//! a restarted agent finds it again), and QEMU's VNC server on loopback,
//! which the agent tunnels like a container's. Hibernation is libvirt's
//! managed save: the VM's memory goes to disk and comes back on wake.
//!
//! - `domain.rs`: spec → domain XML, names (pure)
//! - `labels.rs`: the session's labels and parts in `<metadata>` (pure)
//! - `phase.rs`: domain state → session phase (pure)
//! - `xml.rs`: the escaping writer and the reader (over quick-xml) all XML goes through
//! - `conn.rs`: the shared connection, calls on blocking threads, reconnects
//! - `storage.rs`: the agent's pool, overlays, home disks, base images
//! - `accel.rs`: KVM if it really works, else TCG
//! - `lifecycle.rs`: start, hibernate, wake, terminate
//! - `observe.rs`: status, inventory, connect (the VNC port)
//! - `events.rs`: libvirt's lifecycle events (the crate's only unsafe code)
//! - `watch.rs`: those events → session reports
//! - `logs.rs`: the serial console's log file, tailed and followed
//! - `usage.rs`: capacity, load, and what each VM uses
//! - `health.rs`: whether libvirtd answers and the pool has room
//! - `error.rs`: libvirt failures, classified for the control plane

mod accel;
mod conn;
mod domain;
mod error;
#[allow(unsafe_code)]
mod events;
mod health;
mod labels;
mod lifecycle;
mod logs;
mod observe;
mod phase;
mod storage;
mod usage;
mod watch;
mod xml;

pub use accel::AccelerationChoice;
pub use domain::{DOMAIN_PREFIX, domain_name};
pub use error::LibvirtError;
pub use labels::NAMESPACE as METADATA_NAMESPACE;
pub use storage::{DEFAULT_POOL, DEFAULT_POOL_PATH};

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use std::path::PathBuf;
use std::sync::Arc;
use streamspace_agent::intent::Intents;
use streamspace_agent::pulls::{PullProgress, Pulled};
use streamspace_agent::{Platform, PlatformError, PlatformResult, SessionStream};
use streamspace_protocol::{
    Acceleration, AgentId, Capabilities, Capacity, NodeMetrics, PlatformHealth, RegistryAuth,
    SessionId, SessionReport, SessionSpec, SessionUsage,
};

/// libvirt's URI when `--connect` is not given: the host's system daemon.
pub const DEFAULT_URI: &str = "qemu:///system";
/// Where serial console logs go when `--log-dir` is not given.
pub const DEFAULT_LOG_DIR: &str = "/var/lib/streamspace/vm/logs";

/// How the libvirt platform runs sessions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LibvirtOptions {
    /// libvirt connection URI.
    pub uri: String,
    /// The storage pool overlays and home disks live in; created as a
    /// directory pool at `pool_path` if missing.
    pub pool: String,
    pub pool_path: PathBuf,
    /// Where virtlogd writes each VM's serial console (on the libvirt
    /// host, which `logs` reads: the agent runs there).
    pub log_dir: PathBuf,
    pub acceleration: AccelerationChoice,
    /// A libvirt network VMs join; none by default (no network at all).
    pub network: Option<String>,
    /// Sessions this host may run, reported as capacity.
    pub max_sessions: u32,
    /// CPU capacity reported is the host's cores times this (vCPUs of
    /// desktops mostly idle); memory is not overcommitted.
    pub cpu_overcommit: u32,
}

impl Default for LibvirtOptions {
    fn default() -> Self {
        LibvirtOptions {
            uri: DEFAULT_URI.to_owned(),
            pool: DEFAULT_POOL.to_owned(),
            pool_path: PathBuf::from(DEFAULT_POOL_PATH),
            log_dir: PathBuf::from(DEFAULT_LOG_DIR),
            acceleration: AccelerationChoice::Auto,
            network: None,
            max_sessions: 20,
            cpu_overcommit: 4,
        }
    }
}

/// [`Platform`] on a libvirt host.
pub struct LibvirtPlatform {
    shared: Arc<Shared>,
}

/// What the platform's methods and its event watcher share.
pub(crate) struct Shared {
    hypervisor: conn::Hypervisor,
    agent_id: AgentId,
    options: LibvirtOptions,
    acceleration: Acceleration,
    intents: Intents,
    cpu_samples: streamspace_agent::cpu::CpuSamples,
    host_cpu: streamspace_agent::cpu::CpuSamples,
}

impl LibvirtPlatform {
    /// Starts libvirt's event loop (before any connection, as libvirt
    /// requires), connects, makes sure the storage pool and log directory
    /// exist, and finds out whether KVM works.
    #[tracing::instrument(skip(options), fields(uri = %options.uri))]
    pub async fn connect(agent_id: &AgentId, options: LibvirtOptions) -> PlatformResult<Self> {
        if agent_id.is_empty() {
            return Err(PlatformError::Invalid(
                "the libvirt platform needs a non-empty agent id".into(),
            ));
        }
        domain::validate_name("storage pool", &options.pool).map_err(PlatformError::Invalid)?;
        events::start_event_loop().map_err(PlatformError::Unavailable)?;
        let hypervisor = conn::Hypervisor::open(&options.uri).await?;
        tokio::fs::create_dir_all(&options.log_dir)
            .await
            .map_err(|e| {
                PlatformError::Unavailable(format!(
                    "cannot create the serial log directory {}: {e}",
                    options.log_dir.display()
                ))
            })?;
        let (uri, pool, choice) = (
            options.uri.clone(),
            options.pool.clone(),
            options.acceleration,
        );
        let pool_path = options.pool_path.to_string_lossy().into_owned();
        let (pool_dir, acceleration, version) = hypervisor
            .call(move |conn| {
                let dir = storage::ensure_pool(conn, &uri, &pool, &pool_path)?;
                let version = conn.get_lib_version().unwrap_or(0);
                Ok((dir, accel::detect(conn, choice), version))
            })
            .await?;
        tracing::info!(
            pool = %options.pool,
            pool_dir,
            ?acceleration,
            libvirt = format!("{}.{}.{}", version / 1_000_000, version / 1000 % 1000, version % 1000),
            "connected to libvirt"
        );
        Ok(LibvirtPlatform {
            shared: Arc::new(Shared {
                hypervisor,
                agent_id: agent_id.clone(),
                options,
                acceleration,
                intents: Intents::default(),
                cpu_samples: streamspace_agent::cpu::CpuSamples::default(),
                host_cpu: streamspace_agent::cpu::CpuSamples::default(),
            }),
        })
    }

    pub fn agent_id(&self) -> &AgentId {
        &self.shared.agent_id
    }

    pub fn options(&self) -> &LibvirtOptions {
        &self.shared.options
    }

    /// KVM or TCG, as detected (or forced) at connect.
    pub fn acceleration(&self) -> Acceleration {
        self.shared.acceleration
    }
}

#[async_trait]
impl Platform for LibvirtPlatform {
    fn name(&self) -> &'static str {
        "libvirt"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            hibernation: true,
            persistent_storage: true,
            gpu: false,
            hibernation_keeps_memory: true,
            acceleration: Some(self.shared.acceleration),
        }
    }

    async fn capacity(&self) -> PlatformResult<Capacity> {
        self.shared.capacity().await
    }

    /// Base disks are not pulled: this checks the template's exists.
    async fn pull(
        &self,
        image: &str,
        _auth: Option<&RegistryAuth>,
        _progress: &(dyn Fn(PullProgress) + Send + Sync),
    ) -> PlatformResult<Pulled> {
        self.shared.check_base(image).await?;
        Ok(Pulled::Present)
    }

    async fn start(&self, spec: &SessionSpec) -> PlatformResult<SessionReport> {
        self.shared.start(spec).await
    }

    async fn hibernate(&self, session_id: &SessionId) -> PlatformResult<SessionReport> {
        self.shared.hibernate(session_id).await
    }

    async fn wake(&self, session_id: &SessionId) -> PlatformResult<SessionReport> {
        self.shared.wake(session_id).await
    }

    async fn terminate(&self, session_id: &SessionId) -> PlatformResult<SessionReport> {
        self.shared.terminate(session_id).await
    }

    async fn status(&self, session_id: &SessionId) -> PlatformResult<SessionReport> {
        self.shared.status(session_id).await
    }

    async fn inventory(&self) -> PlatformResult<Vec<SessionReport>> {
        self.shared.inventory().await
    }

    async fn connect(
        &self,
        session_id: &SessionId,
        port: u16,
    ) -> PlatformResult<Box<dyn SessionStream>> {
        self.shared.dial(session_id, port).await
    }

    async fn logs(
        &self,
        session_id: &SessionId,
        tail: Option<u32>,
        follow: bool,
    ) -> PlatformResult<BoxStream<'static, PlatformResult<Bytes>>> {
        self.shared.logs(session_id, tail, follow).await
    }

    async fn usage(&self) -> PlatformResult<Vec<SessionUsage>> {
        self.shared.usage().await
    }

    async fn metrics(&self) -> PlatformResult<NodeMetrics> {
        self.shared.metrics().await
    }

    async fn health(&self) -> PlatformHealth {
        self.shared.health().await
    }

    fn watch(&self) -> BoxStream<'static, SessionReport> {
        watch::watch(Arc::clone(&self.shared))
    }
}
