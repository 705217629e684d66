//! Simulated agents for the hub benchmark: thousands per process, each
//! speaking the real protocol through the real endpoints — enrolment
//! (`enrollment-tokens` + `register`), the control WebSocket (hello →
//! welcome → inventory), heartbeats and pings at the welcome's interval,
//! and ack + result + session_status for every command — with no platform
//! behind them.

use anyhow::{Context, bail};
use futures::{SinkExt, StreamExt};
use reqwest::{Method, StatusCode};
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;
use streamspace_protocol::{
    Action, AgentId, AgentMessage, Capabilities, Capacity, Command, Hello, PROTOCOL_VERSION, Phase,
    ServerMessage, SessionId, SessionReport,
};
use streamspace_testkit::Api;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::{Instant, MissedTickBehavior, interval_at, timeout};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use url::Url;

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// An enrolled agent's identity.
#[derive(Debug, Clone)]
pub struct Identity {
    pub id: AgentId,
    pub secret: String,
}

/// Counters shared by all simulated agents of a fleet.
#[derive(Debug, Default)]
pub struct Counters {
    pub connected: AtomicUsize,
    pub heartbeats: AtomicU64,
    pub commands: AtomicU64,
    pub disconnects: AtomicUsize,
}

/// A start command arrived: for which session, and when.
pub type Delivery = (SessionId, Instant);

/// Mints a token as admin and registers `name` with it.
pub async fn enroll(admin: &Api, public: &Api, name: &str) -> anyhow::Result<Identity> {
    let token = admin.enrollment_token().await?;
    let body = json!({"enrollment_token": token, "name": name, "platform": "docker",
                      "capacity": {"max_sessions": 100}});
    let answer = public
        .expect(
            Method::POST,
            "/api/v1/agents/register",
            Some(body),
            StatusCode::CREATED,
        )
        .await?;
    Ok(Identity {
        id: answer["agent_id"].as_str().context("agent_id")?.into(),
        secret: answer["secret"].as_str().context("secret")?.to_owned(),
    })
}

/// Connects and completes the handshake; returns the socket and the
/// heartbeat interval the control plane asked for.
pub async fn connect(base: &Url, identity: &Identity) -> anyhow::Result<(Socket, Duration)> {
    let mut url = base.join(streamspace_protocol::tunnel::CONNECT_PATH)?;
    let _ = url.set_scheme("ws");
    let mut request = url.as_str().into_client_request()?;
    request.headers_mut().insert(
        "authorization",
        format!("Bearer {}", identity.secret).parse()?,
    );
    // Thousands of sockets per process: small buffers, eager writes.
    let config = WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0);
    let (mut ws, _) = tokio_tungstenite::connect_async_with_config(request, Some(config), true)
        .await
        .context("control channel refused")?;
    send(
        &mut ws,
        &AgentMessage::Hello(Hello {
            protocol_version: PROTOCOL_VERSION,
            agent_version: "bench-sim".into(),
            platform: "docker".into(),
            capacity: Capacity {
                max_sessions: 100,
                ..Default::default()
            },
            capabilities: Capabilities {
                hibernation: true,
                ..Default::default()
            },
        }),
    )
    .await?;
    let welcome = loop {
        let frame = timeout(Duration::from_secs(60), ws.next())
            .await
            .context("no welcome within 60 s")?
            .context("closed before welcome")??;
        if let Message::Text(text) = frame {
            match serde_json::from_str::<ServerMessage>(text.as_str())? {
                ServerMessage::Welcome(w) if w.agent_id == identity.id => break w,
                other => bail!("expected welcome, got {other:?}"),
            }
        }
    };
    send(&mut ws, &AgentMessage::Inventory { sessions: vec![] }).await?;
    Ok((ws, Duration::from_millis(welcome.heartbeat_interval_ms)))
}

async fn send(ws: &mut Socket, message: &AgentMessage) -> anyhow::Result<()> {
    let text = serde_json::to_string(message)?;
    ws.send(Message::Text(text.into())).await?;
    Ok(())
}

/// Runs one connected agent until its connection ends: heartbeats (first
/// one after `phase`, so a fleet spreads them over the interval), and the
/// answers a real agent gives to commands.
pub async fn run(
    mut ws: Socket,
    heartbeat: Duration,
    phase: Duration,
    counters: Arc<Counters>,
    deliveries: mpsc::UnboundedSender<Delivery>,
) {
    counters.connected.fetch_add(1, Ordering::Relaxed);
    let mut tick = interval_at(Instant::now() + phase, heartbeat);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut running = 0u32;
    loop {
        tokio::select! {
            _ = tick.tick() => {
                // Written as JSON rather than through the wire type, so the
                // simulation keeps compiling while optional fields are added.
                let beat = serde_json::json!({
                    "type": "heartbeat",
                    "metrics": {"sessions_running": running, "cpu_percent": 1.0,
                                "memory_used_bytes": 1u64 << 30, "memory_total_bytes": 8u64 << 30},
                });
                if ws.send(Message::Text(beat.to_string().into())).await.is_err()
                    || ws.send(Message::Ping(Default::default())).await.is_err()
                {
                    break;
                }
                counters.heartbeats.fetch_add(1, Ordering::Relaxed);
            }
            frame = ws.next() => {
                let at = Instant::now();
                let text = match frame {
                    Some(Ok(Message::Text(text))) => text,
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                    Some(Ok(_)) => continue,
                };
                let Ok(message) = serde_json::from_str::<ServerMessage>(text.as_str()) else {
                    continue;
                };
                let replies = answer(message, at, &deliveries, &mut running, &counters);
                let mut failed = false;
                for reply in &replies {
                    failed = failed || send(&mut ws, reply).await.is_err();
                }
                if failed {
                    break;
                }
            }
        }
    }
    counters.connected.fetch_sub(1, Ordering::Relaxed);
    counters.disconnects.fetch_add(1, Ordering::Relaxed);
}

/// What a real agent would send back, once the platform work is "done".
fn answer(
    message: ServerMessage,
    at: Instant,
    deliveries: &mpsc::UnboundedSender<Delivery>,
    running: &mut u32,
    counters: &Counters,
) -> Vec<AgentMessage> {
    match message {
        ServerMessage::Command(Command {
            id,
            session_id,
            action,
            ..
        }) => {
            counters.commands.fetch_add(1, Ordering::Relaxed);
            let phase = match action {
                Action::Start { .. } => {
                    let _ = deliveries.send((session_id.clone(), at));
                    *running += 1;
                    Phase::Running
                }
                Action::Wake { .. } => Phase::Running,
                Action::Hibernate => Phase::Hibernated,
                Action::Terminate => Phase::Terminated,
            };
            vec![
                AgentMessage::Ack {
                    command_id: id.clone(),
                },
                AgentMessage::Result {
                    command_id: id,
                    error: None,
                },
                AgentMessage::SessionStatus(SessionReport::new(session_id, phase)),
            ]
        }
        ServerMessage::OpenTunnel { tunnel_id, .. }
        | ServerMessage::OpenLogs { tunnel_id, .. }
        | ServerMessage::OpenFiles { tunnel_id, .. } => {
            vec![AgentMessage::TunnelFailed {
                tunnel_id,
                error: "simulated agent: no platform".into(),
            }]
        }
        ServerMessage::Prepull {
            template_id, image, ..
        } => vec![AgentMessage::PullStatus(streamspace_protocol::PullStatus {
            template_id,
            image,
            state: streamspace_protocol::PullState::Done,
            message: Some("simulated agent: nothing to pull".into()),
        })],
        // The channel closes next; the simulated agent reconnects as after
        // any close.
        ServerMessage::Welcome(_)
        | ServerMessage::Goodbye { .. }
        | ServerMessage::Reconnect { .. } => Vec::new(),
    }
}
