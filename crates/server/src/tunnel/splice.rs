//! Moves bytes between a viewer's WebSocket and an agent's raw data stream.

use super::activity::Activity;
use crate::metrics::Metrics;
use axum::extract::ws::{Message, WebSocket};
use futures::{SinkExt, StreamExt};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use streamspace_protocol::tunnel::read_chunk;
use tokio::io::AsyncWriteExt;
use tokio_util::sync::CancellationToken;

/// Bytes read from the agent per WebSocket frame at most: large enough that
/// a framebuffer update is a few frames, small enough to keep latency low.
const CHUNK: usize = 64 * 1024;

/// Runs until either side closes or `shutdown` fires. Everything the viewer
/// sends (keyboard, mouse) is user activity.
pub async fn splice(
    ws: WebSocket,
    agent: Upgraded,
    activity: &Activity,
    shutdown: CancellationToken,
    metrics: &Metrics,
) {
    let (to_viewer, from_viewer) = (metrics.bytes("to_viewer"), metrics.bytes("from_viewer"));
    let (mut agent_rx, mut agent_tx) = tokio::io::split(TokioIo::new(agent));
    let (mut viewer_tx, mut viewer_rx) = ws.split();

    let upstream = async {
        while let Some(Ok(message)) = viewer_rx.next().await {
            let data = match message {
                Message::Binary(data) => data,
                Message::Text(text) => text.into(),
                Message::Close(_) => break,
                Message::Ping(_) | Message::Pong(_) => continue,
            };
            activity.mark();
            from_viewer.inc_by(data.len() as u64);
            if agent_tx.write_all(&data).await.is_err() {
                break;
            }
        }
        let _ = agent_tx.shutdown().await;
    };

    let downstream = async {
        while let Ok(Some(chunk)) = read_chunk(&mut agent_rx, CHUNK).await {
            to_viewer.inc_by(chunk.len() as u64);
            if viewer_tx.send(Message::Binary(chunk)).await.is_err() {
                return;
            }
        }
        let _ = viewer_tx.send(Message::Close(None)).await;
    };

    tokio::select! {
        _ = upstream => {}
        _ = downstream => {}
        _ = shutdown.cancelled() => {}
    }
}
