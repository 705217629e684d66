//! Retention: recordings older than the `recording_retention_days` setting
//! are deleted, then the oldest finished ones until all together fit in
//! `recording_retention_mib`; once at start and then every
//! `Config::recording_purge_interval`. Each deletion is audited
//! (`recording.delete` by `system:retention`). Running recordings are
//! never deleted; the hard caps (`recording::Limits`) bound them.

use super::{Listed, Recordings};
use crate::audit_log::{AuditEvent, Outcome, record};
use crate::state::AppState;
use crate::store::now_ms;
use serde_json::json;
use std::io;

const ACTOR: &str = "system:retention";
const DAY_MS: i64 = 24 * 60 * 60 * 1000;

/// What retention keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Keep {
    pub days: u32,
    pub bytes: u64,
}

/// Runs until the server shuts down.
pub async fn run(state: AppState) {
    let mut tick = tokio::time::interval(state.config.recording_purge_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = state.shutdown.cancelled() => return,
        }
        if let Err(err) = purge_once(&state).await {
            tracing::warn!(error = %err, "cannot purge old recordings");
        }
    }
}

/// Applies the retention settings once; the recordings deleted.
pub async fn purge_once(state: &AppState) -> anyhow::Result<Vec<Listed>> {
    let settings = state.settings.get().await?;
    let keep = Keep {
        days: settings.recording_retention_days,
        bytes: settings.recording_retention_mib.saturating_mul(1 << 20),
    };
    let recordings = state.recordings.clone();
    let deleted = tokio::task::spawn_blocking(move || purge(&recordings, keep, now_ms())).await??;
    for gone in &deleted {
        let event = AuditEvent::new(ACTOR, "recording.delete")
            .target(format!("session:{}", gone.info.session_id))
            .outcome(Outcome::Success)
            .detail(json!({
                "recording": gone.info.id,
                "bytes": gone.bytes,
                "reason": "retention",
                "retention_days": keep.days,
                "retention_mib": settings.recording_retention_mib,
            }));
        record(state, event).await;
    }
    Ok(deleted)
}

/// Deletes the finished recordings `keep` does not keep, oldest first.
pub fn purge(recordings: &Recordings, keep: Keep, now: i64) -> io::Result<Vec<Listed>> {
    let cutoff = now.saturating_sub(i64::from(keep.days).saturating_mul(DAY_MS));
    let mut total = recordings.recount()?;
    // Newest first: walk from the end, the oldest.
    let mut finished: Vec<Listed> = recordings.list(None)?;
    finished.retain(|listed| !listed.active);
    let mut deleted = Vec::new();
    while let Some(oldest) = finished.pop() {
        let too_old = oldest.info.started_ms < cutoff;
        if !too_old && total <= keep.bytes {
            break;
        }
        match recordings.delete(&oldest.info.id) {
            Ok(_) => {
                total = total.saturating_sub(oldest.bytes);
                deleted.push(oldest);
            }
            Err(err) => tracing::warn!(id = %oldest.info.id, %err, "cannot delete a recording"),
        }
    }
    if !deleted.is_empty() {
        tracing::info!(deleted = deleted.len(), "purged recordings by retention");
    }
    Ok(deleted)
}
