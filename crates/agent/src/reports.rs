//! What every platform's watcher does with the reports its observations
//! make: send only changes. Docker yields `die` and then `stop` for one
//! stop, Kubernetes a pod update for each status change of the kubelet;
//! most leave the session's phase as it was.

use std::collections::HashMap;
use streamspace_protocol::{SessionId, SessionReport};

/// The last report a watcher sent per session.
#[derive(Debug, Default)]
pub struct LastSent {
    by_session: HashMap<SessionId, SessionReport>,
}

impl LastSent {
    /// Whether `report` differs from the last one sent for its session;
    /// if so it is remembered as sent. A final phase (the session is gone)
    /// ends the session's entry, which keeps the map to live sessions.
    pub fn is_news(&mut self, report: &SessionReport) -> bool {
        if self.by_session.get(&report.session_id) == Some(report) {
            return false;
        }
        if report.phase.is_final() {
            self.by_session.remove(&report.session_id);
        } else {
            self.by_session
                .insert(report.session_id.clone(), report.clone());
        }
        true
    }

    /// Forgets what was sent for a session: its next report is news,
    /// whatever it says.
    pub fn forget(&mut self, session_id: &SessionId) {
        self.by_session.remove(session_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use streamspace_protocol::Phase;

    #[test]
    fn only_changes_are_news() {
        let mut sent = LastSent::default();
        let running = SessionReport::new("a", Phase::Running);
        assert!(sent.is_news(&running));
        assert!(!sent.is_news(&running));
        assert!(sent.is_news(&SessionReport::new("b", Phase::Running)));
        let failed = SessionReport::new("a", Phase::Failed).with_message("crashed");
        assert!(sent.is_news(&failed));
        assert!(!sent.is_news(&failed));
        sent.forget(&"a".into());
        assert!(sent.is_news(&failed));
        let terminated = SessionReport::new("a", Phase::Terminated);
        assert!(sent.is_news(&terminated));
        assert!(sent.is_news(&terminated), "a final report ends the entry");
    }
}
