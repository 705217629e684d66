//! `GET /audio/{session_id}`: a viewer's WebSocket carrying the session's
//! sound, as the image serves it on its `audio` port (docs/AUDIO.md: Opus in
//! RTP, each packet after a 16-bit length, RFC 4571); and
//! `GET /audio/{session_id}/microphone`, the same the other way: the
//! viewer's microphone into the image's `microphone` port. The control
//! plane never looks inside: the bytes take the tunnel's zero-copy path, and
//! each end reassembles packets across WebSocket frames.

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
    relay(
        &state,
        &user,
        client,
        &session,
        port,
        ViewerKind::Audio,
        handshake,
    )
    .await
}

/// Speak into a session (the viewer's microphone over WebSocket)
///
/// A WebSocket (subprotocol `binary` optional) carrying the viewer's
/// microphone to the session's `microphone` port, framed as `/audio/{id}`
/// sends sound: Opus in RTP, each packet preceded by its length as 16 bits
/// big-endian (RFC 4571), split across binary frames anyhow. For the owner,
/// admins and guests with control: a view-only guest may not put sound into
/// the session. With the cookie, `Origin` must be the control plane's own.
/// Refusals come before the upgrade, as JSON.
#[utoipa::path(
    get,
    operation_id = "speakIntoSession",
    path = "/audio/{id}/microphone",
    tag = "viewer",
    security(("bearer" = []), ("cookie" = [])),
    params(("id" = String, Path, description = "The session's id")),
    responses(
        (status = 101, description = "Switching to the WebSocket"),
        (status = 400, description = "Not a WebSocket handshake, with what is missing", body = ErrorBody),
        (status = 403, description = "Foreign `Origin` with the cookie, or a guest without control", body = ErrorBody),
        (status = 404, description = "No such session, or not yours", body = ErrorBody),
        (status = 409, description = "The session is not running, its template has no `microphone` port, or its policy (`desktop.microphone`) forbids it", body = ErrorBody),
        (status = 429, description = "You have too many event, log, VNC and audio streams open; `Retry-After` says when to try again", body = ErrorBody,
            headers(("retry-after" = u64, description = "Seconds to wait"))),
        (status = 503, description = "The agent is offline or cannot reach the session's microphone port", body = ErrorBody),
        (status = 504, description = "No tunnel opened in time", body = ErrorBody),
    ),
)]
pub async fn microphone(
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
    let (session, role) = viewable(&state, &user, &session_id).await?;
    // Sound into the session is input, like keys: a view-only guest may
    // watch and listen but not speak.
    if !role.input_rules(&session).input {
        return Err(ApiError::Forbidden(
            "this session is shared with you view-only: ask its owner for control to use your microphone"
                .into(),
        ));
    }
    let port = microphone_port(&session)?;
    let kind = ViewerKind::Microphone;
    relay(&state, &user, client, &session, port, kind, handshake).await
}

/// Opens a tunnel to `port` on the session's agent and relays the viewer's
/// WebSocket through it, unparsed, until either end or the user's login
/// goes.
async fn relay(
    state: &AppState,
    user: &CurrentUser,
    client: ClientAddr,
    session: &SessionRecord,
    port: u16,
    kind: ViewerKind,
    handshake: Handshake,
) -> ApiResult<Response> {
    // Held by the tunnel until it closes.
    let permit = state.streams.acquire(&user.user.id)?;
    let agent_id = session
        .agent_id
        .clone()
        .ok_or_else(|| ApiError::Conflict("session has no agent".into()))?;
    let agent_stream = open_data_channel(state, &agent_id, |tunnel_id| ServerMessage::OpenTunnel {
        tunnel_id,
        session_id: session.id.clone(),
        port,
        tls: false,
    })
    .await?;
    let open = ViewerOpen {
        actor: user.actor(),
        session_id: &session.id,
        kind,
        port: Some(port),
        client: client.0,
    };
    // Dropped with the task, whenever the tunnel ends: that records the close.
    let record = ViewerRecord::open(state, open).await;
    // Logout, a new password, demotion or deletion close the tunnel.
    let revoked = revoke::ended(state, user);
    let span = tracing::info_span!("audio", ?kind, session_id = %session.id, %agent_id);
    let (response, upgrade) = handshake.accept();
    let state = state.clone();
    state.tasks.clone().spawn(
        async move {
            let _permit = permit;
            let viewer = match upgrade.await {
                Ok(viewer) => viewer,
                Err(err) => return tracing::debug!(%err, "viewer upgrade failed"),
            };
            // Listening (or speaking) is not using the desktop: nothing here
            // counts against idle hibernation.
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

/// The port the session takes the viewer's microphone on, if it is running,
/// its template has one and its policy allows it.
fn microphone_port(session: &SessionRecord) -> ApiResult<u16> {
    if !session.spec.desktop.microphone {
        return Err(ApiError::Conflict(
            "the session's template does not allow microphones (desktop.microphone is false)"
                .into(),
        ));
    }
    if session.phase != Phase::Running || session.state != DesiredState::Running {
        return Err(ApiError::Conflict(format!(
            "the session is {}: it takes a microphone only while it runs",
            session.phase
        )));
    }
    session.spec.microphone_port().ok_or_else(|| {
        ApiError::Conflict(
            "the session's template has no port with protocol \"microphone\": it takes no microphone"
                .into(),
        )
    })
}
