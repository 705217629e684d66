//! What this platform last asked of each session, kept in memory so the
//! watcher can tell our own deletions from ones done to us, and show a
//! waking session as `Waking` rather than `Starting`.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};
use streamspace_protocol::SessionId;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Intent {
    Wake,
    Terminate,
}

/// How long an intent is remembered: long enough for the watch event it
/// explains; bounds the map.
const MEMORY: Duration = Duration::from_secs(600);

#[derive(Debug, Default)]
pub struct Intents {
    by_session: Mutex<HashMap<SessionId, (Intent, Instant)>>,
}

impl Intents {
    pub fn set(&self, session_id: &SessionId, intent: Intent) {
        let now = Instant::now();
        let mut map = self.lock();
        map.retain(|_, (_, at)| now.duration_since(*at) < MEMORY);
        map.insert(session_id.clone(), (intent, now));
    }

    pub fn clear(&self, session_id: &SessionId) {
        self.lock().remove(session_id);
    }

    pub fn get(&self, session_id: &SessionId) -> Option<Intent> {
        self.lock().get(session_id).map(|(intent, _)| *intent)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<SessionId, (Intent, Instant)>> {
        self.by_session
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_the_last_intent_per_session() {
        let intents = Intents::default();
        assert_eq!(intents.get(&"a".into()), None);
        intents.set(&"a".into(), Intent::Wake);
        intents.set(&"b".into(), Intent::Terminate);
        intents.set(&"a".into(), Intent::Terminate);
        assert_eq!(intents.get(&"a".into()), Some(Intent::Terminate));
        intents.clear(&"a".into());
        assert_eq!(intents.get(&"a".into()), None);
        assert_eq!(intents.get(&"b".into()), Some(Intent::Terminate));
    }
}
