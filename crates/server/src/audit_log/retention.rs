//! Retention: audit events older than the `audit_retention_days` setting
//! are deleted, once at start (or when this replica takes the singleton
//! lock) and then every `Config::audit_purge_interval`.
//!
//! Only the replica holding the singleton lock runs it
//! (`cluster/leader.rs`). Two at once would be safe too (during a
//! handover): each statement deletes at most
//! a batch of whatever old rows are still there, so two replicas purging
//! at once delete each row once between them (each records what it
//! deleted). The purge is itself recorded (`audit.purge`), so a log that
//! got shorter says who shortened it and why.

use super::{AuditEvent, Outcome, record};
use crate::state::AppState;
use crate::store::{StoreError, now_ms};
use serde_json::json;
use std::time::{Duration, UNIX_EPOCH};

const ACTOR: &str = "system:retention";
const DAY_MS: i64 = 24 * 60 * 60 * 1000;

/// Runs until the server shuts down.
pub async fn run(state: AppState) {
    let mut tick = tokio::time::interval(state.config.audit_purge_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut turns = state.leader.changes();
    while crate::cluster::leader::next_turn(&mut tick, &mut turns, &state.shutdown).await {
        if !state.leader.is_held() {
            continue;
        }
        if let Err(err) = purge_once(&state).await {
            tracing::warn!(error = %err, "cannot purge old audit events");
        }
    }
}

/// Deletes what the retention setting no longer keeps; how many went.
pub async fn purge_once(state: &AppState) -> Result<u64, StoreError> {
    let days = state.settings.get().await?.audit_retention_days;
    let cutoff = now_ms().saturating_sub(i64::from(days).saturating_mul(DAY_MS));
    let deleted = state.store.purge_audit_log(cutoff).await?;
    if deleted > 0 {
        tracing::info!(deleted, days, "purged old audit events");
        let event = AuditEvent::new(ACTOR, "audit.purge")
            .outcome(Outcome::Success)
            .detail(json!({
                "deleted": deleted,
                "retention_days": days,
                "before": rfc3339(cutoff),
            }));
        record(state, event).await;
    }
    Ok(deleted)
}

fn rfc3339(ms: i64) -> String {
    let at = UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_millis(at).to_string()
}
