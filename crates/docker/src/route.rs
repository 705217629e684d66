//! How the agent reaches a session's port. The container's own address on
//! its network skips Docker's userland port proxy (`docker-proxy`), a whole
//! user-space copy of every byte; where container addresses are unreachable
//! from the agent (Docker Desktop's VM), the port published on the publish
//! host still works. The first dial learns which route works for this agent,
//! so later dials go straight to it and the fallback costs nothing each time.

use std::io::ErrorKind;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::time::timeout;

/// A container on a local bridge answers a SYN in well under a millisecond;
/// an unreachable one would otherwise hold the first tunnel for seconds.
pub(crate) const DIRECT_TIMEOUT: Duration = Duration::from_millis(300);

/// The route this agent uses to reach session ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionRoute {
    /// No session has been dialed yet.
    Undecided,
    /// The container's own address and port.
    ContainerAddress,
    /// The port Docker published on the publish host.
    PublishedPort,
}

impl SessionRoute {
    fn from_u8(value: u8) -> Self {
        match value {
            1 => SessionRoute::ContainerAddress,
            2 => SessionRoute::PublishedPort,
            _ => SessionRoute::Undecided,
        }
    }
}

/// Remembers the route that works for this agent.
#[derive(Debug)]
pub(crate) struct Router {
    route: AtomicU8,
}

impl Router {
    /// With `direct` false, only published ports are dialed.
    pub(crate) fn new(direct: bool) -> Self {
        let route = if direct {
            SessionRoute::Undecided
        } else {
            SessionRoute::PublishedPort
        };
        Router {
            route: AtomicU8::new(route as u8),
        }
    }

    pub(crate) fn route(&self) -> SessionRoute {
        SessionRoute::from_u8(self.route.load(Ordering::Relaxed))
    }

    /// Connects at `direct` unless this agent learned that container
    /// addresses are unreachable; otherwise, or when that fails, at
    /// `published`, waiting at most `limit`.
    pub(crate) async fn connect(
        &self,
        direct: Option<SocketAddr>,
        published: SocketAddr,
        limit: Duration,
    ) -> Result<TcpStream, String> {
        if let Some(addr) = direct.filter(|_| self.route() != SessionRoute::PublishedPort) {
            match timeout(DIRECT_TIMEOUT, TcpStream::connect(addr)).await {
                Ok(Ok(stream)) => {
                    self.learn(SessionRoute::ContainerAddress, addr, "");
                    return Ok(stream);
                }
                // The container answered, so it is reachable; nothing listens
                // yet, and the published port leads to the same socket.
                Ok(Err(e)) if e.kind() == ErrorKind::ConnectionRefused => {
                    self.learn(SessionRoute::ContainerAddress, addr, "");
                    return Err(format!("{addr}: {e}"));
                }
                Ok(Err(e)) => self.learn(SessionRoute::PublishedPort, addr, &e.to_string()),
                Err(_) => self.learn(
                    SessionRoute::PublishedPort,
                    addr,
                    &format!("no answer within {DIRECT_TIMEOUT:?}"),
                ),
            }
        }
        match timeout(limit, TcpStream::connect(published)).await {
            Ok(Ok(stream)) => Ok(stream),
            Ok(Err(e)) => Err(format!("{published}: {e}")),
            Err(_) => Err(format!("{published}: no answer within {limit:?}")),
        }
    }

    /// Records the first route that proved itself, and says so once. A
    /// later failure of a learned direct route only falls back for that dial.
    fn learn(&self, route: SessionRoute, addr: SocketAddr, cause: &str) {
        let undecided = SessionRoute::Undecided as u8;
        let first = self
            .route
            .compare_exchange(undecided, route as u8, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok();
        match (first, route) {
            (true, SessionRoute::ContainerAddress) => tracing::info!(
                %addr,
                "reaching session ports at container addresses, not through Docker's port proxy"
            ),
            (true, _) => tracing::info!(
                %addr,
                cause,
                "container addresses are unreachable from this agent: using published ports"
            ),
            (false, SessionRoute::PublishedPort) => {
                tracing::warn!(%addr, cause, "container address unreachable: using its published port");
            }
            (false, _) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::{TcpListener, TcpSocket};

    async fn listener() -> (TcpListener, SocketAddr) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        (listener, addr)
    }

    /// A loopback address whose SYNs go unanswered, like an unroutable
    /// container address: a listener with a full accept queue drops them.
    async fn black_hole() -> (TcpListener, Vec<TcpStream>, SocketAddr) {
        let socket = TcpSocket::new_v4().expect("socket");
        socket
            .bind("127.0.0.1:0".parse().expect("addr"))
            .expect("bind");
        let listener = socket.listen(0).expect("listen");
        let addr = listener.local_addr().expect("addr");
        let mut filled = Vec::new();
        while let Ok(Ok(stream)) =
            timeout(Duration::from_millis(200), TcpStream::connect(addr)).await
        {
            filled.push(stream);
        }
        (listener, filled, addr)
    }

    #[tokio::test]
    async fn a_reachable_container_address_is_used_and_remembered() {
        let (direct, direct_addr) = listener().await;
        let (_published, published_addr) = listener().await;
        let router = Router::new(true);
        let stream = router
            .connect(Some(direct_addr), published_addr, Duration::from_secs(5))
            .await
            .expect("connects");
        assert_eq!(stream.peer_addr().expect("peer"), direct_addr);
        assert_eq!(router.route(), SessionRoute::ContainerAddress);
        drop(direct);
    }

    #[tokio::test]
    async fn an_unreachable_container_address_falls_back_once_and_for_all() {
        let (_hole, _filled, hole_addr) = black_hole().await;
        let (_published, published_addr) = listener().await;
        let router = Router::new(true);
        let stream = router
            .connect(Some(hole_addr), published_addr, Duration::from_secs(5))
            .await
            .expect("falls back");
        assert_eq!(stream.peer_addr().expect("peer"), published_addr);
        assert_eq!(router.route(), SessionRoute::PublishedPort);

        let started = std::time::Instant::now();
        let stream = router
            .connect(Some(hole_addr), published_addr, Duration::from_secs(5))
            .await
            .expect("published");
        assert_eq!(stream.peer_addr().expect("peer"), published_addr);
        assert!(
            started.elapsed() < DIRECT_TIMEOUT,
            "the learned fallback must not try the container address again"
        );
    }

    #[tokio::test]
    async fn refused_means_reachable_but_not_listening_yet() {
        let (closed, closed_addr) = listener().await;
        drop(closed);
        let (_published, published_addr) = listener().await;
        let router = Router::new(true);
        let err = router
            .connect(Some(closed_addr), published_addr, Duration::from_secs(5))
            .await
            .expect_err("refused");
        assert!(err.contains(&closed_addr.to_string()), "{err}");
        assert_eq!(router.route(), SessionRoute::ContainerAddress);
    }

    #[tokio::test]
    async fn disabled_direct_dialing_uses_the_published_port() {
        let (_direct, direct_addr) = listener().await;
        let (_published, published_addr) = listener().await;
        let router = Router::new(false);
        let stream = router
            .connect(Some(direct_addr), published_addr, Duration::from_secs(5))
            .await
            .expect("connects");
        assert_eq!(stream.peer_addr().expect("peer"), published_addr);
    }
}
