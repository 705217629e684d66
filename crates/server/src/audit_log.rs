//! The system audit log (`GET /api/v1/audit`): recording an event must
//! never fail the request it describes, so a store error is logged instead.
//!
//! What records what: `logins.rs` (logins and logouts), `admin.rs` (admin
//! changes), `sessions.rs` (session creates and state changes),
//! `viewers.rs` (viewer connections, with duration and bytes), `shares.rs`
//! (session shares made, ended and joined), `files.rs` (file uploads and
//! downloads); `flood.rs` bounds what anonymous callers can add,
//! `retention.rs` deletes what the retention setting no longer keeps. Every
//! kind is in docs/AUDIT.md.

pub mod admin;
pub mod files;
pub mod flood;
pub mod logins;
pub mod retention;
pub mod sessions;
pub mod shares;
pub mod viewers;

use crate::state::AppState;
pub use crate::store::{AuditEvent, Outcome};

/// Appends `event` to the audit log. Events by `anonymous` go through the
/// replica's budget first (`flood.rs`): over it they are counted, not
/// written, and the count is written once the budget allows.
pub async fn record(state: &AppState, event: AuditEvent) {
    let (write, suppressed) = flood::check(&state.anonymous_events, &event);
    if let Some(suppressed) = suppressed {
        append(state, &suppressed).await;
    }
    if write {
        append(state, &event).await;
    }
}

async fn append(state: &AppState, event: &AuditEvent) {
    if let Err(err) = state.store.record_event(event).await {
        tracing::error!(error = %err, kind = %event.kind, actor = %event.actor, "cannot record audit event");
    }
}
