//! The Kubernetes platform: each session is one Deployment named
//! `streamspace-<session_id>` in the agent's namespace (one replica;
//! hibernation scales it to 0), labelled so a restarted agent finds it
//! again, with its persistent home in a PersistentVolumeClaim that outlives
//! the session.
//!
//! - `names.rs`: names, labels, selectors and Kubernetes' rules for them
//! - `objects.rs`: spec → Deployment and PersistentVolumeClaim (pure)
//! - `phase.rs`: Deployment and pods → session phase (pure)
//! - `lifecycle.rs`: start, hibernate, wake, terminate
//! - `home.rs`: persistent homes as PersistentVolumeClaims
//! - `pull_secret.rs`: a template's registry credentials as the session's
//!   image pull Secret
//! - `observe.rs`: status, inventory, logs
//! - `tunnel.rs`: connections to a session's port (pod IP or port-forward)
//! - `files.rs`: file transfer by exec (a shell script and `tar`) in the
//!   session's container, refusing symbolic links
//! - `watch.rs`: kube-runtime watchers → session reports, and the
//!   reflector stores the tunnel and status read instead of asking the
//!   apiserver
//! - `cluster.rs`: capacity and load from nodes and metrics.k8s.io
//! - `leader.rs`: leader election on a coordination.k8s.io Lease
//! - `state_secret.rs`: the agent's identity kept in a Secret
//! - `render.rs`: the objects of a session as YAML, for `render`

mod cluster;
mod error;
mod files;
mod home;
pub mod leader;
mod lifecycle;
pub mod names;
pub mod objects;
mod observe;
pub mod phase;
pub mod pull_secret;
pub mod render;
pub mod state_secret;
mod tunnel;
mod watch;

pub use error::KubernetesError;
pub use kube::Client;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, Secret, ServiceAccount};
use kube::Api;
use std::fmt;
use std::path::Path;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use streamspace_agent::files::{Download, FileResult, FileTarget, Listing, Upload};
use streamspace_agent::intent::Intents;
use streamspace_agent::{Platform, PlatformError, PlatformResult, SessionStream, confinement};
use streamspace_protocol::{
    AgentId, Capabilities, Capacity, Memory, NodeMetrics, PlatformHealth, SessionId, SessionReport,
    SessionSpec, SessionUsage,
};

/// How the agent reaches a session's port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TunnelMode {
    /// Dial the pod's IP directly: the agent runs inside the cluster.
    PodIp,
    /// Use the apiserver's port-forward: the agent runs outside the cluster
    /// (needs `pods/portforward` in the agent's Role).
    PortForward,
}

impl TunnelMode {
    pub fn as_str(self) -> &'static str {
        match self {
            TunnelMode::PodIp => "pod-ip",
            TunnelMode::PortForward => "port-forward",
        }
    }

    /// Pod IPs when the process runs in a pod, port-forward otherwise.
    pub fn detect() -> Self {
        if std::env::var_os("KUBERNETES_SERVICE_HOST").is_some() {
            TunnelMode::PodIp
        } else {
            TunnelMode::PortForward
        }
    }
}

impl fmt::Display for TunnelMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TunnelMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "pod-ip" => Ok(TunnelMode::PodIp),
            "port-forward" => Ok(TunnelMode::PortForward),
            _ => Err(format!(
                "unknown tunnel mode {s:?}: use pod-ip (agent in the cluster) or port-forward"
            )),
        }
    }
}

/// A client for the cluster in `kubeconfig`, or else the one inferred the
/// way kubectl does: `$KUBECONFIG` or `~/.kube/config`, and inside a pod
/// its service account (in-cluster config).
pub async fn client(kubeconfig: Option<&Path>) -> Result<Client, KubernetesError> {
    let config_error = |detail: String| KubernetesError::Config { detail };
    let config = match kubeconfig {
        Some(path) => {
            let file = kube::config::Kubeconfig::read_from(path)
                .map_err(|e| config_error(format!("{}: {e}", path.display())))?;
            kube::Config::from_custom_kubeconfig(file, &kube::config::KubeConfigOptions::default())
                .await
                .map_err(|e| config_error(format!("{}: {e}", path.display())))?
        }
        None => kube::Config::infer().await.map_err(|e| {
            config_error(format!(
                "{e} (outside a cluster, pass --kubeconfig or set KUBECONFIG)"
            ))
        })?,
    };
    Client::try_from(config).map_err(|e| config_error(e.to_string()))
}

/// How the Kubernetes platform runs sessions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubernetesOptions {
    /// Namespace of every session object (the agent's Role is scoped to it).
    pub namespace: String,
    pub tunnel: TunnelMode,
    /// Sessions this agent may run, reported as capacity.
    pub max_sessions: u32,
    /// StorageClass of home claims (the cluster's default when `None`).
    pub storage_class: Option<String>,
    /// Size requested for each home claim.
    pub home_size: Memory,
    /// Secrets (in the namespace) every session pod pulls its image with,
    /// beside its own from the template's `registry_auth` and the service
    /// account's.
    pub image_pull_secrets: Vec<String>,
    /// Refuse images that run as root (`runAsNonRoot`). On by default:
    /// sessions then satisfy the "restricted" Pod Security Standard.
    pub run_as_non_root: bool,
    /// Group that owns the home volume's files, so a non-root session user
    /// of that group can write to a fresh claim (the demo image: 1000).
    pub fs_group: Option<i64>,
    /// Capabilities that weaken isolation
    /// ([`streamspace_agent::confinement::REFUSED_CAPABILITIES`]) which
    /// templates may nevertheless give back in this namespace; none by
    /// default.
    pub allowed_capabilities: Vec<String>,
}

impl Default for KubernetesOptions {
    fn default() -> Self {
        KubernetesOptions {
            namespace: "default".to_owned(),
            tunnel: TunnelMode::PodIp,
            max_sessions: 100,
            storage_class: None,
            home_size: Memory(10 << 30),
            image_pull_secrets: Vec::new(),
            run_as_non_root: true,
            fs_group: Some(1000),
            allowed_capabilities: Vec::new(),
        }
    }
}

/// [`Platform`] on a Kubernetes namespace.
pub struct KubernetesPlatform {
    shared: Arc<Shared>,
}

/// What the platform's methods and its watcher share.
pub(crate) struct Shared {
    client: Client,
    agent_id: AgentId,
    options: KubernetesOptions,
    deployments: Api<Deployment>,
    pods: Api<Pod>,
    claims: Api<PersistentVolumeClaim>,
    /// Sessions' image pull Secrets (create and delete only: the agent may
    /// not read Secrets).
    secrets: Api<Secret>,
    /// The session pods' service account, for its `imagePullSecrets`.
    service_accounts: Api<ServiceAccount>,
    intents: Intents,
    /// The stores of the running watch, if one runs; see `watch.rs`.
    view: Mutex<Option<watch::View>>,
    cluster: cluster::ClusterCache,
}

impl Shared {
    fn error(&self, action: impl Into<String>, cause: kube::Error) -> PlatformError {
        KubernetesError::new(&self.options.namespace, action, cause).into()
    }
}

impl KubernetesPlatform {
    /// A platform acting in `options.namespace` through `client`. Makes no
    /// request; [`KubernetesPlatform::check_access`] does.
    pub fn new(
        client: Client,
        agent_id: &AgentId,
        options: KubernetesOptions,
    ) -> PlatformResult<Self> {
        if agent_id.is_empty() {
            return Err(PlatformError::Invalid(
                "the Kubernetes platform needs a non-empty agent id".into(),
            ));
        }
        confinement::check_allowed(&options.allowed_capabilities)
            .map_err(PlatformError::Invalid)?;
        let namespace = options.namespace.as_str();
        Ok(KubernetesPlatform {
            shared: Arc::new(Shared {
                deployments: Api::namespaced(client.clone(), namespace),
                pods: Api::namespaced(client.clone(), namespace),
                claims: Api::namespaced(client.clone(), namespace),
                secrets: Api::namespaced(client.clone(), namespace),
                service_accounts: Api::namespaced(client.clone(), namespace),
                client,
                agent_id: agent_id.clone(),
                options,
                intents: Intents::default(),
                view: Mutex::new(None),
                cluster: cluster::ClusterCache::default(),
            }),
        })
    }

    /// Lists this agent's Deployments and pods once, so a missing namespace,
    /// missing RBAC or an unreachable apiserver is reported before the
    /// agent enrolls (and uses up a single-use token).
    pub async fn check_access(&self) -> PlatformResult<()> {
        self.shared.check_access().await
    }

    pub fn agent_id(&self) -> &AgentId {
        &self.shared.agent_id
    }

    pub fn options(&self) -> &KubernetesOptions {
        &self.shared.options
    }
}

#[async_trait]
impl Platform for KubernetesPlatform {
    fn name(&self) -> &'static str {
        "kubernetes"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            hibernation: true,
            persistent_storage: true,
            // Sessions may request `nvidia.com/gpu`; how many the cluster
            // has is in `capacity` (none without NVIDIA's device plugin).
            gpu: true,
            ..Capabilities::default()
        }
    }

    async fn capacity(&self) -> PlatformResult<Capacity> {
        Ok(self.shared.capacity().await)
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

    async fn metrics(&self) -> PlatformResult<NodeMetrics> {
        self.shared.metrics().await
    }

    async fn health(&self) -> PlatformHealth {
        self.shared.health().await
    }

    async fn usage(&self) -> PlatformResult<Vec<SessionUsage>> {
        self.shared.session_usage().await
    }

    fn watch(&self) -> BoxStream<'static, SessionReport> {
        watch::watch(Arc::clone(&self.shared))
    }
}
