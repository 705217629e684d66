//! Viewer input as session activity (for idle hibernation), recorded at
//! once when input starts after a quiet spell and at most every few seconds
//! while it continues, so a busy viewer costs one write per interval.

use crate::state::AppState;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use streamspace_protocol::SessionId;
use tokio::sync::Notify;

/// Least time between two writes of one tunnel's activity.
const MIN_GAP: Duration = Duration::from_secs(5);

#[derive(Default)]
pub struct Activity {
    pending: AtomicBool,
    wake: Notify,
}

impl Activity {
    /// Called for every message from the viewer: an atomic swap, and a
    /// notification only when input resumes.
    pub fn mark(&self) {
        if !self.pending.swap(true, Ordering::Relaxed) {
            self.wake.notify_one();
        }
    }

    /// Writes activity to the store as it happens; runs until cancelled.
    pub async fn record(&self, state: &AppState, session_id: &SessionId) {
        loop {
            self.wake.notified().await;
            self.flush(state, session_id).await;
            tokio::time::sleep(MIN_GAP).await;
        }
    }

    /// Writes any activity not yet recorded.
    pub async fn flush(&self, state: &AppState, session_id: &SessionId) {
        if self.pending.swap(false, Ordering::Relaxed)
            && let Err(err) = state.store.touch_session(session_id).await
        {
            tracing::warn!(error = %err, "cannot record session activity");
        }
    }
}
