//! The Docker platform: each session is one container named
//! `streamspace-<session_id>` on the agent's Docker engine, labelled so a
//! restarted agent finds it again, confined (no new privileges, no
//! capabilities but those its template gives back, a pids limit) on a
//! network where sessions cannot reach each other, with its ports published
//! on [`DockerOptions::publish_host`] and its persistent home in a named
//! volume.
//!
//! - `container.rs`: spec → container and volume (pure)
//! - `network.rs`: the sessions network, isolated (`enable_icc=false`)
//! - `phase.rs`: container state → session phase, and the rule that tells
//!   hibernation from failure (pure)
//! - `lifecycle.rs`: start, hibernate, wake, terminate
//! - `pull.rs`: pulling a missing image, with progress and failures said
//!   plainly
//! - `credentials.rs`: the agent's registry credentials, by registry
//! - `existing.rs`: what a container must be before it starts again
//!   (confined, on the sessions network as it is now; pure)
//! - `home.rs`: persistent homes as named volumes, and the check that
//!   shared volumes exist
//! - `gpu.rs`: the host's NVIDIA GPUs, and which a session gets
//! - `files.rs`: file transfer with the archive API, refusing symbolic links
//! - `observe.rs`: status, inventory, connect, capacity, metrics
//! - `route.rs`: which address reaches a session's port (its own, or the
//!   published one)
//! - `watch.rs`: Docker's event stream → session reports
//! - `health.rs`: whether the engine answers and its data root has room
//! - `host.rs`: host CPU and memory from `/proc`, the pids-limit check
//! - `usage.rs`: what each running session uses (memory, CPU)
//! - `error.rs`: Docker failures, classified for the control plane

mod container;
mod credentials;
mod error;
mod existing;
mod files;
mod gpu;
mod health;
mod home;
mod host;
mod lifecycle;
mod network;
mod observe;
mod phase;
mod pull;
mod route;
mod usage;
mod watch;

pub use container::{CONTAINER_PREFIX, GPUS_LABEL, STOP_TIMEOUT_SECS, container_name};
pub use credentials::{Credentials, RegistryAuths};
pub use error::DockerError;
pub use gpu::GpuInventory;
pub use network::{DEFAULT_NETWORK, NETWORK_LABEL};
pub use route::SessionRoute;

use async_trait::async_trait;
use bollard::Docker;
use bytes::Bytes;
use futures::stream::BoxStream;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex, PoisonError};
use streamspace_agent::files::{Download, FileResult, FileTarget, Listing, Upload};
use streamspace_agent::intent::Intents;
use streamspace_agent::pulls::{PullProgress, Pulled};
use streamspace_agent::{Platform, PlatformError, PlatformResult, SessionStream, confinement};
use streamspace_protocol::{
    AgentId, Capabilities, Capacity, NodeMetrics, PlatformHealth, RegistryAuth, SessionId,
    SessionReport, SessionSpec, SessionUsage,
};

/// Where the engine is when `DOCKER_HOST` is not set (bollard's default).
const DEFAULT_ENDPOINT: &str = "unix:///var/run/docker.sock";

/// How the Docker platform runs sessions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DockerOptions {
    /// Host address session ports are published on (each on a random free
    /// port), which the agent dials when it cannot reach containers
    /// directly. Loopback keeps sessions unreachable except through
    /// StreamSpace's tunnels.
    pub publish_host: IpAddr,
    /// Dial a session at its container's own address (skipping Docker's
    /// port proxy) when that is reachable; on by default. Only for a local
    /// engine: a remote engine's container address could name another
    /// machine's container here.
    pub dial_container_address: bool,
    /// Sessions this host may run, reported as capacity.
    pub max_sessions: u32,
    /// CPU capacity reported is the host's cores times this. Session CPU is
    /// a limit, not a reservation, and desktops idle most of the time, so
    /// placing by the sum of limits against real cores would turn a 2-core
    /// host away after two desktops. Memory is not overcommitted.
    pub cpu_overcommit: u32,
    /// Docker network session containers join: a bridge with
    /// inter-container traffic off, created if missing (an existing one that
    /// lets containers talk is refused).
    pub network: String,
    /// Pull an image that is not on the host (`streamspace agent docker`
    /// does unless `--no-pull`). Off in the library's default: a pull that
    /// fails hides the real fix when images are built on the host.
    pub pull_missing_images: bool,
    /// The agent's own registry credentials (`--registry-auth`), by
    /// registry; a template's win for its image's registry.
    pub registry_auths: RegistryAuths,
    /// Capabilities that weaken isolation
    /// ([`streamspace_agent::confinement::REFUSED_CAPABILITIES`]) which
    /// templates may nevertheless give back on this host; none by default.
    pub allowed_capabilities: Vec<String>,
    /// NVIDIA GPUs sessions may be given, declared by the operator instead
    /// of detected (`/proc/driver/nvidia/gpus`): for hosts where detection
    /// fails, to give sessions fewer than the host has, and to test GPU
    /// placement without a GPU.
    pub gpus: Option<u32>,
    /// The GPUs' model as reported (`"NVIDIA A10"`); detected by default.
    pub gpu_model: Option<String>,
}

impl Default for DockerOptions {
    fn default() -> Self {
        DockerOptions {
            publish_host: IpAddr::V4(Ipv4Addr::LOCALHOST),
            dial_container_address: true,
            max_sessions: 50,
            cpu_overcommit: 4,
            network: DEFAULT_NETWORK.to_owned(),
            pull_missing_images: false,
            registry_auths: RegistryAuths::default(),
            allowed_capabilities: Vec::new(),
            gpus: None,
            gpu_model: None,
        }
    }
}

/// [`Platform`] on a Docker engine.
pub struct DockerPlatform {
    shared: Arc<Shared>,
    host_load: host::HostLoad,
}

/// What the platform's methods and its event watcher share.
pub(crate) struct Shared {
    docker: Docker,
    agent_id: AgentId,
    options: DockerOptions,
    /// `DOCKER_HOST` or the default socket, for error messages.
    endpoint: String,
    /// The engine host's name (`docker info`), for error messages.
    engine_host: String,
    /// The engine logs to json-file by default: bound each session's
    /// (`container::LOG_MAX_SIZE`).
    bound_json_logs: bool,
    intents: Intents,
    cpu_samples: streamspace_agent::cpu::CpuSamples,
    router: route::Router,
    /// Id of [`DockerOptions::network`]; replaced when the network had to be
    /// created again (`docker network prune` removes it while unused).
    network_id: Mutex<String>,
    /// Held while the network is made again, so that starts at once after
    /// a prune make one network between them, not one each of which all
    /// but the oldest are removed again, maybe under a container another
    /// start has just created on it.
    remaking_network: tokio::sync::Mutex<()>,
    gpus: gpu::GpuInventory,
    /// Held from picking a GPU session's GPUs until its container exists.
    gpu_turn: tokio::sync::Mutex<()>,
}

impl Shared {
    fn error(&self, action: impl Into<String>, cause: bollard::errors::Error) -> PlatformError {
        DockerError::new(&self.endpoint, action, cause).into()
    }

    fn network_id(&self) -> String {
        self.network_id
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The id of the sessions network, made again if it is gone: `docker
    /// network prune` removes it while no session uses it, and Docker would
    /// only say so when a container on it starts.
    async fn sessions_network(&self) -> PlatformResult<String> {
        let seen = self.network_id();
        if self.network_exists(&seen).await? {
            return Ok(seen);
        }
        let _remaking = self.remaking_network.lock().await;
        let current = self.network_id();
        if current != seen {
            // Made again by another start while this one waited.
            return Ok(current);
        }
        let network = &self.options.network;
        tracing::warn!(%network, "the sessions network is gone: creating it again");
        let id = network::ensure(&self.docker, &self.endpoint, network).await?;
        *self
            .network_id
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = id.clone();
        Ok(id)
    }

    async fn network_exists(&self, id: &str) -> PlatformResult<bool> {
        match self.docker.inspect_network(id, None).await {
            Ok(_) => Ok(true),
            Err(e) if error::is_not_found(&e) => Ok(false),
            Err(e) => Err(self.error(format!("inspect network {}", self.options.network), e)),
        }
    }
}

impl DockerPlatform {
    /// Connects to the engine named by `DOCKER_HOST` (`unix://`, `tcp://`;
    /// the local socket by default) and negotiates the API version, so an
    /// older engine (Debian's 20.10 speaks API 1.41) is spoken to in its own
    /// version rather than refusing bollard's newer default.
    #[tracing::instrument(skip(options))]
    pub async fn connect(agent_id: &AgentId, options: DockerOptions) -> PlatformResult<Self> {
        if agent_id.is_empty() {
            return Err(PlatformError::Invalid(
                "the Docker platform needs a non-empty agent id".into(),
            ));
        }
        confinement::check_allowed(&options.allowed_capabilities)
            .map_err(PlatformError::Invalid)?;
        let endpoint = std::env::var("DOCKER_HOST")
            .ok()
            .filter(|host| !host.is_empty())
            .unwrap_or_else(|| DEFAULT_ENDPOINT.to_owned());
        let unreachable = |action: &str, cause| -> PlatformError {
            DockerError::new(&endpoint, action, cause).into()
        };
        let docker = Docker::connect_with_defaults().map_err(|e| unreachable("connect", e))?;
        let docker = docker
            .negotiate_version()
            .await
            .map_err(|e| unreachable("negotiate the API version", e))?;
        let info = docker
            .info()
            .await
            .map_err(|e| unreachable("describe itself (docker info)", e))?;
        let engine_host = info.name.clone().unwrap_or_else(|| endpoint.clone());
        tracing::info!(
            %endpoint,
            engine_host,
            engine_version = info.server_version.as_deref().unwrap_or("unknown"),
            api_version = %docker.client_version(),
            "connected to the Docker engine"
        );
        let router = route::Router::new(dial_directly(&options, &endpoint));
        // Before anything runs: a network that lets sessions talk is refused.
        let network_id = network::ensure(&docker, &endpoint, &options.network).await?;
        warn_if_published_beyond_loopback(options.publish_host);
        if endpoint.starts_with("unix://") {
            host::warn_if_pids_exceed_pid_max(options.max_sessions);
        }
        // Docker's default driver keeps all output; any other is the
        // operator's choice, with its own retention.
        let bound_json_logs = info
            .logging_driver
            .as_deref()
            .is_none_or(|driver| driver == "json-file");
        let gpus = gpu_inventory(&options, &endpoint, &info);
        Ok(DockerPlatform {
            shared: Arc::new(Shared {
                docker,
                agent_id: agent_id.clone(),
                options,
                endpoint,
                engine_host,
                bound_json_logs,
                intents: Intents::default(),
                cpu_samples: streamspace_agent::cpu::CpuSamples::default(),
                router,
                network_id: Mutex::new(network_id),
                remaking_network: tokio::sync::Mutex::new(()),
                gpus,
                gpu_turn: tokio::sync::Mutex::new(()),
            }),
            host_load: host::HostLoad::default(),
        })
    }

    pub fn agent_id(&self) -> &AgentId {
        &self.shared.agent_id
    }

    pub fn options(&self) -> &DockerOptions {
        &self.shared.options
    }

    /// Id of the Docker network new session containers join.
    pub fn network_id(&self) -> String {
        self.shared.network_id()
    }

    /// The GPUs this agent gives sessions.
    pub fn gpus(&self) -> &GpuInventory {
        &self.shared.gpus
    }

    /// How this agent reaches session ports (learned on the first dial).
    pub fn session_route(&self) -> SessionRoute {
        self.shared.router.route()
    }
}

/// Session ports published on an address other than loopback are reachable
/// from the network, and from other sessions through the host (Docker's
/// port proxy connects from the host, which the sessions network allows).
fn warn_if_published_beyond_loopback(publish_host: IpAddr) {
    if !publish_host.is_loopback() {
        tracing::warn!(
            %publish_host,
            "session ports are published beyond loopback: other sessions and the network can \
             reach their VNC servers, which have no password; use 127.0.0.1 unless the agent \
             cannot reach containers otherwise"
        );
    }
}

/// The GPUs sessions may be given: declared, or found in the driver's
/// `/proc` files when the engine is on this machine (a remote engine's host
/// is not this one).
fn gpu_inventory(
    options: &DockerOptions,
    endpoint: &str,
    info: &bollard::models::SystemInfo,
) -> GpuInventory {
    let detected = match endpoint.starts_with("unix://") {
        true => gpu::detect(std::path::Path::new(gpu::NVIDIA_PROC)),
        false => (0, None),
    };
    let nvidia_runtime = (info.runtimes.as_ref())
        .is_some_and(|runtimes| runtimes.contains_key(container::NVIDIA_RUNTIME));
    let inventory = GpuInventory::new(
        detected,
        options.gpus,
        options.gpu_model.as_deref(),
        nvidia_runtime,
    );
    if inventory.count > 0 {
        tracing::info!(
            gpus = inventory.count,
            model = inventory.model.as_deref().unwrap_or("unknown"),
            nvidia_runtime,
            declared = options.gpus.is_some(),
            "GPUs for sessions"
        );
    }
    inventory
}

/// Container addresses are worth trying only on an engine on this machine
/// (its socket): a remote engine's could be a different container here.
fn dial_directly(options: &DockerOptions, endpoint: &str) -> bool {
    if !options.dial_container_address {
        return false;
    }
    let local = endpoint.starts_with("unix://");
    if !local {
        tracing::info!(
            %endpoint,
            "the Docker engine is not local: reaching sessions through published ports"
        );
    }
    local
}

#[async_trait]
impl Platform for DockerPlatform {
    fn name(&self) -> &'static str {
        "docker"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            hibernation: true,
            persistent_storage: true,
            gpu: self.shared.gpus.count > 0,
            ..Capabilities::default()
        }
    }

    async fn capacity(&self) -> PlatformResult<Capacity> {
        self.shared.capacity().await
    }

    async fn pull(
        &self,
        image: &str,
        auth: Option<&RegistryAuth>,
        progress: &(dyn Fn(PullProgress) + Send + Sync),
    ) -> PlatformResult<Pulled> {
        self.shared.pull(image, auth, progress).await
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

    async fn list_files(&self, session_id: &SessionId, target: &FileTarget) -> FileResult<Listing> {
        self.shared.list_files(session_id, target).await
    }

    async fn read_file(&self, session_id: &SessionId, target: &FileTarget) -> FileResult<Download> {
        self.shared.read_file(session_id, target).await
    }

    async fn write_file(
        &self,
        session_id: &SessionId,
        target: &FileTarget,
        upload: Upload,
    ) -> FileResult<()> {
        self.shared.write_file(session_id, target, upload).await
    }

    async fn usage(&self) -> PlatformResult<Vec<SessionUsage>> {
        self.shared.usage().await
    }

    async fn metrics(&self) -> PlatformResult<NodeMetrics> {
        self.shared.metrics(&self.host_load).await
    }

    async fn health(&self) -> PlatformHealth {
        self.shared.health().await
    }

    fn watch(&self) -> BoxStream<'static, SessionReport> {
        watch::watch(Arc::clone(&self.shared))
    }
}
