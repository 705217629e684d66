//! One viewer connection to a session port, by one of three routes: our
//! `/vnc` WebSocket (2 hops), websockify (1 hop), or raw TCP (the ceiling);
//! the two WebSocket routes over TLS too.
//! Both WebSocket routes use the same client (tokio-tungstenite), so the
//! client's own cost is the same for each.

use anyhow::{Context, bail};
use bytes::{Bytes, BytesMut};
use futures::{SinkExt, StreamExt};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout, timeout_at};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};
use url::Url;

const IO_TIMEOUT: Duration = Duration::from_secs(30);
/// The RFB version banner every target sends first.
pub const BANNER_LEN: usize = 12;

/// How a viewer reaches the session.
#[derive(Debug, Clone)]
pub enum Route {
    /// `ws(s)://control-plane/vnc/{session}` (or `/audio/{session}`) with
    /// a bearer token.
    Ours {
        base: Url,
        session_id: String,
        token: String,
        /// `"vnc"` or `"audio"`: the first segment of the path.
        channel: &'static str,
        /// What to trust on an `https://` base.
        tls: Option<Arc<rustls::ClientConfig>>,
    },
    /// websockify listening on this loopback port (over TLS if `tls`).
    Websockify {
        port: u16,
        tls: Option<Arc<rustls::ClientConfig>>,
    },
    /// The session's published port itself.
    Raw { port: u16 },
}

impl Route {
    pub fn name(&self) -> &'static str {
        match self {
            Route::Ours { .. } => "streamspace",
            Route::Websockify { .. } => "websockify",
            Route::Raw { .. } => "raw TCP",
        }
    }

    /// Connects and reads the 12-byte banner, so measuring starts after it.
    pub async fn connect(&self) -> anyhow::Result<Viewer> {
        let mut viewer = timeout(IO_TIMEOUT, self.open())
            .await
            .with_context(|| format!("{} did not connect in {IO_TIMEOUT:?}", self.name()))??;
        let banner = viewer.read_exact(BANNER_LEN).await?;
        if !banner.starts_with(b"RFB ") {
            bail!("{}: not an RFB banner: {banner:?}", self.name());
        }
        Ok(viewer)
    }

    /// Connects without reading anything (for streams other than RFB).
    pub async fn open(&self) -> anyhow::Result<Viewer> {
        let (url, token, tls) = match self {
            Route::Raw { port } => {
                let tcp = TcpStream::connect(("127.0.0.1", *port)).await?;
                tcp.set_nodelay(true)?;
                return Ok(Viewer::new(Transport::Tcp(tcp)));
            }
            Route::Websockify { port, tls } => {
                let scheme = if tls.is_some() { "wss" } else { "ws" };
                (format!("{scheme}://127.0.0.1:{port}/"), None, tls)
            }
            Route::Ours {
                base,
                session_id,
                token,
                channel,
                tls,
            } => {
                let mut url = base.clone();
                let scheme = if base.scheme() == "https" {
                    "wss"
                } else {
                    "ws"
                };
                let _ = url.set_scheme(scheme);
                url.set_path(&format!("/{channel}/{session_id}"));
                (url.to_string(), Some(token), tls)
            }
        };
        let mut request = url.as_str().into_client_request()?;
        let headers = request.headers_mut();
        headers.insert(
            "sec-websocket-protocol",
            http::HeaderValue::from_static("binary"),
        );
        if let Some(token) = token {
            headers.insert("authorization", format!("Bearer {token}").parse()?);
        }
        let connector = tls.clone().map(Connector::Rustls);
        let (ws, _) =
            tokio_tungstenite::connect_async_tls_with_config(request, None, true, connector)
                .await
                .with_context(|| format!("WebSocket to {url} failed"))?;
        Ok(Viewer::new(Transport::Ws(Box::new(ws))))
    }
}

enum Transport {
    Ws(Box<WebSocketStream<MaybeTlsStream<TcpStream>>>),
    Tcp(TcpStream),
}

pub struct Viewer {
    transport: Transport,
    /// Bytes received beyond what the last `read_exact` asked for.
    pending: BytesMut,
    raw_buf: Vec<u8>,
}

impl Viewer {
    fn new(transport: Transport) -> Self {
        Self {
            transport,
            pending: BytesMut::new(),
            raw_buf: vec![0; 256 * 1024],
        }
    }

    /// Receives whatever arrives next, keeping it in `pending` if `keep`;
    /// `None` at the end of the stream.
    async fn receive(&mut self, keep: bool) -> anyhow::Result<Option<usize>> {
        match &mut self.transport {
            Transport::Tcp(tcp) => {
                let n = tcp.read(&mut self.raw_buf).await?;
                if keep {
                    self.pending.extend_from_slice(&self.raw_buf[..n]);
                }
                Ok((n > 0).then_some(n))
            }
            Transport::Ws(ws) => loop {
                match ws.next().await {
                    Some(Ok(Message::Binary(data))) => {
                        if keep {
                            self.pending.extend_from_slice(&data);
                        }
                        return Ok(Some(data.len()));
                    }
                    Some(Ok(Message::Close(_))) | None => return Ok(None),
                    Some(Ok(_)) => {}
                    Some(Err(e)) => return Err(e.into()),
                }
            },
        }
    }

    pub async fn read_exact(&mut self, n: usize) -> anyhow::Result<Bytes> {
        while self.pending.len() < n {
            match timeout(IO_TIMEOUT, self.receive(true)).await {
                Err(_) => bail!("no data within {IO_TIMEOUT:?}"),
                Ok(Ok(None)) => bail!("the connection ended"),
                Ok(result) => {
                    result?;
                }
            }
        }
        Ok(self.pending.split_to(n).freeze())
    }

    pub async fn write(&mut self, data: &[u8]) -> anyhow::Result<()> {
        match &mut self.transport {
            Transport::Tcp(tcp) => tcp.write_all(data).await?,
            Transport::Ws(ws) => {
                ws.send(Message::Binary(Bytes::copy_from_slice(data)))
                    .await?
            }
        }
        Ok(())
    }

    /// Sends `message` and waits for it to come back (echo target).
    pub async fn round_trip(&mut self, message: &[u8]) -> anyhow::Result<Duration> {
        let start = Instant::now();
        self.write(message).await?;
        let echoed = self.read_exact(message.len()).await?;
        let elapsed = start.elapsed();
        if echoed.as_ref() != message {
            bail!("the echo differs from what was sent");
        }
        Ok(elapsed)
    }

    /// Counts bytes received until `deadline` (source target); data is
    /// dropped as it arrives. Call after `connect` drained the banner.
    pub async fn drain_until(&mut self, deadline: Instant) -> anyhow::Result<u64> {
        let mut total = 0u64;
        loop {
            match timeout_at(deadline, self.receive(false)).await {
                Err(_) => return Ok(total),
                Ok(Ok(Some(n))) => total += n as u64,
                Ok(Ok(None)) => bail!("the source ended after {total} bytes"),
                Ok(Err(e)) => return Err(e),
            }
        }
    }

    pub async fn close(self) {
        match self.transport {
            Transport::Ws(mut ws) => {
                let _ = timeout(Duration::from_secs(2), SinkExt::close(&mut ws)).await;
            }
            Transport::Tcp(mut tcp) => {
                let _ = tcp.shutdown().await;
            }
        }
    }
}
