//! The HTTP/1.1 connection loop.
//!
//! Not `axum::serve`: it hands each connection to hyper_util's
//! version-sniffing builder, which wraps the socket in a private type, so
//! an upgraded connection can no longer be taken back to its `TcpStream`.
//! The tunnel needs exactly that to splice a viewer's bytes in the kernel
//! (`streamspace-splice`). The control plane speaks HTTP/1.1 only (TLS and
//! HTTP/2 end in a proxy in front of it), so hyper's HTTP/1 server is all
//! it takes.

use axum::Router;
use axum::serve::{Listener, ListenerExt};
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Serves `router` until `shutdown` fires, then gives requests in flight up
/// to `drain` to finish. Upgraded connections (tunnels, agent channels)
/// are the application's to track.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: CancellationToken,
    drain: Duration,
) {
    // VNC is many small messages each way; Nagle's delay would add to
    // every one of them.
    let mut listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let connections = TaskTracker::new();
    loop {
        // Accept errors (out of descriptors) are logged and retried after a
        // pause by axum's listener.
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.cancelled() => break,
        };
        // Handlers read the client's address as axum's `ConnectInfo`.
        let with_peer = axum::Extension(axum::extract::ConnectInfo(peer));
        let service = TowerToHyperService::new(tower::Layer::layer(&with_peer, router.clone()));
        let connection = http1::Builder::new()
            .serve_connection(TokioIo::new(tcp), service)
            .with_upgrades();
        let stop = shutdown.clone();
        connections.spawn(async move {
            let mut connection = std::pin::pin!(connection);
            let ended = tokio::select! {
                ended = connection.as_mut() => ended,
                _ = stop.cancelled() => {
                    // Finish the request in flight, take no more.
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(err) = ended {
                tracing::debug!(%err, "HTTP connection ended with an error");
            }
        });
    }
    connections.close();
    if tokio::time::timeout(drain, connections.wait())
        .await
        .is_err()
    {
        tracing::debug!("some HTTP requests were still running after {drain:?}");
    }
}
