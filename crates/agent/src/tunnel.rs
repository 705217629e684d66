//! Data channels: for each tunnel the control plane asks for, dial the
//! session's port and a fresh connection back to the control plane, upgrade
//! the latter to a raw stream, and copy bytes both ways until either closes.

use crate::identity::Identity;
use crate::platform::{Platform, SessionStream};
use anyhow::{Context, bail};
use bytes::Bytes;
use http::{Request, StatusCode, header};
use http_body_util::{BodyExt, Empty};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use streamspace_protocol::tunnel::{UPGRADE_PROTOCOL, tunnel_path};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// Splices one tunnel. Errors before any byte flows are returned so the
/// caller can tell the control plane (and so the viewer) why.
pub async fn open(
    identity: &Identity,
    platform: &dyn Platform,
    tunnel_id: &str,
    session_id: &str,
    port: u16,
) -> anyhow::Result<()> {
    let mut session = platform
        .connect(session_id, port)
        .await
        .with_context(|| format!("cannot reach port {port} of the session"))?;
    let data = dial(identity, tunnel_id).await?;
    let mut data = TokioIo::new(data);
    // Errors after this point are ordinary disconnects (viewer closed).
    let _ = tokio::io::copy_bidirectional(&mut session, &mut data).await;
    Ok(())
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
