//! What the agent last asked the platform to do to each session, kept in
//! memory so that a platform's observation can tell its own doing from
//! what happened to a session: our stop from a crash (Docker), our
//! deletion from somebody's `kubectl delete`, a waking session from a
//! starting one. Shared by the platform's commands and its watcher.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};
use streamspace_protocol::{Phase, SessionId, SessionReport};

/// The command a platform recorded before acting on a session. Each
/// platform records only the ones its observation cannot tell by itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Intent {
    /// Kept until the session is started, woken or terminated again: a
    /// stopped container looks the same however long ago we stopped it.
    Hibernate,
    Wake,
    Terminate,
}

/// How long a wake or terminate is remembered: long enough for the watch
/// event it explains to arrive; afterwards the object is gone or running
/// and nothing asks. It bounds the map.
const MEMORY: Duration = Duration::from_secs(600);

#[derive(Debug, Default)]
pub struct Intents {
    by_session: Mutex<HashMap<SessionId, (Intent, Instant)>>,
}

impl Intents {
    pub fn set(&self, session_id: &SessionId, intent: Intent) {
        let now = Instant::now();
        let mut map = self.lock();
        map.retain(|_, (intent, at)| {
            *intent == Intent::Hibernate || now.duration_since(*at) < MEMORY
        });
        map.insert(session_id.clone(), (intent, now));
    }

    pub fn clear(&self, session_id: &SessionId) {
        self.lock().remove(session_id);
    }

    pub fn get(&self, session_id: &SessionId) -> Option<Intent> {
        self.lock().get(session_id).map(|(intent, _)| *intent)
    }

    /// The report for a session whose platform object (container,
    /// Deployment) is gone: `Terminated` if our terminate removed it,
    /// otherwise `Failed` with `outside`, which says what happened and
    /// what is kept.
    pub fn removal_report(
        &self,
        session_id: &SessionId,
        outside: impl FnOnce() -> String,
    ) -> SessionReport {
        if self.get(session_id) == Some(Intent::Terminate) {
            return SessionReport::new(session_id, Phase::Terminated);
        }
        let message = outside();
        tracing::warn!(%session_id, %message, "session removed outside StreamSpace");
        SessionReport::new(session_id, Phase::Failed).with_message(message)
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<SessionId, (Intent, Instant)>> {
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
        intents.set(&"a".into(), Intent::Hibernate);
        intents.set(&"b".into(), Intent::Terminate);
        assert_eq!(intents.get(&"a".into()), Some(Intent::Hibernate));
        intents.set(&"a".into(), Intent::Wake);
        assert_eq!(intents.get(&"a".into()), Some(Intent::Wake));
        intents.set(&"a".into(), Intent::Terminate);
        assert_eq!(intents.get(&"a".into()), Some(Intent::Terminate));
        intents.clear(&"a".into());
        assert_eq!(intents.get(&"a".into()), None);
        assert_eq!(intents.get(&"b".into()), Some(Intent::Terminate));
    }

    #[test]
    fn a_removal_is_ours_only_after_our_terminate() {
        let intents = Intents::default();
        intents.set(&"ours".into(), Intent::Terminate);
        let report = intents.removal_report(&"ours".into(), || unreachable!("ours"));
        assert_eq!(report.phase, Phase::Terminated);
        intents.set(&"hibernated".into(), Intent::Hibernate);
        let report = intents.removal_report(&"hibernated".into(), || "removed by hand".into());
        assert_eq!(report.phase, Phase::Failed);
        assert_eq!(report.message.as_deref(), Some("removed by hand"));
    }
}
