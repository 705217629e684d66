//! `GET /audio/{session_id}`: a viewer's WebSocket carrying the session's
//! sound, as the image serves it on its `audio` port (docs/AUDIO.md: Opus in
//! RTP, each packet after a 16-bit length, RFC 4571). The control plane
//! never looks inside: the bytes take the tunnel's zero-copy path, and the
//! browser reassembles packets across WebSocket frames.

use super::access::viewable;
use super::activity::Activity;
use super::open_data_channel;
use super::relay::Tunnel;
use super::viewer::check_origin;
use super::websocket::Handshake;
use crate::audit_log::viewers::{ViewerKind, ViewerOpen, ViewerRecord};
use crate::auth::CurrentUser;
use crate::auth::client_addr::ClientAddr;
use crate::auth::revoke;
use crate::error::{ApiError, ApiPath, ApiResult, ErrorBody};
use crate::state::AppState;
use crate::store::SessionRecord;
use axum::extract::State;
use axum::response::Response;
use http::HeaderMap;
use streamspace_protocol::{DesiredState, Phase, ServerMessage, SessionId};
use tracing::Instrument;

/// Hear a session (its sound over WebSocket)
///
/// A WebSocket (subprotocol `binary` optional) carrying the bytes of the
/// session's `audio` port to the viewer: Opus in RTP, each packet preceded
/// by its length as 16 bits big-endian (RFC 4571), split across binary
/// frames anyhow. What the viewer sends is passed on and ignored by the
/// image. Unlike `/vnc/{id}` it does not wake a hibernated session: open it
/// once the desktop is running. With the cookie, `Origin` must be the
/// control plane's own. Refusals come before the upgrade, as JSON.
#[utoipa::path(
    get,
    operation_id = "hearSession",
    path = "/audio/{id}",
    tag = "viewer",
    security(("bearer" = []), ("cookie" = [])),
    params(("id" = String, Path, description = "The session's id")),
    responses(
        (status = 101, description = "Switching to the WebSocket"),
        (status = 400, description = "Not a WebSocket handshake, with what is missing", body = ErrorBody),
        (status = 403, description = "Foreign `Origin` with the cookie", body = ErrorBody),
        (status = 404, description = "No such session, or not yours", body = ErrorBody),
        (status = 409, description = "The session is not running, or its template has no `audio` port", body = ErrorBody),
        (status = 429, description = "You have too many event, log, VNC and audio streams open; `Retry-After` says when to try again", body = ErrorBody,
            headers(("retry-after" = u64, description = "Seconds to wait"))),
        (status = 503, description = "The agent is offline or cannot reach the session's audio port", body = ErrorBody),
        (status = 504, description = "No tunnel opened in time", body = ErrorBody),
    ),
)]
pub async fn audio(
    State(state): State<AppState>,
    ApiPath(session_id): ApiPath<SessionId>,
    user: CurrentUser,
    client: ClientAddr,
    headers: HeaderMap,
    handshake: Handshake,
) -> ApiResult<Response> {
    if user.via_cookie {
        check_origin(&state, &headers)?;
    }
    // Whoever may see the session may hear it; nothing they send reaches
    // anything that acts on it, so the role sets no rules here.
    let (session, _role) = viewable(&state, &user, &session_id).await?;
    let port = audio_port(&session)?;
    // Held by the tunnel until it closes.
    let permit = state.streams.acquire(&user.user.id)?;
    let agent_id = session
        .agent_id
        .clone()
        .ok_or_else(|| ApiError::Conflict("session has no agent".into()))?;
    let agent_stream =
        open_data_channel(&state, &agent_id, |tunnel_id| ServerMessage::OpenTunnel {
            tunnel_id,
            session_id: session.id.clone(),
            port,
            tls: false,
        })
        .await?;
    let open = ViewerOpen {
        actor: user.actor(),
        session_id: &session.id,
        kind: ViewerKind::Audio,
        port: Some(port),
        client: client.0,
    };
    // Dropped with the task, whenever the tunnel ends: that records the close.
    let record = ViewerRecord::open(&state, open).await;
    // Logout, a new password, demotion or deletion close the tunnel.
    let revoked = revoke::ended(&state, &user);
    let span = tracing::info_span!("audio", session_id = %session.id, %agent_id);
    let (response, upgrade) = handshake.accept();
    state.tasks.clone().spawn(
        async move {
            let _permit = permit;
            let viewer = match upgrade.await {
                Ok(viewer) => viewer,
                Err(err) => return tracing::debug!(%err, "viewer upgrade failed"),
            };
            // Listening is not using the desktop: what the viewer sends here
            // never counts against idle hibernation (nothing reads it).
            let activity = Activity::default();
            let metrics = state.metrics.clone();
            metrics.tunnels_opened.inc();
            metrics.tunnels_open.inc();
            let tunnel = Tunnel {
                activity: &activity,
                metrics: &metrics,
                bytes: &record.bytes,
                shutdown: state.shutdown.clone(),
                // Never parsed: both directions stay on the plain path.
                input: None,
                // Recordings are of the screen (docs/RECORDING.md).
                recorder: None,
            };
            tokio::select! {
                _ = tunnel.run(viewer, agent_stream) => {}
                _ = revoked => {}
            }
            metrics.tunnels_open.dec();
            tracing::debug!("audio tunnel closed");
        }
        .instrument(span),
    );
    Ok(response)
}

/// The port the session's sound is served on, if it is running and its
/// template has one.
fn audio_port(session: &SessionRecord) -> ApiResult<u16> {
    if session.phase != Phase::Running || session.state != DesiredState::Running {
        return Err(ApiError::Conflict(format!(
            "the session is {}: sound plays only while it runs (open the viewer to wake it)",
            session.phase
        )));
    }
    session.spec.audio_port().ok_or_else(|| {
        ApiError::Conflict(
            "the session's template has no port with protocol \"audio\": it has no sound".into(),
        )
    })
}
