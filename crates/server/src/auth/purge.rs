//! Deletes expired login and enrollment tokens (and MFA challenges), which would otherwise pile
//! up forever (a login per browser per week). Expired tokens already stop
//! working when they expire; this only reclaims their rows. Only the replica
//! holding the singleton lock runs it (`cluster/leader.rs`); the deletes
//! are idempotent anyway.

use crate::state::AppState;

/// Runs until the server shuts down, once at start (or when this replica
/// takes the singleton lock) and then every `Config::token_purge_interval`.
pub async fn run(state: AppState) {
    let mut tick = tokio::time::interval(state.config.token_purge_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut turns = state.leader.changes();
    while crate::cluster::leader::next_turn(&mut tick, &mut turns, &state.shutdown).await {
        if !state.leader.is_held() {
            continue;
        }
        match state.store.delete_expired_tokens().await {
            Ok((0, 0)) => {}
            Ok((logins, enrollments)) => {
                tracing::info!(logins, enrollments, "deleted expired tokens")
            }
            Err(err) => tracing::warn!(error = %err, "cannot delete expired tokens"),
        }
        match state.store.delete_expired_app_grants().await {
            Ok(0) => {}
            Ok(grants) => tracing::info!(grants, "deleted expired web-app grants"),
            Err(err) => tracing::warn!(error = %err, "cannot delete expired web-app grants"),
        }
        match state.store.delete_expired_mfa_challenges().await {
            Ok(0) => {}
            Ok(challenges) => tracing::info!(challenges, "deleted expired MFA challenges"),
            Err(err) => tracing::warn!(error = %err, "cannot delete expired MFA challenges"),
        }
    }
}
