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
use streamspace_protocol::files::{FileOp, FilesFolder};
use streamspace_protocol::tunnel::{UPGRADE_PROTOCOL, read_chunk, tunnel_path};
use streamspace_protocol::{SessionId, TunnelId};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// What a data channel carries.
#[derive(Debug, Clone)]
pub enum Purpose {
    /// Both directions of a session's TCP port (VNC, a web app), through
    /// TLS to the port when `tls`.
    Port {
        session_id: SessionId,
        port: u16,
        tls: bool,
    },
    /// The session's console output, one way.
    Logs {
        session_id: SessionId,
        tail: Option<u32>,
        follow: bool,
    },
    /// One file operation in the session's files folder (`files.rs`).
    Files {
        session_id: SessionId,
        folder: FilesFolder,
        op: FileOp,
    },
}

/// Runs one data channel. Errors before any byte flows are returned so the
/// caller can tell the control plane (and so the viewer) why; errors after
/// that are ordinary disconnects (the viewer closed).
pub async fn open(
    identity: &Identity,
    platform: &dyn Platform,
    tunnel_id: &TunnelId,
    purpose: Purpose,
) -> anyhow::Result<()> {
    match purpose {
        Purpose::Port {
            session_id,
            port,
            tls,
        } => {
            let session = crate::web::open(platform, &session_id, port, tls)
                .await
                .with_context(|| format!("cannot reach port {port} of the session"))?;
            let data = dial(identity, tunnel_id).await?;
            relay(session, data).await;
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
        Purpose::Files {
            session_id,
            folder,
            op,
        } => {
            let data = TokioIo::new(dial(identity, tunnel_id).await?);
            crate::files::serve(platform, &session_id, &folder, op, data).await;
        }
    }
    Ok(())
}

/// Largest chunk moved in one write.
const CHUNK: usize = 64 * 1024;

/// Moves bytes between the session and the data channel: in the kernel when
/// both are plain TCP sockets (the usual case: a Docker session and a
/// control plane without TLS), else through user space.
async fn relay(session: Box<dyn SessionStream>, data: Upgraded) {
    #[cfg(target_os = "linux")]
    let (session, data) = match zero_copy(session, data).await {
        Ok(()) => return,
        Err(ends) => ends,
    };
    splice(session, TokioIo::new(data)).await;
}

/// Splices both TCP ends in the kernel; gives them back when either is not
/// plain TCP or no pipes can be had.
#[cfg(target_os = "linux")]
async fn zero_copy(
    session: Box<dyn SessionStream>,
    data: Upgraded,
) -> Result<(), (Box<dyn SessionStream>, Upgraded)> {
    use streamspace_splice::Pipes;
    if !is_tcp(session.as_ref()) {
        return Err((session, data));
    }
    let pipes = match Pipes::new() {
        Ok(pipes) => pipes,
        Err(err) => {
            tracing::debug!(error = %err, "no pipes for a zero-copy tunnel: copying");
            return Err((session, data));
        }
    };
    let parts = match data.downcast::<TokioIo<TcpStream>>() {
        Ok(parts) => parts,
        Err(data) => return Err((session, data)),
    };
    let (Ok(mut session), data) = (
        session.into_any().downcast::<TcpStream>(),
        parts.io.into_inner(),
    ) else {
        return Ok(());
    };
    // Bytes the HTTP client read past the upgrade response come first.
    let ahead = parts.read_buf;
    if !ahead.is_empty() && session.write_all(&ahead).await.is_err() {
        return Ok(());
    }
    // It shares hyper's whole read buffer: not for the tunnel's lifetime.
    drop(ahead);
    pipes.splice(&session, &data).await;
    Ok(())
}

/// Whether a session stream is a plain TCP socket. Takes the trait object,
/// not the box: the box is a `SessionStream` of its own.
#[cfg(target_os = "linux")]
fn is_tcp(session: &dyn SessionStream) -> bool {
    session.as_any().is::<TcpStream>()
}

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
async fn dial(identity: &Identity, tunnel_id: &TunnelId) -> anyhow::Result<Upgraded> {
    let url = crate::endpoint(&identity.control_plane, &tunnel_path(tunnel_id), false);
    let host = url.host_str().context("control plane URL has no host")?;
    let port = url
        .port_or_known_default()
        .context("control plane URL has no port")?;
    let tcp = TcpStream::connect((host, port))
        .await
        .with_context(|| format!("cannot connect to the control plane at {host}:{port}"))?;
    tcp.set_nodelay(true)?;
    let request = upgrade_request(identity, &url, host)?;
    if url.scheme() == "https" {
        let name = ServerName::try_from(host.to_owned()).context("invalid TLS server name")?;
        let tls = TlsConnector::from(identity.tls.config());
        let stream = tls
            .connect(name, tcp)
            .await
            .context("TLS handshake with the control plane failed")
            .map_err(crate::tls::explain)?;
        upgrade(stream, request).await
    } else {
        // A concrete TcpStream, so the tunnel can splice it.
        upgrade(tcp, request).await
    }
}

fn upgrade_request(
    identity: &Identity,
    url: &url::Url,
    host: &str,
) -> anyhow::Result<Request<Empty<Bytes>>> {
    let authority = match url.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.to_owned(),
    };
    Ok(Request::get(url.path())
        .header(header::HOST, authority)
        .header(header::CONNECTION, "upgrade")
        .header(header::UPGRADE, UPGRADE_PROTOCOL)
        .header(header::AUTHORIZATION, format!("Bearer {}", identity.secret))
        .body(Empty::<Bytes>::new())?)
}

/// HTTP/1.1 upgrade of `stream` to the raw tunnel protocol.
async fn upgrade<S: SessionStream + 'static>(
    stream: S,
    request: Request<Empty<Bytes>>,
) -> anyhow::Result<Upgraded> {
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .context("HTTP handshake with the control plane failed")?;
    tokio::spawn(connection.with_upgrades());
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

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_boxed_tcp_socket_is_recognised_for_zero_copy() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let tcp = TcpStream::connect(listener.local_addr().expect("addr"))
            .await
            .expect("connect");
        let session: Box<dyn SessionStream> = Box::new(tcp);
        assert!(is_tcp(session.as_ref()));
        assert!(session.into_any().downcast::<TcpStream>().is_ok());
        let (duplex, _) = tokio::io::duplex(64);
        let other: Box<dyn SessionStream> = Box::new(duplex);
        assert!(!is_tcp(other.as_ref()));
    }
}
