//! `GET /api/v1/agents/tunnels/{id}`: the agent's data connection for one
//! tunnel, upgraded from HTTP/1.1 to a raw byte stream. A tunnel another
//! replica waits for is relayed there (`forward.rs`).

use super::handoff::{claim, require_upgrade};
use crate::auth::bearer_token;
use crate::auth::secrets::{self, SecretKind};
use crate::error::{ApiError, ApiPath, ApiResult, ErrorBody};
use crate::state::AppState;
use axum::extract::{Request, State};
use axum::response::Response;
use http::HeaderMap;
use streamspace_protocol::{AgentId, TunnelId};

/// An agent's data channel for one tunnel
///
/// An HTTP/1.1 upgrade (`Upgrade: streamspace-tunnel/1`) to a raw byte stream,
/// which the control plane splices to the viewer that asked for it.
#[utoipa::path(
    get,
    operation_id = "agentDataChannel",
    path = "/api/v1/agents/tunnels/{id}",
    tag = "agent protocol",
    security(("agent_secret" = [])),
    params(("id" = String, Path, description = "The tunnel id from `open_tunnel` or `open_logs`")),
    responses(
        (status = 101, description = "Switching to the raw byte stream"),
        (status = 400, description = "Not an upgrade to the tunnel protocol", body = ErrorBody),
        (status = 401, description = "No enrolled agent holds this secret", body = ErrorBody),
        (status = 404, description = "No viewer is waiting for this tunnel from this agent", body = ErrorBody),
        (status = 502, description = "The replica waiting for this tunnel could not be reached", body = ErrorBody),
    ),
)]
pub async fn accept(
    State(state): State<AppState>,
    ApiPath(tunnel_id): ApiPath<TunnelId>,
    request: Request,
) -> ApiResult<Response> {
    require_upgrade(request.headers())?;
    let agent_id = authenticate(&state, request.headers()).await?;
    if !state.tunnels.is_local(&tunnel_id) {
        return super::forward::forward(&state, &tunnel_id, &agent_id, request).await;
    }
    claim(&state, &tunnel_id, &agent_id, request)
}

/// The agent holding the bearer secret: one connected here, or (its
/// control channel on another replica) any the store knows.
async fn authenticate(state: &AppState, headers: &HeaderMap) -> ApiResult<AgentId> {
    let refused = || ApiError::Unauthorized("no enrolled agent holds this secret".into());
    let secret = bearer_token(headers).ok_or_else(|| {
        ApiError::Unauthorized(
            "agents authenticate with Authorization: Bearer <agent secret>".into(),
        )
    })?;
    let hash = secrets::hash(&secret);
    if let Some(agent_id) = state.hub.agent_for_secret(&hash) {
        return Ok(agent_id);
    }
    // Made-up values cost no query.
    if !secrets::well_formed(SecretKind::Agent, &secret) {
        return Err(refused());
    }
    let agent = state.store.agent_by_secret_hash(&hash).await?;
    agent.map(|agent| agent.id).ok_or_else(refused)
}
