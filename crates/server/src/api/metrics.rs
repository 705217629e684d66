//! `GET /metrics`: the control plane's metrics (`metrics.rs`) for
//! Prometheus, with the gauges that describe the hub, the login throttle
//! and the store read from them at each scrape.

use crate::state::AppState;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::{StatusCode, header};
use std::time::{Duration, Instant};

/// Counting sessions reads every session the store keeps, terminated ones
/// included, and `/metrics` is public: a scrape within this of the last
/// count reuses it, so a flood of scrapes costs the store one count a
/// second. (Prometheus scrapes every 15 s or so.)
const RECOUNT_AFTER: Duration = Duration::from_secs(1);

/// Prometheus metrics
///
/// Counts only, no users' names or ids; `streamspace_replica_info` names
/// the replica and its version.
#[utoipa::path(
    get,
    operation_id = "metrics",
    path = "/metrics",
    tag = "system",
    responses(
        (status = 200, description = "OpenMetrics text",
            content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8", body = String),
        (status = 500, description = "The metrics could not be encoded (empty body)"),
    ),
)]
pub async fn serve(State(state): State<AppState>) -> Response {
    let metrics = &state.metrics;
    metrics.set_agents_connected(state.hub.connected_count());
    metrics.set_replica(state.replica.id.as_str());
    let (users, addresses) = state.login.throttle.locked();
    metrics.set_login_lockouts(users, addresses);
    metrics.set_password_hashes(state.login.work.in_use());
    metrics.set_singleton_leader(state.leader.is_held());
    count_sessions(&state).await;
    let Ok(text) = metrics.encode() else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

/// Sets the session gauges, unless they were set less than
/// [`RECOUNT_AFTER`] ago. One scrape counts at a time; those that arrive
/// meanwhile wait for it and reuse its count.
async fn count_sessions(state: &AppState) {
    let mut counted = state.metrics.sessions_counted.lock().await;
    if counted.is_some_and(|at| at.elapsed() < RECOUNT_AFTER) {
        return;
    }
    match state.store.count_sessions_by_phase().await {
        Ok(counts) => state.metrics.set_sessions(&counts),
        Err(err) => tracing::warn!(error = %err, "cannot count sessions for metrics"),
    }
    *counted = Some(Instant::now());
}
