//! In-process notice that a session or an agent changed, for the live
//! views (`api/events.rs` turns them into the SSE stream). They carry ids
//! only; listeners read the current state from the store.

use streamspace_protocol::{AgentId, SessionId, UserId};
use tokio::sync::broadcast;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Session { id: SessionId, user_id: UserId },
    Agent { id: AgentId },
}

#[derive(Clone)]
pub struct Changes {
    tx: broadcast::Sender<Change>,
}

impl Default for Changes {
    fn default() -> Self {
        Self {
            tx: broadcast::channel(1024).0,
        }
    }
}

impl Changes {
    pub fn session_changed(&self, id: &SessionId, user_id: &UserId) {
        // No subscribers is fine: nobody is watching.
        let _ = self.tx.send(Change::Session {
            id: id.clone(),
            user_id: user_id.clone(),
        });
    }

    pub fn agent_changed(&self, id: &AgentId) {
        let _ = self.tx.send(Change::Agent { id: id.clone() });
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Change> {
        self.tx.subscribe()
    }
}
