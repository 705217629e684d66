//! Just enough of the RFB protocol (RFC 6143) to prove a VNC server answers
//! through `/vnc/{id}`: version, security type None, init, and one
//! framebuffer update.

use anyhow::{Context, bail, ensure};
use bytes::{Buf, Bytes, BytesMut};
use futures::{SinkExt, StreamExt};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};
use url::Url;

const IO_TIMEOUT: Duration = Duration::from_secs(20);

/// RFB bytes carried in WebSocket binary frames.
pub struct VncSocket {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    buf: BytesMut,
}

/// What the server said in its `ServerInit`.
#[derive(Debug, Clone)]
pub struct ServerInit {
    pub width: u16,
    pub height: u16,
    pub name: String,
}

/// The `/vnc/{id}` URL for a control plane at `base`.
pub fn vnc_url(base: &Url, session_id: &str) -> Url {
    let mut url = base.clone();
    let scheme = if base.scheme() == "https" {
        "wss"
    } else {
        "ws"
    };
    let _ = url.set_scheme(scheme);
    url.set_path(&format!("/vnc/{session_id}"));
    url
}

/// Why a `/vnc` upgrade was refused: HTTP status and the `error` text.
#[derive(Debug)]
pub struct Refused {
    pub status: u16,
    pub error: String,
}

impl VncSocket {
    /// Opens the WebSocket with a bearer token (and optional extra headers).
    pub async fn connect(
        base: &Url,
        session_id: &str,
        token: &str,
        headers: &[(&str, &str)],
    ) -> Result<Self, Refused> {
        Self::connect_tls(base, session_id, token, headers, None).await
    }

    /// `connect`, trusting what `tls` trusts for a `https://` base.
    pub async fn connect_tls(
        base: &Url,
        session_id: &str,
        token: &str,
        headers: &[(&str, &str)],
        tls: Option<Arc<rustls::ClientConfig>>,
    ) -> Result<Self, Refused> {
        let url = vnc_url(base, session_id);
        let refused = |status, error: String| Refused { status, error };
        let mut request = url
            .as_str()
            .into_client_request()
            .map_err(|e| refused(0, e.to_string()))?;
        let h = request.headers_mut();
        h.insert(
            "authorization",
            format!("Bearer {token}")
                .parse()
                .map_err(|_| refused(0, "bad token".into()))?,
        );
        h.insert(
            "sec-websocket-protocol",
            http::HeaderValue::from_static("binary"),
        );
        for (name, value) in headers {
            let name = http::HeaderName::from_bytes(name.as_bytes())
                .map_err(|e| refused(0, e.to_string()))?;
            h.insert(
                name,
                value.parse().map_err(|_| refused(0, "bad header".into()))?,
            );
        }
        let connector = tls.map(Connector::Rustls);
        match tokio_tungstenite::connect_async_tls_with_config(request, None, true, connector).await
        {
            Ok((ws, _)) => Ok(Self {
                ws,
                buf: BytesMut::new(),
            }),
            Err(tungstenite::Error::Http(response)) => {
                let body = response.body().as_deref().unwrap_or_default();
                let json: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
                Err(refused(
                    response.status().as_u16(),
                    json["error"].as_str().unwrap_or_default().to_owned(),
                ))
            }
            Err(err) => Err(refused(0, err.to_string())),
        }
    }

    pub async fn read_exact(&mut self, n: usize) -> anyhow::Result<Bytes> {
        while self.buf.len() < n {
            let frame = tokio::time::timeout(IO_TIMEOUT, self.ws.next())
                .await
                .context("timed out waiting for RFB bytes")?;
            match frame {
                Some(Ok(Message::Binary(data))) => self.buf.extend_from_slice(&data),
                Some(Ok(Message::Close(reason))) => bail!("closed by the server: {reason:?}"),
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e.into()),
                None => bail!("the connection ended"),
            }
        }
        Ok(self.buf.split_to(n).freeze())
    }

    pub async fn write(&mut self, data: &[u8]) -> anyhow::Result<()> {
        self.ws
            .send(Message::Binary(Bytes::copy_from_slice(data)))
            .await?;
        Ok(())
    }

    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
    }

    /// The 12-byte protocol version banner, e.g. `RFB 003.008\n`.
    pub async fn banner(&mut self) -> anyhow::Result<String> {
        let banner = self.read_exact(12).await?;
        ensure!(banner.starts_with(b"RFB "), "not an RFB banner: {banner:?}");
        Ok(String::from_utf8_lossy(&banner).into_owned())
    }

    /// Version 3.8, security type None, shared ClientInit.
    pub async fn handshake(&mut self) -> anyhow::Result<ServerInit> {
        self.banner().await?;
        self.write(b"RFB 003.008\n").await?;
        let count = self.read_exact(1).await?[0] as usize;
        if count == 0 {
            bail!("server refused: {}", self.reason().await?);
        }
        let types = self.read_exact(count).await?;
        ensure!(
            types.contains(&1),
            "server does not offer security None: {types:?}"
        );
        self.write(&[1]).await?;
        let result = self.read_exact(4).await?.get_u32();
        if result != 0 {
            bail!("security failed: {}", self.reason().await?);
        }
        self.write(&[1]).await?; // ClientInit: shared
        let mut init = self.read_exact(24).await?;
        let width = init.get_u16();
        let height = init.get_u16();
        init.advance(16); // pixel format
        let name_len = init.get_u32() as usize;
        let name = String::from_utf8_lossy(&self.read_exact(name_len).await?).into_owned();
        Ok(ServerInit {
            width,
            height,
            name,
        })
    }

    async fn reason(&mut self) -> anyhow::Result<String> {
        let len = self.read_exact(4).await?.get_u32() as usize;
        Ok(String::from_utf8_lossy(&self.read_exact(len).await?).into_owned())
    }

    /// Asks for the whole screen and returns the number of rectangles in the
    /// `FramebufferUpdate` that answers.
    pub async fn framebuffer_update(&mut self, init: &ServerInit) -> anyhow::Result<u16> {
        let mut request = vec![3u8, 0, 0, 0, 0, 0];
        request.extend_from_slice(&init.width.to_be_bytes());
        request.extend_from_slice(&init.height.to_be_bytes());
        self.write(&request).await?;
        let mut header = self.read_exact(4).await?;
        let kind = header.get_u8();
        ensure!(
            kind == 0,
            "expected a FramebufferUpdate (0), got message type {kind}"
        );
        header.advance(1);
        Ok(header.get_u16())
    }
}
