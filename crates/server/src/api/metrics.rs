//! `GET /metrics`: the control plane's metrics (`metrics.rs`) for
//! Prometheus, with the gauges that describe the hub, the login throttle
//! and the store read from them at each scrape.

use crate::state::AppState;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::{StatusCode, header};

/// Prometheus metrics
///
/// Counts only, no names or ids.
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
    let (users, addresses) = state.login.throttle.locked();
    metrics.set_login_lockouts(users, addresses);
    metrics.set_password_hashes(state.login.work.in_use());
    match state.store.count_sessions_by_phase().await {
        Ok(counts) => metrics.set_sessions(&counts),
        Err(err) => tracing::warn!(error = %err, "cannot count sessions for metrics"),
    }
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
