//! A protocol-level agent: speaks the real control protocol through the real
//! endpoints, with no platform behind it.

use anyhow::{Context, bail};
use futures::stream::{SplitSink, SplitStream};
use futures::{SinkExt, StreamExt};
use reqwest::{Method, StatusCode};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use streamspace_protocol::{
    AgentMessage, Capabilities, Capacity, Command, Hello, NodeMetrics, PROTOCOL_VERSION,
    PlatformHealth, ServerMessage, SessionReport,
};
use streamspace_testkit::Api;
use tokio::net::TcpStream;
use tokio::sync::Mutex;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use url::Url;

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Heartbeats go out in the background, as a real agent's do, so a test that
/// is slow between messages (a loaded machine) is not cut off as silent.
const HEARTBEAT_EVERY: Duration = Duration::from_millis(200);

pub struct FakeAgent {
    pub secret: String,
    sink: Arc<Mutex<SplitSink<Socket, Message>>>,
    stream: SplitStream<Socket>,
    heartbeats: Option<JoinHandle<()>>,
}

impl Drop for FakeAgent {
    fn drop(&mut self) {
        if let Some(heartbeats) = self.heartbeats.take() {
            heartbeats.abort();
        }
    }
}

/// Enrolls an agent named `name` with a fresh token; returns (id, secret).
pub async fn enroll(admin: &Api, name: &str) -> anyhow::Result<(String, String)> {
    enroll_on(admin, name, "docker").await
}

/// Enrolls an agent of `platform`; returns (id, secret).
pub async fn enroll_on(
    admin: &Api,
    name: &str,
    platform: &str,
) -> anyhow::Result<(String, String)> {
    let token = admin.enrollment_token().await?;
    let body = json!({"enrollment_token": token, "name": name, "platform": platform,
                      "capacity": {"max_sessions": 2}});
    let answer = Api::new(&admin.base)
        .expect(
            Method::POST,
            "/api/v1/agents/register",
            Some(body),
            StatusCode::CREATED,
        )
        .await?;
    Ok((
        answer["agent_id"].as_str().context("agent_id")?.to_owned(),
        answer["secret"].as_str().context("secret")?.to_owned(),
    ))
}

/// Room for `max_sessions` sessions and nothing else said.
fn sessions(max_sessions: u32) -> Capacity {
    Capacity {
        max_sessions,
        ..Capacity::default()
    }
}

impl FakeAgent {
    /// Connects, says hello, waits for welcome, sends an empty inventory.
    pub async fn connect(base: &Url, id: &str, secret: &str) -> anyhow::Result<Self> {
        Self::connect_with(base, id, secret, Vec::new()).await
    }

    pub async fn connect_with(
        base: &Url,
        id: &str,
        secret: &str,
        inventory: Vec<SessionReport>,
    ) -> anyhow::Result<Self> {
        Self::connect_as(base, id, secret, inventory, sessions(2)).await
    }

    /// Connects offering room for `max_sessions` sessions.
    pub async fn connect_with_capacity(
        base: &Url,
        id: &str,
        secret: &str,
        max_sessions: u32,
    ) -> anyhow::Result<Self> {
        Self::connect_as(base, id, secret, Vec::new(), sessions(max_sessions)).await
    }

    /// Connects offering `capacity` (GPUs, say).
    pub async fn connect_offering(
        base: &Url,
        id: &str,
        secret: &str,
        capacity: Capacity,
    ) -> anyhow::Result<Self> {
        Self::connect_as(base, id, secret, Vec::new(), capacity).await
    }

    /// Connects as an agent of `platform` (enrolled with [`enroll_on`])
    /// saying `capabilities`, with room for 10 sessions.
    pub async fn connect_on(
        base: &Url,
        (id, secret): (&str, &str),
        platform: &str,
        capabilities: Capabilities,
    ) -> anyhow::Result<Self> {
        let hello = Hello {
            protocol_version: PROTOCOL_VERSION,
            agent_version: "test".into(),
            platform: platform.into(),
            capacity: sessions(10),
            capabilities,
        };
        Self::connect_saying(base, id, secret, Vec::new(), hello).await
    }

    async fn connect_as(
        base: &Url,
        id: &str,
        secret: &str,
        inventory: Vec<SessionReport>,
        capacity: Capacity,
    ) -> anyhow::Result<Self> {
        let hello = Hello {
            protocol_version: PROTOCOL_VERSION,
            agent_version: "test".into(),
            platform: "docker".into(),
            capacity,
            capabilities: Capabilities {
                hibernation: true,
                ..Default::default()
            },
        };
        Self::connect_saying(base, id, secret, inventory, hello).await
    }

    async fn connect_saying(
        base: &Url,
        id: &str,
        secret: &str,
        inventory: Vec<SessionReport>,
        hello: Hello,
    ) -> anyhow::Result<Self> {
        let mut url = base.join("/api/v1/agents/connect")?;
        let _ = url.set_scheme("ws");
        let mut request = url.as_str().into_client_request()?;
        request
            .headers_mut()
            .insert("authorization", format!("Bearer {secret}").parse()?);
        let (ws, _) = tokio_tungstenite::connect_async(request).await?;
        let (sink, stream) = ws.split();
        let mut agent = FakeAgent {
            secret: secret.to_owned(),
            sink: Arc::new(Mutex::new(sink)),
            stream,
            heartbeats: None,
        };
        agent.send(AgentMessage::Hello(hello)).await?;
        match agent.recv().await? {
            ServerMessage::Welcome(w) if w.agent_id == id => {}
            other => bail!("expected welcome, got {other:?}"),
        }
        agent
            .send(AgentMessage::Inventory {
                sessions: inventory,
            })
            .await?;
        agent.heartbeats = Some(tokio::spawn(heartbeat(agent.sink.clone())));
        Ok(agent)
    }

    /// Stops the background heartbeats, for a test that sends its own (it
    /// must keep sending something to stay online).
    pub fn stop_heartbeats(&mut self) {
        if let Some(heartbeats) = self.heartbeats.take() {
            heartbeats.abort();
        }
    }

    /// From now on every heartbeat (the first at once) says `health`.
    pub async fn set_health(&mut self, health: Option<PlatformHealth>) -> anyhow::Result<()> {
        self.stop_heartbeats();
        let beat = AgentMessage::Heartbeat {
            metrics: NodeMetrics::default(),
            sessions: Vec::new(),
            health: health.clone(),
        };
        self.send(beat).await?;
        self.heartbeats = Some(tokio::spawn(beat_with(self.sink.clone(), health)));
        Ok(())
    }

    pub async fn send(&mut self, message: AgentMessage) -> anyhow::Result<()> {
        send_on(&self.sink, &message).await
    }

    pub async fn recv(&mut self) -> anyhow::Result<ServerMessage> {
        loop {
            let frame = tokio::time::timeout(Duration::from_secs(10), self.stream.next())
                .await
                .context("no message from the control plane within 10 s")?
                .context("connection closed")??;
            if let Message::Text(text) = frame {
                return Ok(serde_json::from_str(text.as_str())?);
            }
        }
    }

    pub async fn expect_command(&mut self) -> anyhow::Result<Command> {
        match self.recv().await? {
            ServerMessage::Command(command) => Ok(command),
            other => bail!("expected a command, got {other:?}"),
        }
    }

    /// Reports a phase, as the platform would after doing the work.
    pub async fn report(&mut self, report: SessionReport) -> anyhow::Result<()> {
        self.send(AgentMessage::SessionStatus(report)).await
    }

    /// Creates a session with `body` as `api`'s user, completes its start
    /// and reports it Running, as a real agent would; returns its id.
    pub async fn run_session(
        &mut self,
        api: &Api,
        body: serde_json::Value,
    ) -> anyhow::Result<String> {
        let session = api.create_session(body).await?;
        let id = session["id"].as_str().context("session id")?.to_owned();
        let start = self.expect_command().await?;
        self.complete(&start).await?;
        self.report(SessionReport::new(
            &id,
            streamspace_protocol::Phase::Running,
        ))
        .await?;
        api.wait_for_phase(&id, "Running", Duration::from_secs(5))
            .await?;
        Ok(id)
    }

    /// Acknowledges and completes a command.
    pub async fn complete(&mut self, command: &Command) -> anyhow::Result<()> {
        let command_id = command.id.clone();
        self.send(AgentMessage::Ack {
            command_id: command_id.clone(),
        })
        .await?;
        self.send(AgentMessage::Result {
            command_id,
            error: None,
        })
        .await
    }

    pub async fn close(mut self) {
        if let Some(heartbeats) = self.heartbeats.take() {
            heartbeats.abort();
        }
        let _ = self.sink.lock().await.close().await;
    }
}

async fn send_on(
    sink: &Mutex<SplitSink<Socket, Message>>,
    message: &AgentMessage,
) -> anyhow::Result<()> {
    let text = serde_json::to_string(message)?;
    sink.lock().await.send(Message::Text(text.into())).await?;
    Ok(())
}

async fn heartbeat(sink: Arc<Mutex<SplitSink<Socket, Message>>>) {
    beat_with(sink, None).await
}

/// Heartbeats saying `health` (none: an agent older than health checks).
async fn beat_with(sink: Arc<Mutex<SplitSink<Socket, Message>>>, health: Option<PlatformHealth>) {
    let beat = AgentMessage::Heartbeat {
        metrics: NodeMetrics::default(),
        sessions: Vec::new(),
        health,
    };
    loop {
        tokio::time::sleep(HEARTBEAT_EVERY).await;
        if send_on(&sink, &beat).await.is_err() {
            return;
        }
    }
}
