//! Handing an upgraded data channel to the viewer waiting for it, shared by
//! the agent's endpoint (`agent_side.rs`), the replicas' internal one
//! (`internal.rs`) and the relay between them (`forward.rs`,
//! `waiting_replica.rs`): the upgrade's checks and answer, the broker claim,
//! and the names the replicas' endpoint is spoken with. A leaf of `tunnel/`,
//! so those four import it and not each other.

use super::broker::Reply;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use http::{HeaderMap, StatusCode, header};
use streamspace_protocol::tunnel::UPGRADE_PROTOCOL;
use streamspace_protocol::{AgentId, TunnelId};

/// Who is asking, on the internal endpoint: the calling replica's id.
pub const REPLICA_HEADER: &str = "x-streamspace-replica";

/// The agent the calling replica authenticated.
pub const AGENT_HEADER: &str = "x-streamspace-agent";

/// Characters of an agent's failure message passed on: at most 4 bytes
/// each, within the internal endpoint's `FAILURE_BYTES`.
pub const FAILURE_CHARS: usize = 1_000;

/// Hands the upgraded `request` to the viewer waiting here for the tunnel
/// from this agent; a 404 when none is.
pub(super) fn claim(
    state: &AppState,
    tunnel_id: &TunnelId,
    agent_id: &AgentId,
    request: Request,
) -> ApiResult<Response> {
    let reply = state.tunnels.claim(tunnel_id, agent_id).ok_or_else(|| {
        ApiError::NotFound(format!(
            "no viewer is waiting for tunnel {tunnel_id} from agent {agent_id} (it timed out or \
             closed)"
        ))
    })?;
    hand_over(request, reply)
}

/// Refuses anything but an upgrade to the raw tunnel protocol.
pub(super) fn require_upgrade(headers: &HeaderMap) -> ApiResult<()> {
    let wants_tunnel = headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case(UPGRADE_PROTOCOL));
    if !wants_tunnel {
        return Err(ApiError::BadRequest(format!(
            "this endpoint needs Connection: Upgrade and Upgrade: {UPGRADE_PROTOCOL}"
        )));
    }
    Ok(())
}

/// Answers `101 Switching Protocols` and hands the upgraded connection to
/// the viewer side waiting on `reply`.
fn hand_over(mut request: Request, reply: Reply) -> ApiResult<Response> {
    let upgrade = hyper::upgrade::on(&mut request);
    tokio::spawn(async move {
        let stream = upgrade
            .await
            .map_err(|e| format!("tunnel upgrade failed: {e}"));
        // The viewer may have given up meanwhile; then the stream just drops.
        let _ = reply.send(stream);
    });
    switching_protocols()
}

/// The answer that switches a connection to the raw tunnel protocol.
pub(super) fn switching_protocols() -> ApiResult<Response> {
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::CONNECTION, "upgrade")
        .header(header::UPGRADE, UPGRADE_PROTOCOL)
        .body(Body::empty())
        .map_err(|e| ApiError::Internal(e.to_string()))
}
