//! Changes made through the admin routes (users, quotas, templates,
//! agents), and a user's own account changes, recorded the one way: who,
//! from where, to what, and what changed. Only changes that were made are
//! recorded; a refused request changed nothing and its answer says why.

use super::{AuditEvent, Outcome, record};
use crate::auth::CurrentUser;
use crate::auth::client_addr::ClientAddr;
use crate::state::AppState;
use serde_json::Value;

/// What an admin (or a user, on their own account) changed.
pub struct Change<'a> {
    pub by: &'a CurrentUser,
    pub client: ClientAddr,
    /// `user.create`, `template.update`, `agent.drain`…
    pub kind: &'static str,
    /// `user:alice`, `template:desktop`, `agent:host-b`.
    pub target: String,
    pub detail: Value,
}

/// Records a change that was made.
pub async fn changed(state: &AppState, change: Change<'_>) {
    let event = AuditEvent::new(change.by.actor(), change.kind)
        .target(change.target)
        .outcome(Outcome::Success)
        .client(change.client.0)
        .detail(change.detail);
    record(state, event).await;
}
