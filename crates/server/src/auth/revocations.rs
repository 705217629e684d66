//! The in-process bus on which whatever changes a user's logins or role
//! (logout, logout everywhere, a password change, a deleted or demoted
//! user) names that user, so their open streams re-check (`revoke.rs`).
//! Those named here are also told to the other replicas, and theirs arrive
//! here (`cluster/broadcast.rs`), so a logout ends the user's streams on
//! every replica at once. Held by the application state, so it knows
//! nothing of it.

use crate::cluster::broadcast::Replicated;
use streamspace_protocol::UserId;
use tokio::sync::broadcast;

/// Notices kept for slow streams; one that misses some re-checks.
const CAPACITY: usize = 256;

#[derive(Clone)]
pub struct Revocations {
    tx: Replicated<UserId>,
}

impl Default for Revocations {
    fn default() -> Self {
        Self {
            tx: Replicated::new(CAPACITY),
        }
    }
}

impl Revocations {
    /// The user's logins or role changed: their streams re-check.
    pub fn user_changed(&self, user_id: &UserId) {
        self.tx.here(user_id.clone());
    }

    /// Another replica changed the user's logins or role.
    pub fn told(&self, user_id: UserId) {
        self.tx.told(user_id);
    }

    /// The users named here, for the other replicas.
    pub fn ours(&self) -> broadcast::Receiver<UserId> {
        self.tx.ours()
    }

    /// Every user named from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<UserId> {
        self.tx.subscribe()
    }
}
