//! `GET /api/v1/agents/tunnels/{id}`: the agent's data connection for one
//! tunnel, upgraded from HTTP/1.1 to a raw byte stream.

use crate::auth::{bearer_token, secrets};
use crate::error::{ApiError, ApiPath, ApiResult, ErrorBody};
use crate::state::AppState;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use http::{StatusCode, header};
use streamspace_protocol::TunnelId;
use streamspace_protocol::tunnel::UPGRADE_PROTOCOL;

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
        (status = 404, description = "No viewer is waiting for this tunnel from this agent", body = ErrorBody),
    ),
)]
pub async fn accept(
    State(state): State<AppState>,
    ApiPath(tunnel_id): ApiPath<TunnelId>,
    mut request: Request,
) -> ApiResult<Response> {
    let headers = request.headers();
    let wants_tunnel = headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case(UPGRADE_PROTOCOL));
    if !wants_tunnel {
        return Err(ApiError::BadRequest(format!(
            "this endpoint needs Connection: Upgrade and Upgrade: {UPGRADE_PROTOCOL}"
        )));
    }
    let secret = bearer_token(headers).ok_or_else(|| {
        ApiError::Unauthorized(
            "agents authenticate with Authorization: Bearer <agent secret>".into(),
        )
    })?;
    let agent_id = state
        .hub
        .agent_for_secret(&secrets::hash(&secret))
        .ok_or_else(|| ApiError::Unauthorized("no connected agent holds this secret".into()))?;
    let reply = state.tunnels.claim(&tunnel_id, &agent_id).ok_or_else(|| {
        ApiError::NotFound(format!(
            "no viewer is waiting for tunnel {tunnel_id} from this agent (it timed out or closed)"
        ))
    })?;
    let upgrade = hyper::upgrade::on(&mut request);
    tokio::spawn(async move {
        let stream = upgrade
            .await
            .map_err(|e| format!("tunnel upgrade failed: {e}"));
        // The viewer may have given up meanwhile; then the stream just drops.
        let _ = reply.send(stream);
    });
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::CONNECTION, "upgrade")
        .header(header::UPGRADE, UPGRADE_PROTOCOL)
        .body(Body::empty())
        .map_err(|e| ApiError::Internal(e.to_string()))
}
