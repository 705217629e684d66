//! The in-memory record of what this platform asked Docker to do to each
//! session, shared with the event watcher (see `state.rs` for why).

use crate::state::Intent;
use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};
use streamspace_protocol::SessionId;

/// How long a terminate is remembered. Long enough for the `destroy` event
/// to reach a watcher; afterwards the container is gone and nothing asks.
const TERMINATE_MEMORY: Duration = Duration::from_secs(600);

#[derive(Debug, Default)]
pub struct Intents {
    by_session: Mutex<HashMap<SessionId, (Intent, Instant)>>,
}

impl Intents {
    pub fn set(&self, session_id: &SessionId, intent: Intent) {
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
        map.insert(session_id.clone(), (intent, now));
    }

    pub fn clear(&self, session_id: &SessionId) {
        let mut map = self
            .by_session
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        map.remove(session_id);
    }

    pub fn get(&self, session_id: &SessionId) -> Option<Intent> {
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
        assert_eq!(intents.get(&"a".into()), None);
        intents.set(&"a".into(), Intent::Hibernate);
        intents.set(&"b".into(), Intent::Terminate);
        assert_eq!(intents.get(&"a".into()), Some(Intent::Hibernate));
        intents.set(&"a".into(), Intent::Terminate);
        assert_eq!(intents.get(&"a".into()), Some(Intent::Terminate));
        intents.clear(&"a".into());
        assert_eq!(intents.get(&"a".into()), None);
        assert_eq!(intents.get(&"b".into()), Some(Intent::Terminate));
    }
}
