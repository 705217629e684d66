//! Leaving without anyone noticing (docs/UPGRADING.md): what a replica
//! does between SIGTERM and exit, and `GET /readyz`, which tells a load
//! balancer or Kubernetes whether to send it anything.
//!
//! On SIGTERM the listeners close (a load balancer's next try goes to
//! another replica), and [`drain`] marks this replica draining in the
//! registry, which ends every agent channel with `reconnect` (the agents
//! come back at once through the same URL, so on another replica) and every
//! event stream (browsers reconnect by themselves). Viewers' tunnels keep
//! streaming until they end or `--drain-timeout` passes; then the
//! application's shutdown closes them, and the viewers reconnect.

use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use axum::Json;
use axum::extract::State;
use serde::Serialize;
use std::time::Duration;
use tokio::time::Instant;
use utoipa::ToSchema;

/// How often a draining replica looks whether its tunnels have ended.
const TUNNEL_POLL: Duration = Duration::from_millis(100);

/// How long `/readyz` waits for the database before calling it unreachable.
const DATABASE_DEADLINE: Duration = Duration::from_secs(2);

/// Marks this replica draining and waits until its viewers' tunnels have
/// ended, at most `drain_timeout`.
pub async fn drain(state: &AppState) {
    state.draining.cancel();
    tracing::info!(
        timeout = ?state.config.drain_timeout,
        tunnels = state.metrics.tunnels_open.get(),
        "draining: agents are told to reconnect elsewhere, tunnels may finish"
    );
    // The other replicas (and `GET /api/v1/replicas`) see it at once, not
    // at the next beat.
    if let Err(err) = crate::cluster::registry::beat(state, true).await {
        tracing::warn!(error = %err, "cannot mark this replica draining in the registry");
    }
    let deadline = Instant::now() + state.config.drain_timeout;
    while state.metrics.tunnels_open.get() > 0 {
        if Instant::now() >= deadline {
            tracing::info!(
                tunnels = state.metrics.tunnels_open.get(),
                "drain timeout: closing the tunnels still open"
            );
            return;
        }
        tokio::time::sleep(TUNNEL_POLL).await;
    }
    tracing::info!("drained: no tunnel open");
}

/// `/readyz`'s answer when this replica can serve.
#[derive(Debug, Serialize, ToSchema)]
pub struct Ready {
    /// Always `ready`.
    pub status: &'static str,
}

/// Readiness
///
/// Whether this replica can serve: its database answers (within 2 s), every
/// migration this binary knows is applied, and it is not draining. A load
/// balancer or Kubernetes readiness probe sends it traffic only on 200;
/// `/healthz` is liveness (the process answers at all).
#[utoipa::path(
    get,
    operation_id = "readyz",
    path = "/readyz",
    tag = "system",
    responses(
        (status = 200, description = "Ready to serve", body = Ready),
        (status = 503, description = "Not ready: the error says why (draining, database unreachable, migrations missing)", body = crate::error::ErrorBody),
    ),
)]
pub async fn readyz(State(state): State<AppState>) -> ApiResult<Json<Ready>> {
    if state.draining.is_cancelled() {
        return Err(ApiError::Unavailable(
            "this replica is draining (shutting down): it takes no new work".into(),
        ));
    }
    let missing = tokio::time::timeout(DATABASE_DEADLINE, state.store.missing_migrations())
        .await
        .map_err(|_| {
            ApiError::Unavailable(format!(
                "the database did not answer within {DATABASE_DEADLINE:?}"
            ))
        })?
        .map_err(|err| {
            // Anyone may ask: the database's own words (its address) stay in the log.
            tracing::warn!(error = %err, "readiness: the database does not answer");
            ApiError::Unavailable("the database does not answer (the log says why)".into())
        })?;
    if !missing.is_empty() {
        return Err(ApiError::Unavailable(format!(
            "the database lacks migrations {missing:?} of this binary: start a replica of \
             this release to apply them"
        )));
    }
    Ok(Json(Ready { status: "ready" }))
}
