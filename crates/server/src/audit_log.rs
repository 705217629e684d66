//! The system audit log (`GET /api/v1/audit`): recording an event must
//! never fail the request it describes, so a store error is logged instead.

use crate::state::AppState;
pub use crate::store::{AuditEvent, Outcome};

/// Appends `event` to the audit log.
pub async fn record(state: &AppState, event: AuditEvent) {
    if let Err(err) = state.store.record_event(&event).await {
        tracing::error!(error = %err, kind = %event.kind, actor = %event.actor, "cannot record audit event");
    }
}
