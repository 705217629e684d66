//! `GET /vnc/{session_id}`: a viewer's WebSocket (noVNC, `streamspace
//! connect`) carrying raw RFB as binary frames.

use super::open_data_channel;
use super::splice::splice;
use crate::auth::CurrentUser;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{Path, State};
use axum::response::Response;
use http::{HeaderMap, header};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use streamspace_protocol::{Phase, ServerMessage};
use tokio::time::interval;
use tracing::Instrument;

/// How often viewer input is written to the session's `last_activity`.
const ACTIVITY_FLUSH: Duration = Duration::from_secs(15);
/// WebSocket buffers per viewer: small, so idle tunnels cost little memory.
const WS_BUFFER: usize = 16 * 1024;

pub async fn vnc(
    State(state): State<AppState>,
    Path(session_id): Path<String>,
    user: CurrentUser,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> ApiResult<Response> {
    if user.via_cookie {
        check_origin(&state, &headers)?;
    }
    let session = state
        .store
        .get_session(&session_id)
        .await?
        .filter(|s| user.may_access(&s.user_id))
        .ok_or_else(|| ApiError::not_found("session"))?;
    if session.phase != Phase::Running {
        return Err(ApiError::Conflict(format!(
            "session is {}, not Running: wake it with PUT /api/v1/sessions/{}/state \
             {{\"state\":\"running\"}} and retry",
            session.phase, session.id
        )));
    }
    let agent_id = session
        .agent_id
        .ok_or_else(|| ApiError::Conflict("session has no agent".into()))?;
    let port = session
        .spec
        .vnc_port()
        .ok_or_else(|| ApiError::Conflict("session's template has no VNC port".into()))?;
    let agent_stream =
        open_data_channel(&state, &agent_id, |tunnel_id| ServerMessage::OpenTunnel {
            tunnel_id,
            session_id: session.id.clone(),
            port,
        })
        .await?;
    state.store.touch_session(&session.id).await?;

    let span = tracing::info_span!("tunnel", session_id = %session.id, %agent_id);
    let tasks = state.tasks.clone();
    Ok(upgrade
        .protocols(["binary"])
        .read_buffer_size(WS_BUFFER)
        .write_buffer_size(WS_BUFFER)
        .on_upgrade(move |ws| {
            tasks.track_future(
                async move {
                    let input = Arc::new(AtomicBool::new(false));
                    let shutdown = state.shutdown.clone();
                    tokio::select! {
                        _ = splice(ws, agent_stream, input.clone(), shutdown) => {}
                        _ = record_activity(&state, &session.id, &input) => {}
                    }
                    if input.load(Ordering::Relaxed) {
                        let _ = state.store.touch_session(&session.id).await;
                    }
                    tracing::debug!("tunnel closed");
                }
                .instrument(span),
            )
        }))
}

async fn record_activity(state: &AppState, session_id: &str, input: &AtomicBool) {
    let mut tick = interval(ACTIVITY_FLUSH);
    loop {
        tick.tick().await;
        if input.swap(false, Ordering::Relaxed)
            && let Err(err) = state.store.touch_session(session_id).await
        {
            tracing::warn!(error = %err, "cannot record session activity");
        }
    }
}

/// Browsers attach the login cookie to WebSockets from any page, so a
/// cookie-authenticated upgrade must come from our own origin.
fn check_origin(state: &AppState, headers: &HeaderMap) -> ApiResult<()> {
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
