//! Data channels: for each tunnel the control plane asks for, open the source
//! (a session's port, or its console output) and a fresh connection back to
//! the control plane, upgrade the latter to a raw stream, and copy bytes until
//! either side closes.

use crate::identity::Identity;
use crate::platform::{Platform, SessionStream};
use anyhow::{Context, bail};
use bytes::Bytes;
use futures::StreamExt;
use http::{Request, StatusCode, header};
use http_body_util::{BodyExt, Empty};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use streamspace_protocol::tunnel::{UPGRADE_PROTOCOL, read_chunk, tunnel_path};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// What a data channel carries.
#[derive(Debug, Clone)]
pub enum Purpose {
    /// Both directions of a session's TCP port (VNC).
    Port { session_id: String, port: u16 },
    /// The session's console output, one way.
    Logs {
        session_id: String,
        tail: Option<u32>,
        follow: bool,
    },
}

/// Runs one data channel. Errors before any byte flows are returned so the
/// caller can tell the control plane (and so the viewer) why; errors after
/// that are ordinary disconnects (the viewer closed).
pub async fn open(
    identity: &Identity,
    platform: &dyn Platform,
    tunnel_id: &str,
    purpose: Purpose,
) -> anyhow::Result<()> {
    match purpose {
        Purpose::Port { session_id, port } => {
            let session = platform
                .connect(&session_id, port)
                .await
                .with_context(|| format!("cannot reach port {port} of the session"))?;
            let data = TokioIo::new(dial(identity, tunnel_id).await?);
            splice(session, data).await;
        }
        Purpose::Logs {
            session_id,
            tail,
            follow,
        } => {
            let mut logs = platform
                .logs(&session_id, tail, follow)
                .await
                .context("cannot read the session's logs")?;
            let mut data = TokioIo::new(dial(identity, tunnel_id).await?);
            while let Some(Ok(chunk)) = logs.next().await {
                if data.write_all(&chunk).await.is_err() {
                    break;
                }
            }
            let _ = data.shutdown().await;
        }
    }
    Ok(())
}

/// Largest chunk moved in one write.
const CHUNK: usize = 64 * 1024;

/// Copies both ways until either side ends (RFB needs no half-close). Each
/// direction waits with a 1 KiB buffer, so an idle tunnel costs little.
async fn splice<A, B>(a: A, b: B)
where
    A: tokio::io::AsyncRead + tokio::io::AsyncWrite,
    B: tokio::io::AsyncRead + tokio::io::AsyncWrite,
{
    let (mut a_rx, mut a_tx) = tokio::io::split(a);
    let (mut b_rx, mut b_tx) = tokio::io::split(b);
    tokio::select! {
        _ = pump(&mut a_rx, &mut b_tx) => {}
        _ = pump(&mut b_rx, &mut a_tx) => {}
    }
}

async fn pump<R, W>(from: &mut R, to: &mut W)
where
    R: tokio::io::AsyncRead + Unpin,
    W: tokio::io::AsyncWrite + Unpin,
{
    while let Ok(Some(chunk)) = read_chunk(from, CHUNK).await {
        if to.write_all(&chunk).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

/// Opens the data channel for `tunnel_id`: HTTP/1.1 upgrade to a raw stream.
async fn dial(identity: &Identity, tunnel_id: &str) -> anyhow::Result<Upgraded> {
    let url = crate::endpoint(&identity.control_plane, &tunnel_path(tunnel_id), false);
    let host = url.host_str().context("control plane URL has no host")?;
    let port = url
        .port_or_known_default()
        .context("control plane URL has no port")?;
    let tcp = TcpStream::connect((host, port))
        .await
        .with_context(|| format!("cannot connect to the control plane at {host}:{port}"))?;
    tcp.set_nodelay(true)?;
    let stream: Box<dyn SessionStream> = if url.scheme() == "https" {
        let name = ServerName::try_from(host.to_owned()).context("invalid TLS server name")?;
        let tls = TlsConnector::from(crate::tls::client_config());
        Box::new(
            tls.connect(name, tcp)
                .await
                .context("TLS handshake failed")?,
        )
    } else {
        Box::new(tcp)
    };
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .context("HTTP handshake with the control plane failed")?;
    tokio::spawn(connection.with_upgrades());
    let authority = match url.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.to_owned(),
    };
    let request = Request::get(url.path())
        .header(header::HOST, authority)
        .header(header::CONNECTION, "upgrade")
        .header(header::UPGRADE, UPGRADE_PROTOCOL)
        .header(header::AUTHORIZATION, format!("Bearer {}", identity.secret))
        .body(Empty::<Bytes>::new())?;
    let response = sender.send_request(request).await?;
    if response.status() != StatusCode::SWITCHING_PROTOCOLS {
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        bail!(
            "control plane refused the tunnel ({status}): {}",
            crate::error_message(&String::from_utf8_lossy(&body))
        );
    }
    Ok(hyper::upgrade::on(response).await?)
}
