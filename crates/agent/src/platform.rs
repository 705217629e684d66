//! The `Platform` trait: what an agent needs from the thing that runs
//! sessions (a Docker engine, a Kubernetes cluster). Everything else an agent
//! does (enrollment, the control channel, command bookkeeping, readiness,
//! tunnels) is shared and lives in this crate.

use crate::files::types::{Download, FileRefused, FileResult, FileTarget, Listing, Upload};
use crate::pulls::{PullProgress, Pulled};
use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use streamspace_protocol::files::FileRefusal;
use streamspace_protocol::{
    Capabilities, Capacity, NodeMetrics, PlatformHealth, RegistryAuth, SessionId, SessionReport,
    SessionSpec, SessionUsage,
};
use tokio::io::{AsyncRead, AsyncWrite};

/// A byte stream to a session's port (a TCP socket, a port-forward stream).
pub trait SessionStream: AsyncRead + AsyncWrite + Send + Unpin {
    /// The concrete stream, so a tunnel can tell a plain TCP socket (which
    /// the kernel can splice without copying) from anything else.
    fn as_any(&self) -> &dyn std::any::Any;
    fn into_any(self: Box<Self>) -> Box<dyn std::any::Any + Send>;
}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> SessionStream for T {
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
    fn into_any(self: Box<Self>) -> Box<dyn std::any::Any + Send> {
        self
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PlatformError {
    /// The platform has no object for this session.
    #[error("session {0} does not exist on this platform")]
    NotFound(SessionId),
    /// The request cannot succeed as asked (missing image, bad spec); the
    /// message says what to fix and is shown to the user.
    #[error("{0}")]
    Invalid(String),
    /// The platform failed or is unreachable; retrying may help.
    #[error("{0}")]
    Unavailable(String),
}

pub type PlatformResult<T> = Result<T, PlatformError>;

/// A platform's lookup of a session's objects, where finding none means the
/// session does not exist there.
pub trait OrNotFound<T> {
    fn or_not_found(self, session_id: &SessionId) -> PlatformResult<T>;
}

impl<T> OrNotFound<T> for PlatformResult<Option<T>> {
    fn or_not_found(self, session_id: &SessionId) -> PlatformResult<T> {
        self?.ok_or_else(|| PlatformError::NotFound(session_id.clone()))
    }
}

/// One platform's translation of the platform-neutral session lifecycle.
///
/// Every method is idempotent: `start` on a session that exists makes sure it
/// runs, `hibernate` on a stopped one succeeds, `terminate` on a missing one
/// reports `Terminated`. The agent runtime relies on this to deliver commands
/// at least once.
///
/// Methods return once the platform has done its part; readiness of the
/// session's VNC server is checked by the runtime through [`Platform::connect`].
#[async_trait]
pub trait Platform: Send + Sync + 'static {
    /// The platform's name as the control plane knows it ("docker").
    fn name(&self) -> &'static str;

    /// What this platform supports.
    fn capabilities(&self) -> Capabilities;

    /// How much this platform can run, discovered from it.
    async fn capacity(&self) -> PlatformResult<Capacity>;

    /// Makes sure `image` is on the platform, pulling it when it is
    /// missing (with `auth` for its registry when given, over the agent's
    /// own credentials), and tells `progress` how the pull goes. Called
    /// before `start` and for pre-pulls. A failed pull is `Invalid` with a
    /// message that says why (credentials refused, image not found,
    /// registry unreachable). Platforms whose nodes pull by themselves
    /// (Kubernetes: the kubelet, when a pod needs the image) keep this
    /// default, which does nothing.
    async fn pull(
        &self,
        image: &str,
        auth: Option<&RegistryAuth>,
        progress: &(dyn Fn(PullProgress) + Send + Sync),
    ) -> PlatformResult<Pulled> {
        let _ = (image, auth, progress);
        Ok(Pulled::ByPlatform)
    }

    /// Create the session if needed and start it.
    async fn start(&self, spec: &SessionSpec) -> PlatformResult<SessionReport>;

    /// Release the session's compute and keep its state.
    async fn hibernate(&self, session_id: &SessionId) -> PlatformResult<SessionReport>;

    /// Resume a hibernated session.
    async fn wake(&self, session_id: &SessionId) -> PlatformResult<SessionReport>;

    /// Remove the session's compute; persistent homes are kept.
    async fn terminate(&self, session_id: &SessionId) -> PlatformResult<SessionReport>;

    /// The observed phase of one session (`NotFound` if it does not exist).
    async fn status(&self, session_id: &SessionId) -> PlatformResult<SessionReport>;

    /// Every session this agent owns on the platform, found by label.
    async fn inventory(&self) -> PlatformResult<Vec<SessionReport>>;

    /// Open a byte stream to `port` of a running session.
    async fn connect(
        &self,
        session_id: &SessionId,
        port: u16,
    ) -> PlatformResult<Box<dyn SessionStream>>;

    /// The session's console output: the last `tail` lines (all when
    /// `None`), then, with `follow`, new output as it is written, until the
    /// stream is dropped.
    async fn logs(
        &self,
        session_id: &SessionId,
        tail: Option<u32>,
        follow: bool,
    ) -> PlatformResult<BoxStream<'static, PlatformResult<Bytes>>>;

    /// The entries of a directory in the session's files folder
    /// (docs/FILES.md). Every component from the home down is checked: a
    /// symbolic link on the way is refused, never followed. A folder that
    /// does not exist yet lists as empty. Platforms that cannot reach a
    /// session's files keep this default, which refuses.
    async fn list_files(&self, session_id: &SessionId, target: &FileTarget) -> FileResult<Listing> {
        let _ = (session_id, target);
        Err(no_file_transfer(self.name()))
    }

    /// One regular file's bytes from the files folder, checked like
    /// [`Platform::list_files`].
    async fn read_file(&self, session_id: &SessionId, target: &FileTarget) -> FileResult<Download> {
        let _ = (session_id, target);
        Err(no_file_transfer(self.name()))
    }

    /// Writes a whole upload into the files folder (creating the folder
    /// and missing directories), owned by the session's user; checked like
    /// [`Platform::list_files`].
    async fn write_file(
        &self,
        session_id: &SessionId,
        target: &FileTarget,
        upload: Upload,
    ) -> FileResult<()> {
        let _ = (session_id, target, upload);
        Err(no_file_transfer(self.name()))
    }

    /// What each running session uses now (CPU, memory), for heartbeats;
    /// empty when the platform cannot measure it.
    async fn usage(&self) -> PlatformResult<Vec<SessionUsage>>;

    /// Current load, for heartbeats.
    async fn metrics(&self) -> PlatformResult<NodeMetrics>;

    /// Whether the platform can take sessions now: it answers, and what it
    /// stores sessions and images on is usable. Called before heartbeats
    /// under [`crate::health::DEADLINE`] (the runtime reports a check that
    /// overruns it as the problem), so it should ask only cheap questions.
    /// Platforms that cannot tell keep this default: healthy.
    async fn health(&self) -> PlatformHealth {
        PlatformHealth::healthy()
    }

    /// Phase changes the platform sees happen by itself (a container that
    /// died or was removed behind our back). The stream ends if the platform
    /// connection breaks; the runtime then re-subscribes.
    fn watch(&self) -> BoxStream<'static, SessionReport>;
}

fn no_file_transfer(platform: &str) -> FileRefused {
    FileRefused::new(
        streamspace_protocol::files::FileRefusal::Unavailable,
        format!("the {platform} platform cannot transfer files"),
    )
}

/// A platform that cannot do what a file operation asks refuses it as
/// unavailable, in its own words.
impl From<PlatformError> for FileRefused {
    fn from(err: PlatformError) -> Self {
        Self::new(FileRefusal::Unavailable, err.to_string())
    }
}
