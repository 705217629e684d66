//! The in-process bus on which whatever changes a user's logins or role
//! (logout, logout everywhere, a password change, a deleted or demoted
//! user) names that user, so their open streams re-check (`revoke.rs`).
//! Held by the application state, so it knows nothing of it.

use streamspace_protocol::UserId;
use tokio::sync::broadcast;

/// Notices kept for slow streams; one that misses some re-checks.
const CAPACITY: usize = 256;

#[derive(Clone)]
pub struct Revocations {
    tx: broadcast::Sender<UserId>,
}

impl Default for Revocations {
    fn default() -> Self {
        Self {
            tx: broadcast::channel(CAPACITY).0,
        }
    }
}

impl Revocations {
    /// The user's logins or role changed: their streams re-check.
    pub fn user_changed(&self, user_id: &UserId) {
        // No subscribers is fine: no stream is open.
        let _ = self.tx.send(user_id.clone());
    }

    /// Every user named from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<UserId> {
        self.tx.subscribe()
    }
}
