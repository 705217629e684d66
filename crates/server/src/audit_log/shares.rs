//! Session shares in the audit log: `share.create` (an invite or a link),
//! `share.end` (by the owner, an admin, or the session's end) and
//! `share.join` (a guest's viewer opened). Each is written twice: to the
//! system log, and to the session's own trail (`GET /sessions/{id}/events`),
//! where the owner reads who was let in and who came.

use super::{AuditEvent, Outcome, record};
use crate::state::AppState;
use crate::store::{AuditEntry, ShareRecord};
use serde_json::{Value, json};
use std::net::IpAddr;

/// One share event: who did it, to which share, from where.
pub struct ShareEvent<'a> {
    /// `user:alice`.
    pub actor: String,
    /// `share.create`, `share.end`, `share.join`.
    pub kind: &'static str,
    pub share: &'a ShareRecord,
    pub client: Option<IpAddr>,
}

/// What the trail says of a share: its id, kind, guest and mode.
fn detail(share: &ShareRecord) -> Value {
    json!({
        "share": share.id,
        "link": share.is_link,
        "via_link": share.link_id,
        "guest": share.guest_username,
        "mode": if share.control { "control" } else { "view" },
        "expires_at": share.expires_at.map(rfc3339),
    })
}

fn rfc3339(ms: i64) -> String {
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_millis(at).to_string()
}

/// The session trail's one-line message.
fn message(share: &ShareRecord) -> String {
    let mode = if share.control {
        "control"
    } else {
        "view only"
    };
    match (&share.guest_username, share.is_link) {
        (_, true) => format!("link {} ({mode})", share.id),
        (Some(guest), false) => format!("{guest} ({mode}), share {}", share.id),
        (None, false) => format!("share {} ({mode})", share.id),
    }
}

/// Records `event` in the system log and in the session's trail.
pub async fn recorded(state: &AppState, event: ShareEvent<'_>) {
    let session_id = &event.share.session_id;
    let system = AuditEvent::new(event.actor.clone(), event.kind)
        .target(format!("session:{session_id}"))
        .outcome(Outcome::Success)
        .client(event.client)
        .detail(detail(event.share));
    record(state, system).await;
    let entry = AuditEntry::new(event.actor, event.kind).message(Some(&message(event.share)));
    if let Err(err) = state.store.record_audit(session_id, &entry).await {
        tracing::error!(error = %err, %session_id, "cannot record a share in the session's trail");
    }
}
