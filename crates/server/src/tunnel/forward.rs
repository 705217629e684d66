//! A data channel that reached this replica for a tunnel another replica
//! waits for (the load balancer sent the agent here): this replica opens
//! an HTTP/1.1 upgrade to the waiting replica's internal endpoint
//! (`waiting_replica.rs`), then relays the two connections — in the
//! kernel (splice(2)) when both are plain TCP.
//!
//! The agent never learns where its viewer is: tunnel ids are opaque to it,
//! and the relay is one more hop on the private network.

use super::handoff::switching_protocols;
use super::waiting_replica;
use crate::error::ApiResult;
use crate::state::AppState;
use axum::extract::Request;
use axum::response::Response;
use bytes::Bytes;
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use prometheus_client::metrics::counter::Counter;
use streamspace_protocol::tunnel::read_chunk;
use streamspace_protocol::{AgentId, TunnelId};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::either::Either;

/// Bytes per copy when the relay cannot splice.
const CHUNK: usize = 64 * 1024;

/// Relays the agent's data channel for `tunnel_id` to the replica waiting
/// for it. Answers the agent only once that replica accepted, so a refusal
/// there (the viewer gave up: 404) reaches the agent as it would have.
pub async fn forward(
    state: &AppState,
    tunnel_id: &TunnelId,
    agent_id: &AgentId,
    mut request: Request,
) -> ApiResult<Response> {
    let waiting = waiting_replica::find(state, tunnel_id).await?;
    let far = waiting_replica::dial(state, &waiting, tunnel_id, agent_id).await?;
    let upgrade = hyper::upgrade::on(&mut request);
    let metrics = state.metrics.clone();
    let shutdown = state.shutdown.clone();
    let span = tracing::debug_span!("relayed tunnel", %tunnel_id, to = %waiting.id);
    state.tasks.spawn(tracing::Instrument::instrument(
        async move {
            let near = match upgrade.await {
                Ok(near) => near,
                Err(err) => return tracing::debug!(%err, "agent upgrade failed"),
            };
            metrics.tunnels_relayed.inc();
            tokio::select! {
                _ = relay(near, far, metrics.tunnel_relayed_bytes.clone()) => {}
                _ = shutdown.cancelled() => {}
            }
            tracing::debug!("relayed tunnel closed");
        },
        span,
    ));
    switching_protocols()
}

/// A relayed end: a plain TCP socket and what HTTP read past the upgrade,
/// or whatever else the upgrade was over.
type End = Either<(TcpStream, Bytes), Upgraded>;

fn near_end(upgraded: Upgraded) -> End {
    match crate::serve::into_tcp(upgraded) {
        Ok(tcp) => Either::Left(tcp),
        Err(other) => Either::Right(other),
    }
}

fn far_end(upgraded: Upgraded) -> End {
    match upgraded.downcast::<TokioIo<TcpStream>>() {
        Ok(parts) => Either::Left((parts.io.into_inner(), parts.read_buf)),
        Err(other) => Either::Right(other),
    }
}

/// Moves bytes both ways until either side ends, counting them.
async fn relay(near: Upgraded, far: Upgraded, bytes: Counter) {
    match (near_end(near), far_end(far)) {
        #[cfg(target_os = "linux")]
        (Either::Left((near, near_ahead)), Either::Left((far, far_ahead))) => {
            zero_copy::relay((near, near_ahead), (far, far_ahead), bytes).await
        }
        (near, far) => copying(near, far, bytes).await,
    }
}

/// An end as a stream, what was read ahead of it kept aside.
fn stream(end: End) -> (impl AsyncRead + AsyncWrite, Bytes) {
    match end {
        Either::Left((tcp, ahead)) => (Either::Left(tcp), ahead),
        Either::Right(other) => (Either::Right(TokioIo::new(other)), Bytes::new()),
    }
}

async fn copying(near: End, far: End, bytes: Counter) {
    let (near, near_ahead) = stream(near);
    let (far, far_ahead) = stream(far);
    let (mut near_rx, mut near_tx) = tokio::io::split(near);
    let (mut far_rx, mut far_tx) = tokio::io::split(far);
    tokio::select! {
        _ = pump(&near_ahead, &mut near_rx, &mut far_tx, &bytes) => {}
        _ = pump(&far_ahead, &mut far_rx, &mut near_tx, &bytes) => {}
    }
}

async fn pump<R, W>(ahead: &[u8], from: &mut R, to: &mut W, bytes: &Counter)
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    if !ahead.is_empty() && to.write_all(ahead).await.is_err() {
        return;
    }
    bytes.inc_by(ahead.len() as u64);
    while let Ok(Some(chunk)) = read_chunk(from, CHUNK).await {
        if to.write_all(&chunk).await.is_err() {
            break;
        }
        bytes.inc_by(chunk.len() as u64);
    }
    let _ = to.shutdown().await;
}

#[cfg(target_os = "linux")]
mod zero_copy {
    use super::*;
    use streamspace_splice::Pipe;

    /// What one splice moves at most: the agent's pipe size.
    const PIPE: usize = 256 * 1024;

    /// Splices both ways; copies only if no pipes can be had.
    pub(super) async fn relay(near: (TcpStream, Bytes), far: (TcpStream, Bytes), bytes: Counter) {
        let pipes = Pipe::new(PIPE).and_then(|a| Ok((a, Pipe::new(PIPE)?)));
        let (to_far, to_near) = match pipes {
            Ok(pipes) => pipes,
            Err(err) => {
                tracing::debug!(%err, "no pipes for a zero-copy relay: copying");
                return copying(Either::Left(near), Either::Left(far), bytes).await;
            }
        };
        let ((near, near_ahead), (far, far_ahead)) = (near, far);
        tracing::debug!("splicing a relayed tunnel in the kernel");
        tokio::select! {
            _ = pump(&near_ahead, &near, &far, &to_far, &bytes) => {}
            _ = pump(&far_ahead, &far, &near, &to_near, &bytes) => {}
        }
    }

    async fn pump(
        ahead: &[u8],
        from: &TcpStream,
        to: &TcpStream,
        pipe: &Pipe,
        bytes: &Counter,
    ) -> std::io::Result<()> {
        if !ahead.is_empty() {
            write_all(to, ahead).await?;
            bytes.inc_by(ahead.len() as u64);
        }
        loop {
            let n = pipe.fill(from, usize::MAX).await?;
            if n == 0 {
                return Ok(());
            }
            pipe.drain(to, n).await?;
            bytes.inc_by(n as u64);
        }
    }

    /// Writes through a shared reference (the other direction reads the
    /// same socket meanwhile).
    async fn write_all(to: &TcpStream, mut buf: &[u8]) -> std::io::Result<()> {
        while !buf.is_empty() {
            to.writable().await?;
            match to.try_write(buf) {
                Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
                Ok(n) => buf = &buf[n..],
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}
