//! Pre-pulls: the control plane asks for a template's image before any
//! session needs it, so the first session starts without waiting. Not a
//! command (nothing is stored or re-sent): the agent pulls and says how it
//! goes with `pull_status` messages, rate-limited like a session's pull.

use crate::platform::Platform;
use crate::pulls::{PullProgress, Pulled, Throttle};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use streamspace_protocol::{AgentMessage, PullState, PullStatus, RegistryAuth, TemplateId};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

/// Pre-pulls running at once; a request past this fails at once (an
/// admin's button pressed for every template must not start a hundred
/// pulls on a small host).
pub const MAX_PREPULLS: usize = 4;

/// One pre-pull asked for.
pub struct Request {
    pub template_id: TemplateId,
    pub image: String,
    pub auth: Option<RegistryAuth>,
}

/// Runs pre-pulls, one per image at a time.
#[derive(Clone)]
pub struct Prepulls {
    platform: Arc<dyn Platform>,
    outbox: mpsc::Sender<AgentMessage>,
    tasks: TaskTracker,
    shutdown: CancellationToken,
    /// Images being pulled now.
    running: Arc<Mutex<HashSet<String>>>,
}

impl Prepulls {
    pub fn new(
        platform: Arc<dyn Platform>,
        outbox: mpsc::Sender<AgentMessage>,
        tasks: TaskTracker,
        shutdown: CancellationToken,
    ) -> Self {
        Prepulls {
            platform,
            outbox,
            tasks,
            shutdown,
            running: Arc::default(),
        }
    }

    /// Starts pulling `request.image` unless it is being pulled already
    /// (that pull's reports then answer this request too) or too many
    /// pulls run.
    pub fn start(&self, request: Request) {
        let refused = {
            let mut running = lock(&self.running);
            if running.contains(&request.image) {
                return;
            }
            let full = running.len() >= MAX_PREPULLS;
            if !full {
                running.insert(request.image.clone());
            }
            full
        };
        if refused {
            let message = format!(
                "refused: {MAX_PREPULLS} pre-pulls already run on this agent; ask again when they \
                 are done"
            );
            self.send(&request, PullState::Failed, message);
            return;
        }
        let this = self.clone();
        let span = tracing::info_span!("prepull", template_id = %request.template_id, image = %request.image);
        self.tasks.spawn(
            async move {
                tokio::select! {
                    () = this.pull(&request) => {}
                    () = this.shutdown.cancelled() => {}
                }
                lock(&this.running).remove(&request.image);
            }
            .instrument(span),
        );
    }

    async fn pull(&self, request: &Request) {
        let throttle = Mutex::new(Throttle::default());
        let progress = |progress: PullProgress| {
            if lock(&throttle).admit(tokio::time::Instant::now(), progress.percent()) {
                let message = progress.message(&request.image);
                self.send(request, PullState::Pulling, message);
            }
        };
        let pulled = self
            .platform
            .pull(&request.image, request.auth.as_ref(), &progress)
            .await;
        let (state, message) = match pulled {
            Ok(Pulled::Pulled) => (PullState::Done, "pulled".to_owned()),
            Ok(Pulled::Present) => (PullState::Done, "the image was here already".to_owned()),
            Ok(Pulled::ByPlatform) => (
                PullState::Done,
                "nothing to do: this platform's nodes pull an image when a session needs it"
                    .to_owned(),
            ),
            Err(err) => (PullState::Failed, err.to_string()),
        };
        match state {
            PullState::Failed => tracing::warn!(%message, "pre-pull failed"),
            _ => tracing::info!(%message, "pre-pull done"),
        }
        self.send(request, state, message);
    }

    fn send(&self, request: &Request, state: PullState, message: String) {
        let status = PullStatus {
            template_id: request.template_id.clone(),
            image: request.image.clone(),
            state,
            message: Some(message),
        };
        // Dropped while disconnected: the admin asks again.
        let _ = self.outbox.try_send(AgentMessage::PullStatus(status));
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}
