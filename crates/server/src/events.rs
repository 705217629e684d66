//! In-process notifications that something changed, for live views. They
//! carry ids only; listeners read the current state from the store.

use tokio::sync::broadcast;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Session { id: String, user_id: String },
    Agent { id: String },
}

#[derive(Clone)]
pub struct EventBus {
    tx: broadcast::Sender<Event>,
}

impl Default for EventBus {
    fn default() -> Self {
        Self {
            tx: broadcast::channel(1024).0,
        }
    }
}

impl EventBus {
    pub fn session_changed(&self, id: &str, user_id: &str) {
        // No subscribers is fine: nobody is watching.
        let _ = self.tx.send(Event::Session {
            id: id.to_owned(),
            user_id: user_id.to_owned(),
        });
    }

    pub fn agent_changed(&self, id: &str) {
        let _ = self.tx.send(Event::Agent { id: id.to_owned() });
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.tx.subscribe()
    }
}
