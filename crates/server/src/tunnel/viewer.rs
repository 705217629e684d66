//! `GET /vnc/{session_id}`: a viewer's WebSocket (noVNC, `streamspace
//! connect`) carrying raw RFB as binary frames.

use super::access::{ViewerRole, viewable};
use super::activity::Activity;
use super::guests::GuestViewer;
use super::open_data_channel;
use super::relay::Tunnel;
use super::websocket::Handshake;
use crate::audit_log::viewers::{ViewerKind, ViewerOpen, ViewerRecord};
use crate::auth::CurrentUser;
use crate::auth::client_addr::ClientAddr;
use crate::auth::revoke;
use crate::error::{ApiError, ApiPath, ApiResult, ErrorBody};
use crate::lifecycle::change_state;
use crate::state::AppState;
use crate::store::{SessionRecord, User};
use axum::extract::State;
use axum::response::Response;
use http::{HeaderMap, header};
use std::time::Duration;
use streamspace_protocol::{DesiredState, Phase, ServerMessage, SessionId};
use tracing::Instrument;

/// View a session (VNC over WebSocket)
///
/// A WebSocket carrying raw RFB in binary frames both ways (noVNC-compatible,
/// subprotocol `binary`). With the cookie, `Origin` must be the control
/// plane's own. A hibernated session is woken first and the request waits
/// until its VNC server answers. Refusals come before the upgrade, as JSON.
#[utoipa::path(
    get,
    operation_id = "viewSession",
    path = "/vnc/{id}",
    tag = "viewer",
    security(("bearer" = []), ("cookie" = [])),
    params(("id" = String, Path, description = "The session's id")),
    responses(
        (status = 101, description = "Switching to the WebSocket"),
        (status = 400, description = "Not a WebSocket handshake, with what is missing", body = ErrorBody),
        (status = 403, description = "Foreign `Origin` with the cookie, or waking it would exceed the quota", body = ErrorBody),
        (status = 404, description = "No such session, or neither yours nor shared with you", body = ErrorBody),
        (status = 409, description = "The session is terminated or stopping (or, for a guest, not running)", body = ErrorBody),
        (status = 429, description = "You have too many event, log and VNC streams open; `Retry-After` says when to try again", body = ErrorBody,
            headers(("retry-after" = u64, description = "Seconds to wait"))),
        (status = 503, description = "The agent is offline, cannot reach the session, or it failed to wake", body = ErrorBody),
        (status = 504, description = "It did not wake, or no tunnel opened, in time", body = ErrorBody),
    ),
)]
pub async fn vnc(
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
    // Held by the tunnel until it closes.
    let permit = state.streams.acquire(&user.user.id)?;
    let session = match &role {
        // Waking is the owner's (it counts against their quota).
        ViewerRole::Guest { .. } => running_for_guest(session)?,
        _ => wake_if_needed(&state, &user.user, session).await?,
    };
    let input = role.input_filter(&session);
    let agent_id = session
        .agent_id
        .clone()
        .ok_or_else(|| ApiError::Conflict("session has no agent".into()))?;
    let port = session
        .spec
        .vnc_port()
        .ok_or_else(|| ApiError::Conflict("session's template has no VNC port".into()))?;
    // Before the agent's tunnel: a recording that cannot start refuses.
    let recorder = crate::recording::policy::for_viewer(&state, &session, &user, client.0).await?;
    let agent_stream =
        open_data_channel(&state, &agent_id, |tunnel_id| ServerMessage::OpenTunnel {
            tunnel_id,
            session_id: session.id.clone(),
            port,
            tls: false,
        })
        .await?;
    state.store.touch_session(&session.id).await?;
    let open = ViewerOpen {
        actor: user.actor(),
        session_id: &session.id,
        kind: ViewerKind::Vnc,
        port: Some(port),
        client: client.0,
    };
    // Dropped with the task, whenever the tunnel ends: that records the close.
    let record = ViewerRecord::open(&state, open).await;
    // A guest is listed as watching until the tunnel ends, which it does
    // when the share ends.
    let guest = match &role {
        ViewerRole::Guest { share_id, .. } => {
            Some(GuestViewer::join(&state, &user, share_id, client.0).await)
        }
        _ => None,
    };

    // Logout, a new password, demotion or deletion close the tunnel.
    let revoked = revoke::ended(&state, &user);
    let span = tracing::info_span!("tunnel", session_id = %session.id, %agent_id);
    let (response, upgrade) = handshake.accept();
    state.tasks.clone().spawn(
        async move {
            let _permit = permit;
            let viewer = match upgrade.await {
                Ok(viewer) => viewer,
                Err(err) => return tracing::debug!(%err, "viewer upgrade failed"),
            };
            let activity = Activity::default();
            let metrics = state.metrics.clone();
            metrics.tunnels_opened.inc();
            metrics.tunnels_open.inc();
            let tunnel = Tunnel {
                activity: &activity,
                metrics: &metrics,
                bytes: &record.bytes,
                shutdown: state.shutdown.clone(),
                input,
                recorder: recorder.as_ref(),
            };
            tokio::select! {
                _ = tunnel.run(viewer, agent_stream) => {}
                _ = activity.record(&state, &session.id) => {}
                _ = revoked => {}
                _ = guest_ended(guest.as_ref()) => tracing::debug!("share ended: closing the guest's viewer"),
            }
            metrics.tunnels_open.dec();
            activity.flush(&state, &session.id).await;
            tracing::debug!("tunnel closed");
        }
        .instrument(span),
    );
    Ok(response)
}

/// A guest's viewer opens only on a running session: waking it is the
/// owner's.
fn running_for_guest(session: SessionRecord) -> ApiResult<SessionRecord> {
    if session.phase == Phase::Running && session.state == DesiredState::Running {
        return Ok(session);
    }
    Err(ApiError::Conflict(format!(
        "the session is {}: it opens to guests while its owner has it running",
        session.phase
    )))
}

/// Completes when a guest's share ends; never for the owner's viewers.
async fn guest_ended(guest: Option<&GuestViewer>) {
    match guest {
        Some(guest) => guest.ended().await,
        None => std::future::pending().await,
    }
}

/// Opening a viewer on a hibernated session wakes it (the viewer's
/// connection waits, bounded, until the VNC server answers); one that is on
/// its way to running is waited for.
pub(crate) async fn wake_if_needed(
    state: &AppState,
    user: &User,
    session: SessionRecord,
) -> ApiResult<SessionRecord> {
    if session.phase == Phase::Running && session.state == DesiredState::Running {
        return Ok(session);
    }
    if matches!(session.phase, Phase::Terminated | Phase::Stopping) {
        return Err(ApiError::Conflict(format!(
            "the session is {}: start a new one",
            session.phase
        )));
    }
    let mut changes = state.changes.subscribe();
    let id = session.id.clone();
    if session.state != DesiredState::Running || session.phase == Phase::Failed {
        let actor = format!("viewer:{}", user.username);
        let reason = "woken by a viewer connection";
        change_state(state, session, DesiredState::Running, &actor, Some(reason)).await?;
    }
    let limit = state.config.wake_timeout;
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let current = state
            .store
            .get_session(&id)
            .await?
            .ok_or_else(|| ApiError::not_found("session"))?;
        match current.phase {
            Phase::Running => return Ok(current),
            Phase::Failed | Phase::Terminated => {
                return Err(ApiError::Unavailable(format!(
                    "the session did not wake: {}",
                    current.message.as_deref().unwrap_or(current.phase.as_str())
                )));
            }
            _ => {}
        }
        // Any change wakes us; the short tick covers missed notifications.
        let wait = tokio::time::timeout(Duration::from_millis(250), changes.recv());
        if tokio::time::timeout_at(deadline, wait).await.is_err() {
            return Err(ApiError::GatewayTimeout(format!(
                "the session did not become ready within {limit:?}; it is {}",
                current.phase
            )));
        }
    }
}

/// Browsers attach the login cookie to WebSockets from any page, so a
/// cookie-authenticated upgrade must come from our own origin.
pub(crate) fn check_origin(state: &AppState, headers: &HeaderMap) -> ApiResult<()> {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return Ok(());
    };
    let public = state.public_url.origin().ascii_serialization();
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    let same_host = host.is_some_and(|host| {
        origin == format!("http://{host}") || origin == format!("https://{host}")
    });
    if origin == public || same_host {
        Ok(())
    } else {
        Err(ApiError::Forbidden(format!(
            "WebSocket from origin {origin} refused: open the viewer from {public}"
        )))
    }
}
