//! `GET /api/v1/replicas`: the control plane's replicas as admins see them
//! (docs/ARCHITECTURE.md#replicas): which are alive, where the others
//! reach them, how many agents each holds.

use super::views::time;
use crate::auth::AdminUser;
use crate::cluster::registry::SILENCE;
use crate::error::{ApiResult, ErrorBody};
use crate::state::AppState;
use crate::store::{ReplicaRecord, duration_ms, now_ms};
use axum::Json;
use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;

/// A control-plane replica.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReplicaView {
    /// 16 hex digits, new at every start.
    pub id: String,
    /// Where the other replicas reach it (`--internal-url`).
    pub internal_url: String,
    /// Its release.
    pub version: String,
    #[schema(format = DateTime)]
    pub started_at: String,
    #[schema(format = DateTime)]
    pub heartbeat_at: String,
    /// Shutting down: it takes no new work.
    pub draining: bool,
    /// Agents whose control channel it holds.
    pub agents_connected: u64,
    /// Whether it is the replica that answered this request.
    pub serving: bool,
}

/// List the control plane's replicas (admin)
///
/// Every replica that beat within the last 10 s, oldest first. On SQLite,
/// the one process.
#[utoipa::path(
    get,
    operation_id = "listReplicas",
    path = "/api/v1/replicas",
    tag = "replicas",
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 200, description = "The live replicas", body = Vec<ReplicaView>),
        (status = 403, description = "Not an admin", body = ErrorBody),
    ),
)]
pub async fn list(
    State(state): State<AppState>,
    _: AdminUser,
) -> ApiResult<Json<Vec<ReplicaView>>> {
    let since = now_ms() - duration_ms(SILENCE);
    let replicas = state.store.live_replicas(since).await?;
    let agents = state.store.agents_per_replica().await?;
    let serving = state.replica.id.as_str();
    let views = replicas
        .into_iter()
        .map(|r| {
            let count = agents.get(&r.id).copied().unwrap_or_default();
            view(r, count, serving)
        })
        .collect();
    Ok(Json(views))
}

fn view(r: ReplicaRecord, agents_connected: u64, serving: &str) -> ReplicaView {
    ReplicaView {
        serving: r.id == serving,
        id: r.id,
        internal_url: r.internal_url,
        version: r.version,
        started_at: time(r.started_at),
        heartbeat_at: time(r.heartbeat_at),
        draining: r.draining,
        agents_connected,
    }
}
