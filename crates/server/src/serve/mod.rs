//! The HTTP/1.1 connection loop, with its limits and optional TLS.
//!
//! Not `axum::serve`: it hands each connection to hyper_util's
//! version-sniffing builder, which wraps the socket in a private type, so
//! an upgraded connection can no longer be taken back to its `TcpStream`.
//! The tunnel needs exactly that to splice a viewer's bytes in the kernel
//! (`streamspace-splice`, `into_tcp`). The control plane speaks HTTP/1.1
//! only (HTTP/2 would end in a proxy in front of it), so hyper's HTTP/1
//! server is all it takes.
//!
//! Each connection is watched (`watch.rs`) so that a client cannot hold it
//! for free: the head of a request (and a TLS handshake) must arrive within
//! the header-read timeout and its body within the body-read timeout, a
//! keep-alive connection may wait for its next request, and a client may
//! leave a response unread, for the idle timeout, and at most
//! `max_connections` speak HTTP at once (`connections.rs`). hyper's own
//! header-read timer is not used: it runs whenever hyper waits for a head,
//! so it would also cut idle keep-alive connections.

mod connections;
mod service;
#[cfg(test)]
mod tests;
mod watch;

pub use connections::{Connections, raise_open_file_limit};
pub use service::BodyTimedOut;
pub use watch::into_tcp;

use axum::Router;
use axum::serve::{Listener, ListenerExt};
use connections::Slot;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use service::Service;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::{Instant, sleep_until};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use watch::{Phase, Watch, Watched};

/// How long a client turned away at the cap gets to read why.
const REFUSAL_GRACE: Duration = Duration::from_secs(1);
/// Most refusals being written at once; beyond it, connections are closed
/// without a word rather than queueing work for a flood.
const REFUSALS_AT_ONCE: usize = 64;
/// The most hyper buffers of a connection's input: a request head larger
/// than this is answered 431. hyper's default (about 400 KiB) would let
/// 10,000 connections hold 4 GB of heads; nginx allows about 40 KiB.
const MAX_BUFFER: usize = 64 * 1024;

/// How every connection speaks HTTP/1.1.
fn http1() -> http1::Builder {
    let mut builder = http1::Builder::new();
    builder.max_buf_size(MAX_BUFFER);
    builder
}

/// A listening socket and how to speak on it.
pub struct Endpoint {
    pub listener: TcpListener,
    /// HTTPS with this acceptor; plain HTTP if `None`.
    pub tls: Option<TlsAcceptor>,
}

/// Serves `router` on every endpoint until `shutdown` fires, then gives
/// requests in flight up to `drain` to finish. Upgraded connections
/// (tunnels, agent channels) are the application's to track.
pub async fn serve(
    endpoints: Vec<Endpoint>,
    router: Router,
    connections: Arc<Connections>,
    shutdown: CancellationToken,
    drain: Duration,
) {
    let tasks = TaskTracker::new();
    let refusals = Arc::new(Semaphore::new(REFUSALS_AT_ONCE));
    let http = Arc::new(http1());
    let loops = endpoints.into_iter().map(|endpoint| {
        Acceptor {
            http: http.clone(),
            router: router.clone(),
            connections: connections.clone(),
            tasks: tasks.clone(),
            refusals: refusals.clone(),
            shutdown: shutdown.clone(),
        }
        .run(endpoint)
    });
    futures::future::join_all(loops).await;
    tasks.close();
    if tokio::time::timeout(drain, tasks.wait()).await.is_err() {
        tracing::debug!("some HTTP requests were still running after {drain:?}");
    }
}

struct Acceptor {
    http: Arc<http1::Builder>,
    router: Router,
    connections: Arc<Connections>,
    tasks: TaskTracker,
    refusals: Arc<Semaphore>,
    shutdown: CancellationToken,
}

impl Acceptor {
    async fn run(self, endpoint: Endpoint) {
        // VNC is many small messages each way; Nagle's delay would add to
        // every one of them.
        let mut listener = endpoint.listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        loop {
            // Accept errors (out of descriptors) are logged and retried
            // after a pause by axum's listener.
            let (tcp, peer) = tokio::select! {
                accepted = listener.accept() => accepted,
                _ = self.shutdown.cancelled() => break,
            };
            let Some(slot) = self.connections.admit() else {
                // A TLS client would not understand a plain answer.
                if endpoint.tls.is_none()
                    && let Ok(permit) = self.refusals.clone().try_acquire_owned()
                {
                    self.tasks.spawn(async move {
                        refuse(tcp).await;
                        drop(permit);
                    });
                }
                continue;
            };
            let connection = Connection {
                http: self.http.clone(),
                slot,
                connections: self.connections.clone(),
                router: self.router.clone(),
                shutdown: self.shutdown.clone(),
                peer,
            };
            self.tasks.spawn(connection.run(tcp, endpoint.tls.clone()));
        }
    }
}

/// Why the server closed a connection it was still watching.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    HeaderTimeout,
    /// A request body was still incomplete after the body-read timeout
    /// and the handler did not answer 408.
    BodyTimeout,
    IdleTimeout,
    /// The client left a response unread for the idle timeout.
    WriteStall,
    Evicted,
    Shutdown,
}

struct Connection {
    http: Arc<http1::Builder>,
    slot: Slot,
    connections: Arc<Connections>,
    router: Router,
    shutdown: CancellationToken,
    /// The client's address, which handlers read as axum's `ConnectInfo`.
    peer: SocketAddr,
}

impl Connection {
    async fn run(self, tcp: TcpStream, tls: Option<TlsAcceptor>) {
        let ended = match tls {
            None => self.http(tcp, false).await,
            Some(acceptor) => {
                let handshake = pin!(acceptor.accept(tcp));
                match self.until_limit(handshake).await {
                    Ok(Ok(stream)) => self.http(stream, true).await,
                    Ok(Err(err)) => {
                        tracing::debug!(%err, "TLS handshake failed");
                        self.connections.metrics.dropped("tls_handshake");
                        Ok(())
                    }
                    Err(stop) => Err(stop),
                }
            }
        };
        self.slot.watch.release();
        let metrics = &self.connections.metrics;
        match ended {
            Err(Stop::HeaderTimeout) => metrics.dropped("header_timeout"),
            Err(Stop::BodyTimeout) => metrics.dropped("body_timeout"),
            Err(Stop::IdleTimeout) => metrics.dropped("idle_timeout"),
            Err(Stop::WriteStall) => metrics.dropped("write_stall"),
            // Counted when chosen; shutdown is not the client's doing.
            Err(Stop::Evicted | Stop::Shutdown) | Ok(()) => {}
        }
    }

    /// Serves HTTP on `io` until the client leaves, the connection is
    /// upgraded (then the application owns it) or a limit ends it.
    async fn http<S>(&self, io: S, https: bool) -> Result<(), Stop>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let watch = self.slot.watch.clone();
        let service = Service {
            router: self.router.clone(),
            watch: watch.clone(),
            connections: self.connections.clone(),
            https,
            peer: self.peer,
        };
        let io = TokioIo::new(Watched::new(io, watch));
        let mut connection = pin!(self.http.serve_connection(io, service).with_upgrades());
        match self.until_limit(connection.as_mut()).await {
            Ok(ended) => {
                if let Err(err) = ended {
                    tracing::debug!(%err, "HTTP connection ended with an error");
                }
                Ok(())
            }
            Err(Stop::Shutdown) => {
                // Finish the request in flight, take no more.
                connection.as_mut().graceful_shutdown();
                let _ = connection.await;
                Ok(())
            }
            Err(stop) => Err(stop),
        }
    }

    /// Drives `work` until it completes, or until the connection's phase
    /// runs out of time, it is evicted or the server shuts down.
    async fn until_limit<F: Future>(&self, mut work: Pin<&mut F>) -> Result<F::Output, Stop> {
        let watch = &self.slot.watch;
        let limits = &self.connections.limits;
        loop {
            let state = watch.state();
            // What ends the connection if its deadline passes unchanged.
            let expired = match state.phase {
                // Gone is set only once this has returned.
                Phase::Evicted | Phase::Gone => return Err(Stop::Evicted),
                Phase::Head => Stop::HeaderTimeout,
                Phase::Body => Stop::BodyTimeout,
                _ if state.stalled.is_some() => Stop::WriteStall,
                Phase::Idle | Phase::Busy => Stop::IdleTimeout,
            };
            let deadline = Watch::deadline(state, limits);
            tokio::select! {
                output = work.as_mut() => return Ok(output),
                _ = watch.changed() => {}
                _ = sleep_until_some(deadline) => {
                    // A change that raced the timer wins.
                    if watch.state() == state {
                        return Err(expired);
                    }
                }
                _ = self.shutdown.cancelled() => return Err(Stop::Shutdown),
            }
        }
    }
}

async fn sleep_until_some(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// Tells a plain-HTTP client that came when every slot held a request in
/// progress why it is turned away: after its request head (HTTP clients
/// take an answer before their request as a broken connection), within
/// `REFUSAL_GRACE` overall.
async fn refuse(mut tcp: TcpStream) {
    const BODY: &str =
        r#"{"error":"the server has too many open connections right now; try again shortly"}"#;
    const HEAD_LIMIT: usize = 16 * 1024;
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nretry-after: 1\r\nconnection: close\r\n\r\n{BODY}",
        BODY.len()
    );
    let _ = tokio::time::timeout(REFUSAL_GRACE, async {
        let mut head = Vec::new();
        let mut buf = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < HEAD_LIMIT {
            let n = tcp.read(&mut buf).await?;
            if n == 0 {
                return Ok(());
            }
            head.extend_from_slice(&buf[..n]);
        }
        tcp.write_all(response.as_bytes()).await?;
        tcp.shutdown().await?;
        // Closing with unread bytes (a body) would reset the connection,
        // and the client might lose the answer.
        while tcp.read(&mut buf).await? > 0 {}
        Ok::<_, std::io::Error>(())
    })
    .await;
}
