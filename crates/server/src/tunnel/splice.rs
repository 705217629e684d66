//! Moves bytes between a viewer's WebSocket and an agent's raw data stream.

use super::activity::Activity;
use super::websocket::{Decoder, Incoming, write_frame};
use crate::metrics::Metrics;
use bytes::{Bytes, BytesMut};
use prometheus_client::metrics::counter::Counter;
use std::time::Duration;
use streamspace_protocol::tunnel::read_chunk;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tungstenite::protocol::frame::coding::{Control, Data, OpCode};

/// Bytes read from the agent per WebSocket frame at most: large enough that
/// a framebuffer update is a few frames, small enough to keep latency low.
const CHUNK: usize = 64 * 1024;

/// The viewer side's read buffer: viewers send small input events, and an
/// idle tunnel should cost little. Larger frames stream through it.
const READ_BUFFER: usize = 2 * 1024;

/// How long a closing viewer gets for our close frame to go out.
const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// Status codes of the close frames we send (RFC 6455 §7.4.1).
const NORMAL_CLOSURE: u16 = 1000;
const PROTOCOL_ERROR: u16 = 1002;

/// Control frames the viewer side asks the sending side to write.
enum Reply {
    Pong(Bytes),
    Close(u16),
}

/// Runs until either side closes or `shutdown` fires. Everything the viewer
/// sends (keyboard, mouse) is user activity.
pub async fn splice<V, A>(
    viewer: V,
    agent: A,
    activity: &Activity,
    shutdown: CancellationToken,
    metrics: &Metrics,
) where
    V: AsyncRead + AsyncWrite,
    A: AsyncRead + AsyncWrite,
{
    let (viewer_rx, viewer_tx) = tokio::io::split(viewer);
    let (agent_rx, agent_tx) = tokio::io::split(agent);
    // Replies are rare and tiny; a full queue means a viewer flooding pings.
    let (replies, queued) = mpsc::channel(8);
    let upstream = Upstream {
        activity,
        bytes: metrics.bytes("from_viewer"),
        replies,
    };
    tokio::select! {
        _ = upstream.run(viewer_rx, agent_tx) => {}
        _ = downstream(agent_rx, viewer_tx, queued, metrics.bytes("to_viewer")) => {}
        _ = shutdown.cancelled() => {}
    }
}

/// Viewer → agent.
struct Upstream<'a> {
    activity: &'a Activity,
    bytes: Counter,
    replies: mpsc::Sender<Reply>,
}

impl Upstream<'_> {
    async fn run(self, mut viewer: impl AsyncRead + Unpin, mut agent: impl AsyncWrite + Unpin) {
        let mut buf = BytesMut::with_capacity(READ_BUFFER);
        let mut decoder = Decoder::default();
        let close = loop {
            let event = match decoder.next(&mut buf) {
                Ok(Some(event)) => event,
                Ok(None) => {
                    buf.reserve(READ_BUFFER);
                    match viewer.read_buf(&mut buf).await {
                        Ok(0) | Err(_) => break None,
                        Ok(_) => continue,
                    }
                }
                Err(violation) => {
                    tracing::debug!(%violation, "closing the viewer's WebSocket");
                    break Some(PROTOCOL_ERROR);
                }
            };
            match event {
                Incoming::Data(data) => {
                    self.activity.mark();
                    self.bytes.inc_by(data.len() as u64);
                    if agent.write_all(&data).await.is_err() {
                        break None;
                    }
                }
                Incoming::Ping(payload) => {
                    if self.replies.send(Reply::Pong(payload)).await.is_err() {
                        break None;
                    }
                }
                Incoming::Pong => {}
                Incoming::Close(code) => break Some(code.unwrap_or(NORMAL_CLOSURE)),
            }
        };
        let _ = agent.shutdown().await;
        // Our close frame goes out from the sending side, which then ends
        // the tunnel; a viewer that stopped reading gets a bounded wait.
        if let Some(code) = close
            && self.replies.send(Reply::Close(code)).await.is_ok()
        {
            tokio::time::sleep(CLOSE_GRACE).await;
        }
    }
}

/// Agent → viewer, and the viewer side's replies.
async fn downstream(
    mut agent: impl AsyncRead + Unpin,
    mut viewer: impl AsyncWrite + Unpin,
    mut replies: mpsc::Receiver<Reply>,
    bytes: Counter,
) {
    let binary = OpCode::Data(Data::Binary);
    loop {
        // Both branches are cancel-safe: a reply never interrupts a frame
        // half-written, and a chunk is only read when it is taken.
        let written = tokio::select! {
            reply = replies.recv() => match reply {
                Some(Reply::Pong(payload)) => write_frame(&mut viewer, OpCode::Control(Control::Pong), &payload).await,
                Some(Reply::Close(code)) => {
                    let _ = close(&mut viewer, code).await;
                    return;
                }
                None => return,
            },
            chunk = read_chunk(&mut agent, CHUNK) => match chunk {
                Ok(Some(chunk)) => {
                    bytes.inc_by(chunk.len() as u64);
                    write_frame(&mut viewer, binary, &chunk).await
                }
                Ok(None) | Err(_) => {
                    let _ = close(&mut viewer, NORMAL_CLOSURE).await;
                    return;
                }
            },
        };
        if written.is_err() {
            return;
        }
    }
}

async fn close(viewer: &mut (impl AsyncWrite + Unpin), code: u16) -> std::io::Result<()> {
    write_frame(viewer, OpCode::Control(Control::Close), &code.to_be_bytes()).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::{SinkExt, StreamExt};
    use std::sync::Arc;
    use streamspace_testkit::tcp_pair as pair;
    use tokio::net::TcpStream;
    use tokio_tungstenite::WebSocketStream;
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::protocol::Role;

    /// A tungstenite client (past its handshake) and the agent's end of a
    /// tunnel spliced between them; the metrics count what crossed.
    async fn tunnel() -> (WebSocketStream<TcpStream>, TcpStream, Arc<Metrics>) {
        let (client, viewer) = pair().await;
        let (agent_near, agent) = pair().await;
        let metrics = Arc::new(Metrics::default());
        let counted = Arc::clone(&metrics);
        tokio::spawn(async move {
            let activity = Activity::default();
            let shutdown = CancellationToken::new();
            splice(viewer, agent_near, &activity, shutdown, &counted).await;
        });
        let ws = WebSocketStream::from_raw_socket(client, Role::Client, None).await;
        (ws, agent, metrics)
    }

    #[tokio::test]
    async fn bytes_cross_both_ways_and_pings_are_answered() {
        let (mut ws, mut agent, metrics) = tunnel().await;
        let big: Vec<u8> = (0..100_000u32).map(|i| (i % 249) as u8).collect();
        ws.send(Message::binary(&b"keys"[..])).await.expect("send");
        ws.send(Message::binary(big.clone())).await.expect("send");
        let mut received = vec![0u8; 4 + big.len()];
        agent.read_exact(&mut received).await.expect("agent reads");
        assert!(received[..4] == *b"keys" && received[4..] == big[..]);
        assert_eq!(metrics.bytes("from_viewer").get(), received.len() as u64);

        ws.send(Message::Ping(Bytes::from_static(b"hello")))
            .await
            .expect("ping");
        let screen: Vec<u8> = (0..1_000_000u32).map(|i| (i % 241) as u8).collect();
        agent.write_all(&screen).await.expect("agent writes");
        let mut got = Vec::new();
        let mut pong = None;
        while got.len() < screen.len() {
            match ws.next().await.expect("open").expect("frame") {
                Message::Binary(data) => got.extend_from_slice(&data),
                Message::Pong(payload) => pong = Some(payload),
                other => panic!("unexpected {other:?}"),
            }
        }
        assert!(got == screen, "the screen arrives intact and in order");
        assert_eq!(pong.as_deref(), Some(&b"hello"[..]));
    }

    #[tokio::test]
    async fn a_close_from_either_side_ends_the_tunnel_with_a_close_frame() {
        let (mut ws, mut agent, _) = tunnel().await;
        ws.close(None).await.expect("close");
        let reply = ws.next().await.expect("a reply").expect("valid");
        assert!(matches!(reply, Message::Close(_)), "{reply:?}");
        let mut rest = Vec::new();
        agent
            .read_to_end(&mut rest)
            .await
            .expect("the agent sees the end");

        let (mut ws, agent, _) = tunnel().await;
        drop(agent);
        match ws.next().await.expect("a frame").expect("valid") {
            Message::Close(Some(frame)) => assert_eq!(u16::from(frame.code), NORMAL_CLOSURE),
            other => panic!("expected a close frame, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_protocol_violation_gets_close_1002() {
        let (mut raw, viewer) = pair().await;
        let (agent_near, mut agent) = pair().await;
        tokio::spawn(async move {
            let metrics = Metrics::default();
            let activity = Activity::default();
            splice(
                viewer,
                agent_near,
                &activity,
                CancellationToken::new(),
                &metrics,
            )
            .await;
        });
        raw.write_all(&[0x82, 0x03, 1, 2, 3])
            .await
            .expect("unmasked frame");
        let mut reply = [0u8; 4];
        raw.read_exact(&mut reply).await.expect("close frame");
        assert_eq!(reply, [0x88, 0x02, 0x03, 0xea]);
        let mut forwarded = Vec::new();
        agent.read_to_end(&mut forwarded).await.expect("agent end");
        assert!(
            forwarded.is_empty(),
            "nothing of a bad frame reaches the agent"
        );
    }
}
