//! Open streams end with the login behind them, within a second: a demoted
//! admin's event stream, a deleted admin's view of someone's desktop, and a
//! logged-out user's event, VNC and log streams. The agent here is a fake
//! that opens real data channels and keeps them open, so nothing but the
//! revocation can end the streams.

use crate::fake_agent::{FakeAgent, enroll};
use crate::{TestApp, on_both_engines};
use anyhow::{Context, bail, ensure};
use reqwest::{Method, StatusCode};
use serde_json::json;
use std::time::Duration;
use streamspace_protocol::tunnel::{UPGRADE_PROTOCOL, tunnel_path};
use streamspace_protocol::{ServerMessage, TunnelId, UserId};
use streamspace_server::store::Store;
use streamspace_testkit::Api;
use streamspace_testkit::rfb::VncSocket;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout};

/// How soon a revoked login's streams must end.
const WITHIN: Duration = Duration::from_secs(1);
/// How long a stream that should stay open is watched.
const STAYS_OPEN: Duration = Duration::from_millis(1500);

/// A response body read chunk by chunk (server-sent events, followed logs).
pub(crate) struct Streamed(reqwest::Response);

impl Streamed {
    pub(crate) async fn get(api: &Api, path: &str) -> anyhow::Result<Self> {
        let response = Self::open(api, path).await?;
        ensure!(
            response.status() == StatusCode::OK,
            "GET {path}: {}",
            response.status()
        );
        Ok(Streamed(response))
    }

    /// GET `path` as `api`'s user, on a client of its own: its answer,
    /// whatever the status.
    pub(crate) async fn open(api: &Api, path: &str) -> anyhow::Result<reqwest::Response> {
        Ok(reqwest::Client::new()
            .get(api.base.join(path)?)
            .bearer_auth(api.token.as_deref().unwrap_or_default())
            .send()
            .await?)
    }

    /// Reads until `text` has arrived.
    pub(crate) async fn expect(&mut self, text: &str) -> anyhow::Result<()> {
        let mut seen = String::new();
        while !seen.contains(text) {
            let chunk = timeout(Duration::from_secs(5), self.0.chunk())
                .await
                .with_context(|| format!("no {text:?} within 5 s; got {seen:?}"))??
                .with_context(|| format!("the stream ended before {text:?}"))?;
            seen.push_str(&String::from_utf8_lossy(&chunk));
        }
        Ok(())
    }

    /// Waits for the end of the body; how long it took.
    pub(crate) async fn ends_within(&mut self, limit: Duration) -> anyhow::Result<Duration> {
        let start = Instant::now();
        loop {
            match timeout(limit.saturating_sub(start.elapsed()), self.0.chunk()).await {
                Err(_) => bail!("the stream was still open after {limit:?}"),
                Ok(Ok(Some(_))) => continue,
                Ok(Ok(None)) | Ok(Err(_)) => return Ok(start.elapsed()),
            }
        }
    }

    /// Open for [`STAYS_OPEN`]: what arrives meanwhile (pings, events) is
    /// fine, an end is not.
    async fn stays_open(&mut self) -> anyhow::Result<()> {
        let start = Instant::now();
        loop {
            match timeout(STAYS_OPEN.saturating_sub(start.elapsed()), self.0.chunk()).await {
                Err(_) => return Ok(()),
                Ok(Ok(Some(_))) => continue,
                Ok(ended) => bail!("the stream should be open, but it ended: {ended:?}"),
            }
        }
    }
}

/// Creates `username` with `role`; returns (id, their logged-in client).
pub(crate) async fn user(
    app: &TestApp,
    username: &str,
    role: &str,
) -> anyhow::Result<(String, Api)> {
    crate::revocation::new_user(app, &app.admin, username, role).await
}

async fn a_demoted_admins_event_stream_closes(app: TestApp) -> anyhow::Result<()> {
    let (boss_id, boss) = user(&app, "boss", "admin").await?;
    let mut events = Streamed::get(&boss, "/api/v1/events").await?;
    // The stream is live: an agent coming online is news only admins get.
    let (agent_id, secret) = enroll(&app.admin, "a").await?;
    let _agent = FakeAgent::connect(&app.url, &agent_id, &secret).await?;
    events.expect("event: agent").await?;

    let demote = json!({"role": "user"});
    let path = format!("/api/v1/users/{boss_id}");
    app.admin
        .expect(Method::PUT, &path, Some(demote), StatusCode::OK)
        .await?;
    let took = events.ends_within(WITHIN).await?;
    println!("the demoted admin's event stream ended {took:?} after the demotion");
    let me = boss
        .expect(Method::GET, "/api/v1/users/me", None, StatusCode::OK)
        .await?;
    assert_eq!(me["role"], "user", "demotion does not log out");
    Ok(())
}

async fn logout_ends_only_that_logins_event_stream(app: TestApp) -> anyhow::Result<()> {
    let (_, one) = user(&app, "alice", "user").await?;
    let two = Api::login(&app.url, "alice", "password-123").await?;
    let mut ending = Streamed::get(&one, "/api/v1/events").await?;
    let mut staying = Streamed::get(&two, "/api/v1/events").await?;
    one.expect(
        Method::POST,
        "/api/v1/auth/logout",
        None,
        StatusCode::NO_CONTENT,
    )
    .await?;
    ending.ends_within(WITHIN).await?;
    staying.stays_open().await?;
    Ok(())
}

/// Asks the fake agent for the next data channel the control plane wants.
pub(crate) async fn next_channel(agent: &mut FakeAgent) -> anyhow::Result<TunnelId> {
    loop {
        match agent.recv().await? {
            ServerMessage::OpenTunnel { tunnel_id, .. }
            | ServerMessage::OpenLogs { tunnel_id, .. } => return Ok(tunnel_id),
            _ => continue,
        }
    }
}

/// Opens the data channel for `tunnel_id` as the agent does: an HTTP/1.1
/// upgrade with its secret, then raw bytes.
pub(crate) async fn data_channel(
    app: &TestApp,
    secret: &str,
    tunnel_id: &TunnelId,
) -> anyhow::Result<TcpStream> {
    let host = format!(
        "{}:{}",
        app.url.host_str().unwrap_or("127.0.0.1"),
        app.url.port().unwrap_or(80)
    );
    let mut tcp = TcpStream::connect(&host).await?;
    let request = format!(
        "GET {} HTTP/1.1\r\nhost: {host}\r\nauthorization: Bearer {secret}\r\n\
         connection: upgrade\r\nupgrade: {UPGRADE_PROTOCOL}\r\n\r\n",
        tunnel_path(tunnel_id)
    );
    tcp.write_all(request.as_bytes()).await?;
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        ensure!(head.len() < 4096, "no end to the response head");
        head.push(tcp.read_u8().await?);
    }
    ensure!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    Ok(tcp)
}

/// A viewer on `session_id` as `api`'s user, through a data channel the
/// fake agent opens and answers with an RFB banner. The channel is
/// returned too: dropping it would end the tunnel.
pub(crate) async fn view(
    app: &TestApp,
    agent: &mut FakeAgent,
    session_id: &str,
    api: &Api,
) -> anyhow::Result<(VncSocket, TcpStream)> {
    let (base, id) = (app.url.clone(), session_id.to_owned());
    let token = api.token.clone().unwrap_or_default();
    let viewer = tokio::spawn(async move { VncSocket::connect(&base, &id, &token, &[]).await });
    let tunnel_id = next_channel(agent).await?;
    let mut channel = data_channel(app, &agent.secret, &tunnel_id).await?;
    channel.write_all(b"RFB 003.008\n").await?;
    let mut vnc = viewer
        .await?
        .map_err(|r| anyhow::anyhow!("/vnc refused: {} {}", r.status, r.error))?;
    assert_eq!(vnc.banner().await?, "RFB 003.008\n");
    Ok((vnc, channel))
}

async fn closes_within(vnc: &mut VncSocket, limit: Duration) -> anyhow::Result<Duration> {
    let start = Instant::now();
    match timeout(limit, vnc.read_exact(1)).await {
        Err(_) => bail!("the viewer was still connected after {limit:?}"),
        Ok(Ok(byte)) => bail!("the viewer got {byte:?} instead of the end"),
        Ok(Err(_)) => Ok(start.elapsed()),
    }
}

async fn stays_connected(vnc: &mut VncSocket) -> anyhow::Result<()> {
    match timeout(STAYS_OPEN, vnc.read_exact(1)).await {
        Err(_) => Ok(()),
        Ok(read) => bail!("the viewer should stay connected, got {read:?}"),
    }
}

async fn deleted_or_logged_out_viewers_lose_vnc_and_logs(app: TestApp) -> anyhow::Result<()> {
    app.admin
        .create_template(json!({"name": "desktop", "image": "streamspace/desktop:local"}))
        .await?;
    let (agent_id, secret) = enroll(&app.admin, "a").await?;
    let mut agent = FakeAgent::connect(&app.url, &agent_id, &secret).await?;
    let (_, alice) = user(&app, "alice", "user").await?;
    let session = agent
        .run_session(&alice, json!({"template": "desktop"}))
        .await?;
    let (boss_id, boss) = user(&app, "boss", "admin").await?;
    let (mut watched_by_boss, _boss_channel) = view(&app, &mut agent, &session, &boss).await?;
    let (mut own_view, _own_channel) = view(&app, &mut agent, &session, &alice).await?;

    let logs_path = format!("/api/v1/sessions/{session}/logs?follow=true");
    let logs = tokio::spawn({
        let alice = alice.clone();
        async move { Streamed::get(&alice, &logs_path).await }
    });
    let tunnel_id = next_channel(&mut agent).await?;
    let mut logs_channel = data_channel(&app, &secret, &tunnel_id).await?;
    logs_channel.write_all(b"desktop started\n").await?;
    let mut logs = logs.await??;
    logs.expect("desktop started").await?;

    // Deleting the admin who watches alice's desktop cuts them off…
    app.admin
        .expect(
            Method::DELETE,
            &format!("/api/v1/users/{boss_id}"),
            None,
            StatusCode::NO_CONTENT,
        )
        .await?;
    let took = closes_within(&mut watched_by_boss, WITHIN).await?;
    println!("the deleted admin's VNC stream closed {took:?} after the deletion");
    // …and leaves alice's own view alone.
    stays_connected(&mut own_view).await?;

    // Logging out ends alice's VNC and log streams.
    alice
        .expect(
            Method::POST,
            "/api/v1/auth/logout",
            None,
            StatusCode::NO_CONTENT,
        )
        .await?;
    closes_within(&mut own_view, WITHIN).await?;
    logs.ends_within(WITHIN).await?;
    Ok(())
}

on_both_engines!(
    a_demoted_admins_event_stream_closes,
    logout_ends_only_that_logins_event_stream,
    deleted_or_logged_out_viewers_lose_vnc_and_logs,
);

/// Another replica ending a login (here: the token deleted from the shared
/// database, with nothing said on this replica's bus) ends the stream at the
/// next periodic re-check.
async fn a_revocation_on_another_replica_ends_the_stream_at_the_next_check(
    app: TestApp,
) -> anyhow::Result<()> {
    let (alice_id, alice) = user(&app, "alice", "user").await?;
    let other_replica = Store::connect(&app.database_url).await?;
    let mut events = Streamed::get(&alice, "/api/v1/events").await?;
    // The stream also checks its login once as it opens. Deleted before
    // that check ran, the token would end the stream without the timer, so
    // wait for the stream's first ping and then far longer than that one
    // read of the store takes: only a periodic re-check can end it now.
    events.expect("event: ping").await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    other_replica
        .delete_user_tokens(&UserId::from(&alice_id), None)
        .await?;
    let took = events.ends_within(Duration::from_secs(3)).await?;
    println!("revoked elsewhere: the stream ended {took:?} later (re-checked every 300 ms)");
    other_replica.close().await;
    Ok(())
}

mod elsewhere {
    use super::*;
    use crate::{Engine, spawn_app_with};

    fn quick(config: &mut streamspace_server::Config) {
        config.revalidate_interval = Duration::from_millis(300);
    }

    #[tokio::test]
    async fn sqlite() -> anyhow::Result<()> {
        let app = spawn_app_with(Engine::Sqlite, quick, None).await;
        a_revocation_on_another_replica_ends_the_stream_at_the_next_check(app).await
    }

    #[tokio::test]
    async fn postgres() -> anyhow::Result<()> {
        let app = spawn_app_with(Engine::Postgres, quick, None).await;
        a_revocation_on_another_replica_ends_the_stream_at_the_next_check(app).await
    }
}
