//! The in-memory record of what this platform asked Docker to do to each
//! session, shared with the event watcher (see `state.rs` for why).

use crate::state::Intent;
use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// How long a terminate is remembered. Long enough for the `destroy` event
/// to reach a watcher; afterwards the container is gone and nothing asks.
const TERMINATE_MEMORY: Duration = Duration::from_secs(600);

#[derive(Debug, Default)]
pub struct Intents {
    by_session: Mutex<HashMap<String, (Intent, Instant)>>,
}

impl Intents {
    pub fn set(&self, session_id: &str, intent: Intent) {
        let now = Instant::now();
        let mut map = self
            .by_session
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // Hibernate intents live until the session starts again or is
        // terminated; terminate intents expire, which bounds the map.
        map.retain(|_, (intent, at)| {
            *intent == Intent::Hibernate || now.duration_since(*at) < TERMINATE_MEMORY
        });
        map.insert(session_id.to_owned(), (intent, now));
    }

    pub fn clear(&self, session_id: &str) {
        let mut map = self
            .by_session
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        map.remove(session_id);
    }

    pub fn get(&self, session_id: &str) -> Option<Intent> {
        let map = self
            .by_session
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        map.get(session_id).map(|(intent, _)| *intent)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_the_last_intent_per_session() {
        let intents = Intents::default();
        assert_eq!(intents.get("a"), None);
        intents.set("a", Intent::Hibernate);
        intents.set("b", Intent::Terminate);
        assert_eq!(intents.get("a"), Some(Intent::Hibernate));
        intents.set("a", Intent::Terminate);
        assert_eq!(intents.get("a"), Some(Intent::Terminate));
        intents.clear("a");
        assert_eq!(intents.get("a"), None);
        assert_eq!(intents.get("b"), Some(Intent::Terminate));
    }
}
