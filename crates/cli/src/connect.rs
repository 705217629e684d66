//! `streamspace connect`: a local TCP port for native VNC clients (TigerVNC,
//! Remmina, vncdotool). Each accepted connection becomes one `/vnc/{id}`
//! WebSocket to the control plane.

use crate::client::Client;
use crate::control_plane::ControlPlaneArgs;
use anyhow::{Context, bail};
use bytes::BytesMut;
use clap::Args;
use futures::{SinkExt, StreamExt};
use std::net::SocketAddr;
use streamspace_agent::{ClientTls, explain_tls_error};
use streamspace_protocol::SessionId;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::Connector;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_util::sync::CancellationToken;
use url::Url;

#[derive(Args, Debug)]
pub struct ConnectArgs {
    /// The session to connect to.
    session_id: SessionId,
    /// Local address VNC clients connect to.
    #[arg(long, default_value = "127.0.0.1:5901")]
    listen: SocketAddr,
    #[command(flatten)]
    control_plane: ControlPlaneArgs,
}

pub async fn run(args: ConnectArgs) -> anyhow::Result<()> {
    let client = args.control_plane.client()?;
    let session = check_session(&client, &args.session_id).await?;
    if session["phase"] != "Running" {
        eprintln!(
            "note: the session is {} right now; connections work once it is Running",
            session["phase"].as_str().unwrap_or("not running")
        );
    }
    let listener = listen(args.listen).await?;
    let local = listener.local_addr()?;
    println!(
        "Session {} is reachable at {local}: point a VNC client at it (e.g. vncviewer {}::{})",
        args.session_id,
        local.ip(),
        local.port()
    );
    serve(
        listener,
        &client,
        &args.session_id,
        crate::shutdown::on_signal(),
    )
    .await;
    Ok(())
}

pub async fn listen(address: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(address)
        .await
        .with_context(|| format!("cannot listen on {address}"))
}

/// Bridges every connection `listener` accepts to the session's `/vnc`
/// WebSocket, until `stop`.
pub async fn serve(
    listener: TcpListener,
    client: &Client,
    session_id: &SessionId,
    stop: CancellationToken,
) {
    let url = vnc_url(&client.server, session_id);
    loop {
        let (socket, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    eprintln!("cannot accept a connection: {err}");
                    continue;
                }
            },
            _ = stop.cancelled() => return,
        };
        let (url, token, tls) = (url.clone(), client.token.clone(), client.tls.clone());
        tokio::spawn(async move {
            if let Err(err) = bridge(socket, &url, &token, &tls).await {
                eprintln!("connection from {peer}: {err:#}");
            }
        });
    }
}

/// The session, failing early with the control plane's reason if it cannot
/// be reached (unknown, not ours, bad token).
pub async fn check_session(
    client: &Client,
    session_id: &SessionId,
) -> anyhow::Result<serde_json::Value> {
    client.get(&format!("/api/v1/sessions/{session_id}")).await
}

fn vnc_url(server: &Url, session_id: &SessionId) -> Url {
    let mut url = server.clone();
    let scheme = if server.scheme() == "https" {
        "wss"
    } else {
        "ws"
    };
    let _ = url.set_scheme(scheme);
    url.set_path(&format!("/vnc/{session_id}"));
    url
}

async fn bridge(client: TcpStream, url: &Url, token: &str, tls: &ClientTls) -> anyhow::Result<()> {
    client.set_nodelay(true)?;
    let mut request = url.as_str().into_client_request()?;
    request.headers_mut().insert(
        http::header::AUTHORIZATION,
        format!("Bearer {token}").parse()?,
    );
    let connector = Some(Connector::Rustls(tls.config()));
    let connecting =
        tokio_tungstenite::connect_async_tls_with_config(request, None, true, connector);
    let ws = match connecting.await {
        Ok((ws, _)) => ws,
        Err(tungstenite::Error::Http(response)) => {
            let body = response.body().as_deref().unwrap_or_default();
            let body: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
            bail!(
                "{}: {}",
                response.status(),
                body["error"].as_str().unwrap_or("refused")
            );
        }
        Err(err) => {
            return Err(explain_tls_error(
                anyhow::Error::new(err).context("cannot open the VNC WebSocket"),
            ));
        }
    };
    let (mut ws_tx, mut ws_rx) = ws.split();
    let (mut tcp_rx, mut tcp_tx) = client.into_split();

    let upstream = async {
        let mut buf = BytesMut::with_capacity(64 * 1024);
        loop {
            buf.reserve(64 * 1024);
            match tcp_rx.read_buf(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    if ws_tx
                        .send(Message::Binary(buf.split().freeze()))
                        .await
                        .is_err()
                    {
                        break;
                    }
                }
            }
        }
        let _ = ws_tx.close().await;
    };
    let downstream = async {
        while let Some(Ok(message)) = ws_rx.next().await {
            let data = match message {
                Message::Binary(data) => data,
                Message::Close(_) => break,
                _ => continue,
            };
            if tcp_tx.write_all(&data).await.is_err() {
                break;
            }
        }
        let _ = tcp_tx.shutdown().await;
    };
    tokio::select! {
        _ = upstream => {}
        _ = downstream => {}
    }
    Ok(())
}
