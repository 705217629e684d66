//! File transfers in the audit log (docs/FILES.md): `file.upload` and
//! `file.download` on the session, with the path and size, or outcome
//! `denied` when the template's policy refused it.

use super::{AuditEvent, Outcome, record};
use crate::state::AppState;
use serde_json::json;
use std::net::IpAddr;
use streamspace_protocol::SessionId;

/// One transfer's event, made when the request arrives and recorded once
/// its outcome is known.
pub struct Transfer {
    event: AuditEvent,
    path: String,
}

impl Transfer {
    /// `kind` is `file.upload` or `file.download`.
    pub fn new(
        actor: String,
        client: Option<IpAddr>,
        session_id: &SessionId,
        kind: &str,
        path: &str,
    ) -> Self {
        let event = AuditEvent::new(actor, kind)
            .target(format!("session:{session_id}"))
            .client(client);
        Self {
            event,
            path: path.to_owned(),
        }
    }

    /// The policy refused it.
    pub async fn denied(self, state: &AppState) {
        let event = self
            .event
            .outcome(Outcome::Denied)
            .detail(json!({"path": self.path}));
        record(state, event).await;
    }

    /// `size` bytes are moving (a download) or were written (an upload).
    pub async fn done(self, state: &AppState, size: u64) {
        let detail = json!({"path": self.path, "size": size});
        record(state, self.event.outcome(Outcome::Success).detail(detail)).await;
    }
}
