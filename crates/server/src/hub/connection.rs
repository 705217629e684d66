//! One agent's control channel: authenticate, handshake, replay undelivered
//! commands, then relay messages until either side goes away.

use super::rate::MessageRate;
use super::reports;
use crate::auth::{bearer_token, secrets};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use crate::store::AgentRecord;
use axum::extract::State;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::response::Response;
use http::HeaderMap;
use std::time::Duration;
use streamspace_protocol::{
    AgentId, AgentMessage, Hello, PROTOCOL_VERSION, ServerMessage, Welcome,
};
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep_until, timeout};
use tracing::Instrument;

/// Control messages are small; anything bigger is a broken or hostile peer.
const MAX_MESSAGE: usize = 1 << 20;
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
const CONTROL_BUFFER: usize = 4 * 1024;

/// An agent's control channel (WebSocket)
///
/// `GET /api/v1/agents/connect`: the agent's outbound control channel, one
/// JSON message per text frame (see docs/PROTOCOL.md).
#[utoipa::path(
    get,
    operation_id = "agentControlChannel",
    path = "/api/v1/agents/connect",
    tag = "agent protocol",
    security(("agent_secret" = [])),
    responses(
        (status = 101, description = "Switching to the WebSocket"),
        (status = 400, description = "Not a WebSocket handshake (plain text)", content_type = "text/plain", body = String),
        (status = 503, description = "This replica is draining (shutting down): connect again, the load balancer picks another", body = crate::error::ErrorBody),
    ),
)]
pub async fn connect(
    State(state): State<AppState>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> ApiResult<Response> {
    let secret = bearer_token(&headers).ok_or_else(|| {
        ApiError::Unauthorized(
            "agents authenticate with Authorization: Bearer <agent secret>".into(),
        )
    })?;
    if state.draining.is_cancelled() {
        return Err(ApiError::Unavailable(
            "this control-plane replica is shutting down: connect again, the load balancer \
             picks another"
                .into(),
        ));
    }
    let secret_hash = secrets::hash(&secret);
    let agent = state
        .store
        .agent_by_secret_hash(&secret_hash)
        .await?
        .ok_or_else(|| {
            ApiError::Unauthorized(
                "unknown agent secret: this agent was removed or enrolled with another control \
                 plane; enroll it again with a new enrollment token"
                    .into(),
            )
        })?;
    let span = tracing::info_span!("agent", agent_id = %agent.id, name = %agent.name);
    Ok(upgrade
        .max_message_size(MAX_MESSAGE)
        // Control messages are small; thousands of agents each holding the
        // default 128 KiB read buffer would cost gigabytes.
        .read_buffer_size(CONTROL_BUFFER)
        .write_buffer_size(0)
        .on_upgrade(move |socket| {
            let tracker = state.tasks.clone();
            tracker.track_future(serve(state, agent, secret_hash, socket).instrument(span))
        }))
}

async fn serve(state: AppState, agent: AgentRecord, secret_hash: String, mut ws: WebSocket) {
    let hello = match read_hello(&mut ws).await {
        Ok(hello) => hello,
        Err(reason) => {
            tracing::warn!(%reason, "refusing agent connection");
            let _ = send(&mut ws, &ServerMessage::Goodbye { reason }).await;
            return;
        }
    };
    if hello.platform != agent.platform {
        let reason = format!(
            "this agent enrolled for platform {:?} but now runs {:?}: enroll it again",
            agent.platform, hello.platform
        );
        let _ = send(&mut ws, &ServerMessage::Goodbye { reason }).await;
        return;
    }
    if let Err(err) = state
        .store
        .mark_agent_connected(
            &agent.id,
            state.replica.id.as_str(),
            (&hello.agent_version, &hello.capacity, &hello.capabilities),
        )
        .await
    {
        tracing::error!(error = %err, "cannot record agent connection");
        return;
    }
    let welcome = ServerMessage::Welcome(Welcome {
        protocol_version: PROTOCOL_VERSION,
        agent_id: agent.id.clone(),
        heartbeat_interval_ms: state.config.heartbeat_interval.as_millis() as u64,
    });
    if send(&mut ws, &welcome).await.is_err() {
        return;
    }
    let (conn_id, outbox) = state.hub.attach(&agent.id, &secret_hash);
    tracing::info!(version = %hello.agent_version, "agent connected");
    state.changes.agent_changed(&agent.id);
    replay_open_commands(&state, &agent.id).await;

    let actor = format!("agent:{}", agent.name);
    let from = reports::From {
        id: &agent.id,
        actor: &actor,
    };
    let ended = relay(&state, &from, &mut ws, outbox).await;

    if state.hub.detach(&agent.id, conn_id) {
        if let Err(err) = state
            .store
            .mark_agent_disconnected(&agent.id, state.replica.id.as_str())
            .await
        {
            tracing::error!(error = %err, "cannot record agent disconnection");
        }
        state.changes.agent_changed(&agent.id);
        tracing::info!("agent disconnected");
    }
    // Only now, with its disconnection recorded: the agent reconnects at
    // once to another replica, whose "connected" must not be overwritten
    // by this one's "disconnected".
    if ended == Ended::Draining {
        let reason = "this control-plane replica is shutting down".to_owned();
        let _ = send(&mut ws, &ServerMessage::Reconnect { reason }).await;
        let _ = ws.send(Message::Close(None)).await;
    }
}

/// Why a relay ended.
#[derive(Debug, PartialEq, Eq)]
enum Ended {
    /// The agent, the network or a limit ended it.
    Closed,
    /// This replica drains: the agent is to reconnect elsewhere.
    Draining,
}

async fn read_hello(ws: &mut WebSocket) -> Result<Hello, String> {
    let first = timeout(HELLO_TIMEOUT, ws.recv())
        .await
        .map_err(|_| "no hello within 10 s".to_owned())?;
    let text = match first {
        Some(Ok(Message::Text(text))) => text,
        _ => return Err("the first message must be a hello".into()),
    };
    match serde_json::from_str::<AgentMessage>(text.as_str()) {
        Ok(AgentMessage::Hello(hello)) if hello.protocol_version == PROTOCOL_VERSION => Ok(hello),
        Ok(AgentMessage::Hello(hello)) => Err(format!(
            "protocol version {} is not supported: this control plane speaks version \
             {PROTOCOL_VERSION}; run an agent of the same release",
            hello.protocol_version
        )),
        Ok(_) => Err("the first message must be a hello".into()),
        Err(err) => Err(format!("invalid hello: {err}")),
    }
}

/// Re-sends, in issue order, every command the agent has not finished. The
/// agent deduplicates by command id, so re-sending is always safe.
async fn replay_open_commands(state: &AppState, agent_id: &AgentId) {
    match state.store.open_commands(agent_id).await {
        Ok(commands) => {
            for record in commands {
                let id = record.command.id.clone();
                if !state
                    .hub
                    .send(agent_id, ServerMessage::Command(record.command))
                {
                    break;
                }
                if let Err(err) = state.store.mark_command_sent(&id).await {
                    tracing::error!(error = %err, "cannot mark command sent");
                }
            }
        }
        Err(err) => tracing::error!(error = %err, "cannot load undelivered commands"),
    }
}

async fn relay(
    state: &AppState,
    from: &reports::From<'_>,
    ws: &mut WebSocket,
    mut outbox: mpsc::Receiver<ServerMessage>,
) -> Ended {
    let silence = state.config.agent_silence_limit();
    let mut deadline = Instant::now() + silence;
    let mut rate = MessageRate::new(Instant::now());
    loop {
        tokio::select! {
            // Draining, or shutting down (which drains too): the agent
            // reconnects at once, through its URL, to another replica.
            _ = state.draining.cancelled() => return Ended::Draining,
            _ = sleep_until(deadline) => {
                tracing::warn!(?silence, "agent went silent; closing its connection");
                return Ended::Closed;
            }
            outgoing = outbox.recv() => {
                let Some(message) = outgoing else {
                    let reason = "replaced by a newer connection of this agent".to_owned();
                    let _ = send(ws, &ServerMessage::Goodbye { reason }).await;
                    return Ended::Closed;
                };
                if send(ws, &message).await.is_err() {
                    return Ended::Closed;
                }
            }
            incoming = ws.recv() => {
                deadline = Instant::now() + silence;
                let message = match incoming {
                    Some(Ok(Message::Text(text))) => {
                        serde_json::from_str::<AgentMessage>(text.as_str())
                    }
                    Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Binary(_))) => {
                        continue;
                    }
                    Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return Ended::Closed,
                };
                // Charged by the work it makes (a malformed one costs one).
                let cost = message.as_ref().map_or(1.0, reports::cost);
                if !rate.allow(Instant::now(), cost) {
                    tracing::warn!("agent sends too much; closing its connection");
                    let reason = format!(
                        "more than {} messages a second (an inventory counts one per {} \
                         sessions): the connection is closed; reconnect and send less",
                        super::rate::PER_SECOND,
                        reports::SESSIONS_PER_MESSAGE,
                    );
                    let _ = send(ws, &ServerMessage::Goodbye { reason }).await;
                    return Ended::Closed;
                }
                match message {
                    Ok(message) => reports::handle(state, from, message).await,
                    Err(err) => tracing::warn!(error = %err, "ignoring malformed agent message"),
                }
            }
        }
    }
}

async fn send(ws: &mut WebSocket, message: &ServerMessage) -> Result<(), axum::Error> {
    // Serializing our own message types cannot fail.
    let text = serde_json::to_string(message).unwrap_or_default();
    ws.send(Message::Text(text.into())).await
}
