//! The agent's main loop: keep one control channel open to the control plane
//! (reconnecting with backoff), say hello, send a full inventory on every
//! connect, heartbeat, and hand commands and tunnel requests to their
//! handlers.

use crate::backoff::Backoff;
use crate::executor::Executor;
use crate::identity::Identity;
use crate::platform::Platform;
use crate::prepull::{self, Prepulls};
use crate::tunnel::{self, Purpose};
use crate::{VERSION, endpoint, tls};
use anyhow::{Context, anyhow};
use futures::{SinkExt, StreamExt};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use streamspace_protocol::tunnel::CONNECT_PATH;
use streamspace_protocol::{
    AgentMessage, Hello, NodeMetrics, PROTOCOL_VERSION, Phase, PlatformHealth, ServerMessage,
    SessionReport, SessionUsage, TunnelId,
};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, interval_at, sleep, sleep_until, timeout};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// A connection that lasted this long counts as healthy: the next reconnect
/// starts again from the shortest delay.
const HEALTHY_AFTER: Duration = Duration::from_secs(10);
/// A `reconnect` this soon after the last one is not a replica draining
/// (a rolling upgrade moves an agent once per replica, seconds apart) but a
/// control plane asking again and again: that one waits out the backoff,
/// so no control plane can make its agents reconnect in a tight loop.
const MOVED_AGAIN: Duration = Duration::from_secs(1);
const OUTBOX: usize = 4096;
/// How often the platform is measured until the control plane says how
/// often it wants heartbeats.
const DEFAULT_SAMPLE_EVERY: Duration = Duration::from_secs(5);

/// Why a connection attempt ended.
enum Ended {
    /// Connected and later lost; retry.
    Lost {
        lasted: Duration,
    },
    /// Could not connect, or refused for a reason that may pass; retry.
    Failed(anyhow::Error),
    /// Refused for good (unknown secret, incompatible version); stop.
    Fatal(anyhow::Error),
    /// The replica is draining and asked us to connect again now: no
    /// backoff, so the agent is back (on another replica) within moments.
    Moved,
    Shutdown,
}

struct Agent {
    identity: Identity,
    platform: Arc<dyn Platform>,
    executor: Arc<Executor>,
    prepulls: Prepulls,
    outbox: mpsc::Sender<AgentMessage>,
    tasks: TaskTracker,
    shutdown: CancellationToken,
    /// The latest measurement of the platform, sent with each heartbeat.
    gauges: watch::Receiver<Gauges>,
    /// The platform's latest health check (`health.rs`), sent with each
    /// heartbeat, and at once when it changes.
    health: watch::Receiver<Option<PlatformHealth>>,
    /// The heartbeat interval in milliseconds, which paces the measuring.
    sample_every_ms: AtomicU64,
}

/// What a heartbeat reports: measured in the background, because a platform
/// can be slow to answer (Docker's stats take about a second per container
/// once dozens run) and the control channel must never wait for it.
#[derive(Clone, Default)]
struct Gauges {
    metrics: NodeMetrics,
    sessions: Vec<SessionUsage>,
}

/// Runs the agent until `shutdown` fires or the control plane refuses it for
/// good (the error says why and what to do).
pub async fn run(
    identity: Identity,
    platform: Arc<dyn Platform>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let (outbox, mut inbox) = mpsc::channel(OUTBOX);
    let tasks = TaskTracker::new();
    let executor = Arc::new(Executor::new(
        platform.clone(),
        outbox.clone(),
        tasks.clone(),
    ));
    let (gauges_tx, gauges) = watch::channel(Gauges::default());
    let (health_tx, health) = watch::channel(None);
    let prepulls = Prepulls::new(
        platform.clone(),
        outbox.clone(),
        tasks.clone(),
        shutdown.clone(),
    );
    let agent = Arc::new(Agent {
        identity,
        platform,
        executor,
        prepulls,
        outbox,
        tasks: tasks.clone(),
        shutdown: shutdown.clone(),
        gauges,
        health,
        sample_every_ms: AtomicU64::new(DEFAULT_SAMPLE_EVERY.as_millis() as u64),
    });
    tasks.spawn(forward_platform_events(agent.clone()));
    tasks.spawn(measure_platform(agent.clone(), gauges_tx));
    let every = {
        let agent = agent.clone();
        move || Duration::from_millis(agent.sample_every_ms.load(Ordering::Relaxed))
    };
    tasks.spawn(crate::health::watch_platform(
        agent.platform.clone(),
        every,
        health_tx,
        shutdown.clone(),
    ));

    let mut backoff = Backoff::default();
    let mut last_moved: Option<Instant> = None;
    let result = loop {
        match connect_once(&agent, &mut inbox).await {
            Ended::Shutdown => break Ok(()),
            Ended::Fatal(err) => break Err(err),
            Ended::Lost { lasted } => {
                tracing::warn!(?lasted, "lost the control plane; reconnecting");
                if lasted >= HEALTHY_AFTER {
                    backoff.reset();
                }
            }
            Ended::Failed(err) => tracing::warn!(error = %format!("{err:#}"), "cannot connect"),
            Ended::Moved => {
                let again = last_moved.is_some_and(|at| at.elapsed() < MOVED_AGAIN);
                last_moved = Some(Instant::now());
                if again {
                    tracing::warn!("asked to reconnect again within {MOVED_AGAIN:?}; backing off");
                } else {
                    // The next attempt goes at once; should it fail (the
                    // load balancer still picked the draining replica), the
                    // retries start again from the shortest delay.
                    backoff.reset();
                    continue;
                }
            }
        }
        tokio::select! {
            _ = sleep(backoff.next_delay()) => {}
            _ = shutdown.cancelled() => break Ok(()),
        }
    };
    shutdown.cancel();
    tasks.close();
    tasks.wait().await;
    result
}

/// One connection: handshake, inventory, then relay until it ends.
async fn connect_once(agent: &Agent, inbox: &mut mpsc::Receiver<AgentMessage>) -> Ended {
    let connecting = tokio::select! {
        result = timeout(HANDSHAKE_TIMEOUT, open_socket(&agent.identity)) => result,
        _ = agent.shutdown.cancelled() => return Ended::Shutdown,
    };
    let mut ws = match connecting {
        Err(_) => return Ended::Failed(anyhow!("no answer within {HANDSHAKE_TIMEOUT:?}")),
        Ok(Err(ended)) => return ended,
        Ok(Ok(ws)) => ws,
    };
    let heartbeat = match handshake(agent, &mut ws).await {
        Ok(interval) => interval,
        Err(ended) => return ended,
    };
    let every_ms = heartbeat.as_millis() as u64;
    agent.sample_every_ms.store(every_ms, Ordering::Relaxed);
    let since = Instant::now();
    tracing::info!(control_plane = %agent.identity.control_plane, "connected");
    // Queued reports predate the inventory that is about to replace them.
    while inbox.try_recv().is_ok() {}
    if let Err(err) = send_inventory(agent, &mut ws).await {
        return Ended::Failed(err);
    }
    match relay(agent, &mut ws, inbox, heartbeat).await {
        Ended::Lost { .. } => Ended::Lost {
            lasted: since.elapsed(),
        },
        other => other,
    }
}

async fn open_socket(identity: &Identity) -> Result<Socket, Ended> {
    let url = endpoint(&identity.control_plane, CONNECT_PATH, true);
    let mut request = url
        .as_str()
        .into_client_request()
        .map_err(|e| Ended::Fatal(anyhow!("invalid control plane URL {url}: {e}")))?;
    let bearer = format!("Bearer {}", identity.secret)
        .parse()
        .map_err(|_| Ended::Fatal(anyhow!("the saved agent secret is not a valid header")))?;
    request
        .headers_mut()
        .insert(http::header::AUTHORIZATION, bearer);
    let config = WebSocketConfig::default().max_message_size(Some(1 << 20));
    let connector = Connector::Rustls(identity.tls.config());
    match tokio_tungstenite::connect_async_tls_with_config(
        request,
        Some(config),
        true,
        Some(connector),
    )
    .await
    {
        Ok((ws, _)) => Ok(ws),
        Err(tungstenite::Error::Http(response)) if response.status() == 401 => {
            let body = response.body().as_deref().unwrap_or_default();
            Err(Ended::Fatal(anyhow!(
                "the control plane refused this agent: {}",
                crate::error_message(&String::from_utf8_lossy(body))
            )))
        }
        // The error itself, not its text: `explain` looks inside it.
        Err(err) => Err(Ended::Failed(tls::explain(
            anyhow::Error::new(err).context(url.to_string()),
        ))),
    }
}

/// Sends `hello`, waits for `welcome`; returns the heartbeat interval.
async fn handshake(agent: &Agent, ws: &mut Socket) -> Result<Duration, Ended> {
    let hello = hello(agent).await;
    send(ws, &AgentMessage::Hello(hello))
        .await
        .map_err(Ended::Failed)?;
    let answer = timeout(HANDSHAKE_TIMEOUT, next_message(ws))
        .await
        .map_err(|_| Ended::Failed(anyhow!("no welcome within {HANDSHAKE_TIMEOUT:?}")))?;
    match answer {
        Some(ServerMessage::Welcome(welcome)) => Ok(Duration::from_millis(
            welcome.heartbeat_interval_ms.max(100),
        )),
        Some(ServerMessage::Goodbye { reason }) => Err(Ended::Fatal(anyhow!(
            "the control plane refused this agent: {reason}"
        ))),
        // A replica that began draining while we said hello.
        Some(ServerMessage::Reconnect { .. }) => Err(Ended::Moved),
        _ => Err(Ended::Failed(anyhow!(
            "the control plane did not welcome this agent"
        ))),
    }
}

async fn hello(agent: &Agent) -> Hello {
    let capacity = agent.platform.capacity().await.unwrap_or_else(|err| {
        tracing::warn!(error = %err, "cannot read platform capacity");
        Default::default()
    });
    Hello {
        protocol_version: PROTOCOL_VERSION,
        agent_version: VERSION.to_owned(),
        platform: agent.platform.name().to_owned(),
        capacity,
        capabilities: agent.platform.capabilities(),
    }
}

async fn send_inventory(agent: &Agent, ws: &mut Socket) -> anyhow::Result<()> {
    match agent.platform.inventory().await {
        Ok(mut sessions) => {
            // A session still starting is reported by its command instead.
            sessions.retain(|s| !premature(agent, s));
            send(ws, &AgentMessage::Inventory { sessions }).await
        }
        // Without an inventory the control plane keeps what it knew; the
        // next connect or platform event brings it up to date.
        Err(err) => {
            tracing::warn!(error = %err, "cannot list sessions for the inventory");
            Ok(())
        }
    }
}

async fn relay(
    agent: &Agent,
    ws: &mut Socket,
    inbox: &mut mpsc::Receiver<AgentMessage>,
    every: Duration,
) -> Ended {
    let silence = every * 3;
    let mut deadline = Instant::now() + silence;
    let mut heartbeat = interval_at(Instant::now() + every, every);
    // `agent.health` never marks a value seen, so its clone has seen none:
    // once a check has ended, the first heartbeat of every connection goes
    // out at once with it (the control plane may hold a stale one).
    let mut health = agent.health.clone();
    loop {
        tokio::select! {
            _ = agent.shutdown.cancelled() => {
                let _ = ws.close(None).await;
                return Ended::Shutdown;
            }
            _ = sleep_until(deadline) => {
                return Ended::Lost { lasted: Duration::ZERO };
            }
            // A change of health goes out at once, not a heartbeat later.
            _ = heartbeat.tick() => {
                if let Err(err) = send_heartbeat(agent, ws).await {
                    tracing::warn!(error = %err, "heartbeat failed");
                    return Ended::Lost { lasted: Duration::ZERO };
                }
            }
            Ok(()) = health.changed() => {
                if let Err(err) = send_heartbeat(agent, ws).await {
                    tracing::warn!(error = %err, "heartbeat failed");
                    return Ended::Lost { lasted: Duration::ZERO };
                }
            }
            Some(message) = inbox.recv() => {
                if send(ws, &message).await.is_err() {
                    return Ended::Lost { lasted: Duration::ZERO };
                }
            }
            frame = ws.next() => {
                deadline = Instant::now() + silence;
                match frame {
                    Some(Ok(Message::Text(text))) => match handle(agent, text.as_str()) {
                        Some(Farewell::Goodbye(reason)) => {
                            tracing::warn!(%reason, "the control plane said goodbye");
                            return Ended::Lost { lasted: Duration::ZERO };
                        }
                        Some(Farewell::Reconnect(reason)) => {
                            tracing::info!(%reason, "the control plane asked us to reconnect; reconnecting now");
                            let _ = ws.close(None).await;
                            return Ended::Moved;
                        }
                        None => {}
                    },
                    Some(Ok(_)) => {}
                    Some(Err(_)) | None => return Ended::Lost { lasted: Duration::ZERO },
                }
            }
        }
    }
}

async fn send_heartbeat(agent: &Agent, ws: &mut Socket) -> anyhow::Result<()> {
    let Gauges { metrics, sessions } = agent.gauges.borrow().clone();
    let health = agent.health.borrow().clone();
    let beat = AgentMessage::Heartbeat {
        metrics,
        sessions,
        health,
    };
    send(ws, &beat).await?;
    // The control plane answers pings, which keeps our silence timer honest
    // even when it has nothing to say.
    ws.send(Message::Ping(Default::default())).await?;
    Ok(())
}

/// Measures the platform once per heartbeat interval, one measurement at a
/// time, and keeps the latest for the next heartbeat.
async fn measure_platform(agent: Arc<Agent>, gauges: watch::Sender<Gauges>) {
    loop {
        let measured = tokio::select! {
            measured = measure(agent.platform.as_ref()) => measured,
            _ = agent.shutdown.cancelled() => return,
        };
        gauges.send_replace(measured);
        let every = Duration::from_millis(agent.sample_every_ms.load(Ordering::Relaxed));
        tokio::select! {
            _ = sleep(every) => {}
            _ = agent.shutdown.cancelled() => return,
        }
    }
}

async fn measure(platform: &dyn Platform) -> Gauges {
    let (metrics, sessions) = tokio::join!(platform.metrics(), platform.usage());
    Gauges {
        metrics: metrics.unwrap_or_else(|err| {
            tracing::warn!(error = %err, "cannot read platform metrics");
            Default::default()
        }),
        sessions: sessions.unwrap_or_else(|err| {
            tracing::debug!(error = %err, "cannot measure session usage");
            Vec::new()
        }),
    }
}

/// How the control plane ended a connection, and why.
enum Farewell {
    Goodbye(String),
    Reconnect(String),
}

/// Dispatches one control message; returns the farewell if it was one.
fn handle(agent: &Agent, text: &str) -> Option<Farewell> {
    match serde_json::from_str::<ServerMessage>(text) {
        Ok(ServerMessage::Command(command)) => agent.executor.submit(command),
        Ok(ServerMessage::OpenTunnel {
            tunnel_id,
            session_id,
            port,
            tls,
        }) => {
            let purpose = Purpose::Port {
                session_id,
                port,
                tls,
            };
            spawn_data_channel(agent, tunnel_id, purpose)
        }
        Ok(ServerMessage::OpenLogs {
            tunnel_id,
            session_id,
            tail,
            follow,
        }) => {
            let purpose = Purpose::Logs {
                session_id,
                tail,
                follow,
            };
            spawn_data_channel(agent, tunnel_id, purpose)
        }
        Ok(ServerMessage::OpenFiles {
            tunnel_id,
            session_id,
            folder,
            op,
        }) => {
            let purpose = Purpose::Files {
                session_id,
                folder,
                op,
            };
            spawn_data_channel(agent, tunnel_id, purpose)
        }
        Ok(ServerMessage::Prepull {
            template_id,
            image,
            registry_auth,
        }) => agent.prepulls.start(prepull::Request {
            template_id,
            image,
            auth: registry_auth,
        }),
        Ok(ServerMessage::Goodbye { reason }) => return Some(Farewell::Goodbye(reason)),
        Ok(ServerMessage::Reconnect { reason }) => return Some(Farewell::Reconnect(reason)),
        Ok(ServerMessage::Welcome(_)) => {}
        Err(err) => tracing::warn!(error = %err, "ignoring unknown control message"),
    }
    None
}

fn spawn_data_channel(agent: &Agent, tunnel_id: TunnelId, purpose: Purpose) {
    let identity = agent.identity.clone();
    let platform = agent.platform.clone();
    let outbox = agent.outbox.clone();
    let shutdown = agent.shutdown.clone();
    let span = tracing::debug_span!("tunnel", %tunnel_id, ?purpose);
    agent.tasks.spawn(
        async move {
            let opened = tokio::select! {
                result = tunnel::open(&identity, platform.as_ref(), &tunnel_id, purpose) => result,
                _ = shutdown.cancelled() => Ok(()),
            };
            if let Err(err) = opened {
                let error = format!("{err:#}");
                tracing::warn!(%error, "tunnel failed");
                let _ = outbox.try_send(AgentMessage::TunnelFailed { tunnel_id, error });
            }
        }
        .instrument(span),
    );
}

/// Platform events (a container that died) become status reports. When the
/// platform's stream ends it is re-subscribed, and a fresh inventory covers
/// anything that happened in between.
async fn forward_platform_events(agent: Arc<Agent>) {
    let mut backoff = Backoff::default();
    loop {
        let mut events = agent.platform.watch();
        if let Ok(mut sessions) = agent.platform.inventory().await {
            sessions.retain(|s| !premature(&agent, s));
            let _ = agent.outbox.try_send(AgentMessage::Inventory { sessions });
        }
        loop {
            tokio::select! {
                _ = agent.shutdown.cancelled() => return,
                event = events.next() => match event {
                    Some(report) => {
                        backoff.reset();
                        if premature(&agent, &report) {
                            continue;
                        }
                        let _ = agent.outbox.try_send(AgentMessage::SessionStatus(report));
                    }
                    None => break,
                },
            }
        }
        tracing::warn!("platform event stream ended; re-subscribing");
        tokio::select! {
            _ = sleep(backoff.next_delay()) => {}
            _ = agent.shutdown.cancelled() => return,
        }
    }
}

/// A platform's `Running` for a session whose start or wake is still under
/// way: its container runs, but its VNC server may not answer yet.
fn premature(agent: &Agent, report: &SessionReport) -> bool {
    report.phase == Phase::Running && agent.executor.is_busy(&report.session_id)
}

async fn next_message(ws: &mut Socket) -> Option<ServerMessage> {
    while let Some(frame) = ws.next().await {
        match frame.ok()? {
            Message::Text(text) => return serde_json::from_str(text.as_str()).ok(),
            Message::Close(_) => return None,
            _ => continue,
        }
    }
    None
}

async fn send(ws: &mut Socket, message: &AgentMessage) -> anyhow::Result<()> {
    let text = serde_json::to_string(message).context("cannot encode message")?;
    ws.send(Message::Text(text.into())).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::FakePlatform;
    use streamspace_protocol::{Command, Welcome};
    use tokio::net::TcpListener;

    type ControlPlane = WebSocketStream<TcpStream>;

    /// Plays the control plane's side of the handshake, with heartbeats
    /// every 100 ms.
    async fn welcome(listener: &TcpListener) -> ControlPlane {
        let (tcp, _) = listener.accept().await.expect("the agent connects");
        let mut ws = tokio_tungstenite::accept_async(tcp).await.expect("upgrade");
        assert!(matches!(receive(&mut ws).await, AgentMessage::Hello(_)));
        let welcome = ServerMessage::Welcome(Welcome {
            protocol_version: PROTOCOL_VERSION,
            agent_id: "a1".into(),
            heartbeat_interval_ms: 100,
        });
        let text = serde_json::to_string(&welcome).expect("json");
        ws.send(Message::text(text)).await.expect("welcome");
        ws
    }

    /// An enrolled agent whose control plane listens on `listener`.
    fn identity_for(listener: &TcpListener) -> Identity {
        Identity {
            agent_id: "a1".into(),
            name: "test".into(),
            secret: "secret".into(),
            control_plane: format!("http://{}", listener.local_addr().expect("addr"))
                .parse()
                .expect("url"),
            tls: Default::default(),
        }
    }

    async fn receive(ws: &mut ControlPlane) -> AgentMessage {
        loop {
            match ws.next().await.expect("open").expect("frame") {
                Message::Text(text) => return serde_json::from_str(text.as_str()).expect("json"),
                _ => continue,
            }
        }
    }

    #[tokio::test]
    async fn a_platform_slow_to_measure_holds_up_neither_heartbeats_nor_commands() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let identity = identity_for(&listener);
        let platform = Arc::new(FakePlatform::default());
        platform.usage_hangs.store(true, Ordering::SeqCst);
        let shutdown = CancellationToken::new();
        let agent = tokio::spawn(run(identity, platform, shutdown.clone()));
        let mut ws = welcome(&listener).await;

        let heartbeats = async {
            let mut seen = 0;
            while seen < 5 {
                if let AgentMessage::Heartbeat { .. } = receive(&mut ws).await {
                    seen += 1;
                }
            }
        };
        timeout(Duration::from_secs(5), heartbeats)
            .await
            .expect("heartbeats keep coming while usage hangs");

        let command = ServerMessage::Command(Command {
            id: "c1".into(),
            session_id: "s1".into(),
            action: streamspace_protocol::Action::Hibernate,
            trace_parent: None,
        });
        let text = serde_json::to_string(&command).expect("json");
        ws.send(Message::text(text)).await.expect("command");
        let acked = async {
            loop {
                if let AgentMessage::Ack { command_id } = receive(&mut ws).await {
                    return command_id;
                }
            }
        };
        let acked = timeout(Duration::from_secs(5), acked).await;
        assert_eq!(acked.expect("the command is acknowledged"), "c1");

        shutdown.cancel();
        let _ = ws.close(None).await;
        agent.await.expect("join").expect("a clean shutdown");
    }

    /// Asks the agent to reconnect `times` times, `apart` apart; returns
    /// how long the agent took to come back, in all.
    async fn reconnects(times: u32, apart: Duration) -> Duration {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let identity = identity_for(&listener);
        let shutdown = CancellationToken::new();
        let platform = Arc::new(FakePlatform::default());
        let agent = tokio::spawn(run(identity, platform, shutdown.clone()));
        let mut ws = welcome(&listener).await;
        let mut away = Duration::ZERO;
        for _ in 0..times {
            sleep(apart).await;
            let reconnect = ServerMessage::Reconnect {
                reason: "this replica is draining".into(),
            };
            let text = serde_json::to_string(&reconnect).expect("json");
            let asked = Instant::now();
            ws.send(Message::text(text)).await.expect("reconnect");
            ws = timeout(Duration::from_secs(10), welcome(&listener))
                .await
                .expect("the agent connects again");
            away += asked.elapsed();
        }
        shutdown.cancel();
        let _ = ws.close(None).await;
        agent.await.expect("join").expect("a clean shutdown");
        away
    }

    #[tokio::test]
    async fn asked_to_reconnect_the_agent_comes_back_at_once_every_time() {
        // Four drains, a rolling upgrade's pace apart: with the backoff of a
        // lost connection the agent would wait at least 50 + 100 + 200 + 400 ms.
        let away = reconnects(4, MOVED_AGAIN + Duration::from_millis(100)).await;
        assert!(
            away < Duration::from_millis(400),
            "four reconnects took {away:?}: the agent waited as if the connection were lost"
        );
    }

    #[tokio::test]
    async fn asked_to_reconnect_again_and_again_the_agent_backs_off() {
        // After the first, at once, five more within a second: the backoff's
        // shortest delays are at least 50 + 100 + 200 + 400 + 750 ms.
        let away = reconnects(6, Duration::ZERO).await;
        assert!(
            away >= Duration::from_millis(1500),
            "six reconnects in a row took only {away:?}: a control plane could make \
             its agents reconnect in a tight loop"
        );
    }
}
