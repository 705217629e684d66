//! Sessions in the audit log: created (by a user, or by the warm pool),
//! their desired state changed (by a user, an admin, a viewer waking it,
//! the idle detector, the pool), terminated, and given up on by the
//! reconciler. Each session also keeps its own detailed trail
//! (`GET /sessions/{id}/events`, `store/audit.rs`); this is the system-wide
//! record of who did what.

use super::{AuditEvent, Outcome, record};
use crate::state::AppState;
use serde_json::{Value, json};
use std::net::IpAddr;
use streamspace_protocol::{DesiredState, SessionId};

/// Who changed a session, as the system log names actors: the session
/// trail's `viewer:alice` (a viewer woke it) is `user:alice` here, with
/// the viewer in the detail.
fn actor_of(actor: &str) -> (String, Option<&'static str>) {
    match actor.strip_prefix("viewer:") {
        Some(user) => (format!("user:{user}"), Some("viewer")),
        None => (actor.to_owned(), None),
    }
}

/// `session.create`; `detail` says from what and where.
pub async fn created(
    state: &AppState,
    actor: &str,
    session_id: &SessionId,
    client: Option<IpAddr>,
    detail: Value,
) {
    let event = AuditEvent::new(actor, "session.create")
        .target(format!("session:{session_id}"))
        .outcome(Outcome::Success)
        .client(client)
        .detail(detail);
    record(state, event).await;
}

/// A change of what the session should be: `session.terminate` when it
/// should end (`forced` when an admin ended it without its agent),
/// `session.state` otherwise.
pub async fn state_set(
    state: &AppState,
    actor: &str,
    session_id: &SessionId,
    desired: DesiredState,
    (reason, forced): (Option<&str>, bool),
) {
    let kind = match desired {
        DesiredState::Terminated => "session.terminate",
        _ => "session.state",
    };
    let (actor, via) = actor_of(actor);
    let mut detail = json!({"state": desired.as_str(), "reason": reason});
    if let Some(via) = via {
        detail["via"] = json!(via);
    }
    if forced {
        detail["forced"] = json!(true);
    }
    let event = AuditEvent::new(actor, kind)
        .target(format!("session:{session_id}"))
        .outcome(Outcome::Success)
        .detail(detail);
    record(state, event).await;
}

/// The reconciler gave up making the session what it should be: it is
/// `Failed` now, and needs a person.
pub async fn gave_up(state: &AppState, actor: &str, session_id: &SessionId, reason: &str) {
    let event = AuditEvent::new(actor, "session.state")
        .target(format!("session:{session_id}"))
        .outcome(Outcome::Failure)
        .detail(json!({"phase": "Failed", "reason": reason}));
    record(state, event).await;
}
