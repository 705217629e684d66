//! `GET /internal/v1/tunnels/{id}`: another replica relaying an agent's
//! data channel for a tunnel this replica waits for (`forward.rs` there);
//! `POST` to the same path: the agent told that replica it could not open
//! the tunnel (`waiting_replica::report_failure`), and the viewer here
//! hears why at once.
//! Not part of the public API (nor of its OpenAPI document): only replicas
//! call it, proving themselves with their replica secret, checked against
//! `replicas.secret_hash`; docs/PROTOCOL.md describes it.
//!
//! The calling replica vouches for the agent (it checked the agent's
//! secret); the broker still hands the tunnel only to the agent it was
//! asked of, so a replica cannot take a tunnel meant for another agent.

use super::handoff::{AGENT_HEADER, REPLICA_HEADER, claim, require_upgrade};
use crate::auth::bearer_token;
use crate::auth::secrets::{self, SecretKind};
use crate::cluster::registry::SILENCE;
use crate::error::{ApiError, ApiPath, ApiResult};
use crate::state::AppState;
use crate::store::{duration_ms, now_ms};
use axum::extract::{Request, State};
use axum::response::Response;
use http::{HeaderMap, StatusCode};
use streamspace_protocol::{AgentId, TunnelId};

/// Longest id header accepted (ids are 16 or 36 characters).
const MAX_ID: usize = 64;

/// Bytes of a failure report's body accepted.
const FAILURE_BYTES: usize = 4 * 1024;

pub async fn accept(
    State(state): State<AppState>,
    ApiPath(tunnel_id): ApiPath<TunnelId>,
    request: Request,
) -> ApiResult<Response> {
    require_upgrade(request.headers())?;
    let caller = authenticate(&state, request.headers()).await?;
    let agent_id = AgentId::from(header(request.headers(), AGENT_HEADER)?);
    tracing::debug!(%tunnel_id, %agent_id, from = %caller, "a relayed tunnel");
    claim(&state, &tunnel_id, &agent_id, request)
}

/// The agent could not open a tunnel this replica waits for: the waiting
/// viewer gets a 503 with the agent's reason.
pub async fn failed(
    State(state): State<AppState>,
    ApiPath(tunnel_id): ApiPath<TunnelId>,
    request: Request,
) -> ApiResult<StatusCode> {
    authenticate(&state, request.headers()).await?;
    let agent_id = AgentId::from(header(request.headers(), AGENT_HEADER)?);
    let body = axum::body::to_bytes(request.into_body(), FAILURE_BYTES)
        .await
        .map_err(|_| {
            ApiError::PayloadTooLarge(format!(
                "the failure message must be at most {FAILURE_BYTES} bytes"
            ))
        })?;
    let error = String::from_utf8_lossy(&body).into_owned();
    if !state.tunnels.fail(&tunnel_id, &agent_id, error) {
        return Err(ApiError::NotFound(format!(
            "no viewer is waiting for tunnel {tunnel_id} from agent {agent_id}"
        )));
    }
    Ok(StatusCode::NO_CONTENT)
}

/// The live replica whose secret the request carries; its id.
async fn authenticate(state: &AppState, headers: &HeaderMap) -> ApiResult<String> {
    let refused = || {
        ApiError::Unauthorized(format!(
            "replicas authenticate with {REPLICA_HEADER}: <replica id> and Authorization: \
             Bearer <that replica's secret>; this pair names no running replica"
        ))
    };
    let replica_id = header(headers, REPLICA_HEADER)?;
    let secret = bearer_token(headers).ok_or_else(refused)?;
    // Made-up values cost no query.
    if !secrets::well_formed(SecretKind::Replica, &secret) {
        return Err(refused());
    }
    let replica = state
        .store
        .replica(&replica_id)
        .await?
        .ok_or_else(refused)?;
    let live = replica.heartbeat_at >= now_ms() - duration_ms(SILENCE);
    if !live || replica.secret_hash != secrets::hash(&secret) {
        return Err(refused());
    }
    Ok(replica.id)
}

/// A required id header, bounded.
fn header(headers: &HeaderMap, name: &str) -> ApiResult<String> {
    let value = headers.get(name).and_then(|v| v.to_str().ok());
    match value {
        Some(v) if !v.is_empty() && v.len() <= MAX_ID => Ok(v.to_owned()),
        _ => Err(ApiError::BadRequest(format!(
            "header {name} is required: an id of 1 to {MAX_ID} characters"
        ))),
    }
}
