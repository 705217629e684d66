//! Notice that a session or an agent changed, for the live views
//! (`api/events.rs` turns them into the SSE stream). They carry ids only;
//! listeners read the current state from the store. With several replicas
//! the changes made here are also told to the others, and theirs arrive
//! here (`cluster/broadcast.rs`), so every replica's streams carry every
//! change.

use crate::cluster::broadcast::Replicated;
use serde::{Deserialize, Serialize};
use streamspace_protocol::{AgentId, SessionId, UserId};
use tokio::sync::broadcast;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "of", rename_all = "snake_case")]
pub enum Change {
    Session { id: SessionId, user_id: UserId },
    Agent { id: AgentId },
}

#[derive(Clone)]
pub struct Changes {
    tx: Replicated<Change>,
}

impl Default for Changes {
    fn default() -> Self {
        Self {
            tx: Replicated::new(1024),
        }
    }
}

impl Changes {
    pub fn session_changed(&self, id: &SessionId, user_id: &UserId) {
        self.tx.here(Change::Session {
            id: id.clone(),
            user_id: user_id.clone(),
        });
    }

    pub fn agent_changed(&self, id: &AgentId) {
        self.tx.here(Change::Agent { id: id.clone() });
    }

    /// A change another replica made.
    pub fn told(&self, change: Change) {
        self.tx.told(change);
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Change> {
        self.tx.subscribe()
    }

    /// The changes made here, for the other replicas.
    pub fn ours(&self) -> broadcast::Receiver<Change> {
        self.tx.ours()
    }
}
