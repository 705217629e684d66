//! Connections to web apps for the proxy's HTTP client: each is a data
//! channel the session's agent opens to the app's port, so hyper-util's
//! pool keeps them alive between requests (a page's dozens of assets reuse
//! a few channels instead of asking the agent for one each).
//!
//! The client dials by URI, so a URI names the channel:
//! `http://{session}.{port}.{agent}.{tls}.tunnel/`. One authority per app,
//! hence one pool per app: a connection to one session is never handed to
//! a request for another.

use crate::error::ApiError;
use crate::tunnel::opener::TunnelOpener;
use http::Uri;
use hyper::rt::{Read, ReadBufCursor, Write};
use hyper::upgrade::Upgraded;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use streamspace_protocol::{AgentId, ServerMessage, SessionId};

/// Where a pooled connection goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub session_id: SessionId,
    pub port: u16,
    pub agent_id: AgentId,
    /// The app serves HTTPS: the agent speaks TLS to it.
    pub tls: bool,
}

const SUFFIX: &str = ".tunnel";

impl Target {
    /// The URI of `path_and_query` on this target.
    pub fn uri(&self, path_and_query: &str) -> Result<Uri, http::Error> {
        let tls = u8::from(self.tls);
        let authority = format!(
            "{}.{}.{}.{tls}{SUFFIX}",
            self.session_id, self.port, self.agent_id
        );
        Uri::builder()
            .scheme("http")
            .authority(authority)
            .path_and_query(path_and_query)
            .build()
    }

    fn from_uri(uri: &Uri) -> Option<Self> {
        let host = uri.host()?.strip_suffix(SUFFIX)?;
        let mut parts = host.split('.');
        let (session, port, agent, tls) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() {
            return None;
        }
        Some(Target {
            session_id: session.into(),
            port: port.parse().ok()?,
            agent_id: agent.into(),
            tls: tls == "1",
        })
    }
}

pub type AppClient = Client<TunnelConnector, axum::body::Body>;

/// Idle connections kept per app, and for how long: enough for a page's
/// parallel asset requests, released soon after.
const IDLE_PER_APP: usize = 8;
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

pub fn client(opener: TunnelOpener) -> AppClient {
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(IDLE_TIMEOUT)
        .pool_max_idle_per_host(IDLE_PER_APP)
        .pool_timer(TokioTimer::new())
        .build(TunnelConnector { opener })
}

#[derive(Clone)]
pub struct TunnelConnector {
    pub opener: TunnelOpener,
}

type Connecting = Pin<Box<dyn Future<Output = Result<TunnelIo, ApiError>> + Send>>;

impl tower::Service<Uri> for TunnelConnector {
    type Response = TunnelIo;
    type Error = ApiError;
    type Future = Connecting;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), ApiError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Connecting {
        let opener = self.opener.clone();
        Box::pin(async move {
            let target = Target::from_uri(&uri)
                .ok_or_else(|| ApiError::Internal(format!("not an app tunnel: {uri}")))?;
            let stream = opener
                .open(&target.agent_id, |tunnel_id| ServerMessage::OpenTunnel {
                    tunnel_id,
                    session_id: target.session_id.clone(),
                    port: target.port,
                    tls: target.tls,
                })
                .await?;
            Ok(TunnelIo(stream))
        })
    }
}

/// A data channel as the client's connection.
pub struct TunnelIo(Upgraded);

impl Connection for TunnelIo {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

impl Read for TunnelIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_read(cx, buf)
    }
}

impl Write for TunnelIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_target_survives_its_uri() {
        let target = Target {
            session_id: "0190a5c2-7b1e-7c3d-8e4f-123456789abc".into(),
            port: 6080,
            agent_id: "0190a5c2-7b1e-7c3d-8e4f-aaaaaaaaaaaa".into(),
            tls: true,
        };
        let uri = target.uri("/a/b?c=d").expect("a URI");
        assert_eq!(uri.path_and_query().map(|p| p.as_str()), Some("/a/b?c=d"));
        assert_eq!(Target::from_uri(&uri), Some(target));
        let other: Uri = "http://example.com/".parse().expect("uri");
        assert_eq!(Target::from_uri(&other), None);
    }
}
