//! HTTP connection limits: slow, idle and too many clients, and HTTPS.
//! Timings are short here (seconds); every assertion waits with a generous
//! bound rather than measuring a delay.

use crate::fake_agent::{FakeAgent, enroll};
use crate::{Engine, TestApp, spawn_app_with};
use anyhow::{Context, bail, ensure};
use reqwest::StatusCode;
use std::net::SocketAddr;
use std::time::Duration;
use streamspace_server::config::{HttpLimits, TlsFiles};
use streamspace_testkit::tls::TestCa;
use streamspace_testkit::{Api, eventually};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout, timeout_at};

/// Far more than any limit below: what "promptly" and "eventually" allow.
const GENEROUS: Duration = Duration::from_secs(20);

pub(crate) fn limits(header_read_secs: u64, idle_secs: u64, max_connections: usize) -> HttpLimits {
    HttpLimits {
        header_read_timeout: Duration::from_secs(header_read_secs),
        idle_timeout: Duration::from_secs(idle_secs),
        max_connections,
        ..HttpLimits::default()
    }
}

async fn app_with(http: HttpLimits) -> TestApp {
    spawn_app_with(Engine::Sqlite, move |config| config.http = http, None).await
}

pub(crate) fn addr(app: &TestApp) -> SocketAddr {
    let host = app.url.host_str().unwrap_or("127.0.0.1");
    let port = app.url.port().unwrap_or(80);
    SocketAddr::new(host.parse().unwrap_or([127, 0, 0, 1].into()), port)
}

/// A connection that sent part of a request line and stopped.
async fn half_open(addr: SocketAddr) -> anyhow::Result<TcpStream> {
    let mut tcp = TcpStream::connect(addr).await?;
    tcp.write_all(b"GET /healthz HTT").await?;
    Ok(tcp)
}

/// Waits until the server closes `tcp` (end of stream or reset) before
/// `deadline`; fails on data or on time running out.
pub(crate) async fn dropped_by(tcp: &mut TcpStream, deadline: Instant) -> anyhow::Result<()> {
    let mut buf = [0u8; 512];
    match timeout_at(deadline, tcp.read(&mut buf)).await {
        Ok(Ok(0)) | Ok(Err(_)) => Ok(()),
        Ok(Ok(n)) => bail!(
            "the server answered instead: {:?}",
            String::from_utf8_lossy(&buf[..n])
        ),
        Err(_) => bail!("the connection is still open"),
    }
}

/// Sends one keep-alive request on `tcp` and returns the whole response.
async fn request(tcp: &mut TcpStream, path: &str, headers: &str) -> anyhow::Result<String> {
    let head = format!("GET {path} HTTP/1.1\r\nHost: test\r\n{headers}\r\n");
    tcp.write_all(head.as_bytes()).await?;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&got).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            let length = text[..end]
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse::<usize>())
                })
                .transpose()?;
            match length {
                Some(n) if got.len() >= end + 4 + n => return Ok(text),
                None => return Ok(text),
                Some(_) => {}
            }
        }
        let n = timeout(GENEROUS, tcp.read(&mut buf))
            .await
            .context("no response")??;
        if n == 0 {
            bail!("closed mid-response: {text:?}");
        }
        got.extend_from_slice(&buf[..n]);
    }
}

/// Reads what `tcp` holds; fails if the server has closed it.
async fn still_open(tcp: &mut TcpStream) -> anyhow::Result<()> {
    let mut buf = [0u8; 4096];
    loop {
        match timeout(Duration::from_millis(500), tcp.read(&mut buf)).await {
            Err(_) => return Ok(()),
            Ok(Ok(0)) | Ok(Err(_)) => bail!("the server closed the connection"),
            Ok(Ok(_)) => continue,
        }
    }
}

/// Waits until the server has closed every one of `stalled`.
pub(crate) async fn all_dropped(stalled: &mut [TcpStream]) -> anyhow::Result<()> {
    let deadline = Instant::now() + GENEROUS;
    for (i, tcp) in stalled.iter_mut().enumerate() {
        dropped_by(tcp, deadline)
            .await
            .with_context(|| format!("stalled connection {i}"))?;
    }
    Ok(())
}

/// `/healthz` answers, however full of stalled clients the cap is.
pub(crate) async fn healthz_gets_in(app: &TestApp) -> anyhow::Result<()> {
    let health = timeout(GENEROUS, Api::new(&app.url).text("/healthz"))
        .await
        .context("/healthz did not answer at the connection cap")??;
    ensure!(health == "ok", "{health}");
    Ok(())
}

/// An agent enrolls and connects, however full of stalled clients the cap
/// is, and is online.
pub(crate) async fn an_agent_gets_in(app: &TestApp) -> anyhow::Result<FakeAgent> {
    let (id, secret) = enroll(&app.admin, "reconnecting").await?;
    let agent = timeout(GENEROUS, FakeAgent::connect(&app.url, &id, &secret))
        .await
        .context("the agent could not connect at the connection cap")??;
    let agents = app.admin.agents().await?;
    ensure!(agents[0]["status"] == "online", "{agents:?}");
    Ok(agent)
}

pub(crate) fn dropped(reason: &str) -> String {
    format!("streamspace_http_connections_dropped_total{{reason=\"{reason}\"}}")
}

#[tokio::test]
async fn half_open_requests_are_evicted_while_healthz_and_agents_get_in() -> anyhow::Result<()> {
    // A header-read timeout far beyond the test: only eviction makes room,
    // however slowly the machine runs it.
    let app = app_with(limits(120, 120, 16)).await;
    let mut stalled = Vec::new();
    for _ in 0..40 {
        stalled.push(half_open(addr(&app)).await?);
    }
    // At the cap, with every slot held by a stalled client: newcomers
    // push the oldest of them out.
    healthz_gets_in(&app).await?;
    // Full of stalled clients again (the /healthz client has left), right
    // before the agent comes.
    for _ in 0..2 {
        stalled.push(half_open(addr(&app)).await?);
    }
    let agent = an_agent_gets_in(&app).await?;

    // The first 24 made room for the rest of the 40, then the newcomers.
    all_dropped(&mut stalled[..26]).await?;
    let evicted = app.admin.metric(&dropped("evicted")).await?;
    assert!(evicted >= 26.0, "{evicted} evicted");
    // The agent's channel, upgraded, was never a candidate.
    let agents = app.admin.agents().await?;
    assert_eq!(agents[0]["status"], "online", "{agents:?}");
    agent.close().await;
    Ok(())
}

#[tokio::test]
async fn an_idle_keep_alive_connection_outlives_the_header_timeout() -> anyhow::Result<()> {
    let app = app_with(limits(1, 60, 100)).await;
    let mut tcp = TcpStream::connect(addr(&app)).await?;
    let first = request(&mut tcp, "/healthz", "").await?;
    assert!(first.starts_with("HTTP/1.1 200"), "{first}");
    // Idle for twice the header-read timeout: the idle timeout governs.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let second = request(&mut tcp, "/healthz", "").await?;
    assert!(second.starts_with("HTTP/1.1 200"), "{second}");
    // Once a request starts, its head must be done within the header-read
    // timeout, long before the idle timeout.
    tcp.write_all(b"GET /hea").await?;
    dropped_by(&mut tcp, Instant::now() + GENEROUS).await?;
    assert!(app.admin.metric(&dropped("header_timeout")).await? >= 1.0);
    Ok(())
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout() -> anyhow::Result<()> {
    let app = app_with(limits(60, 1, 100)).await;
    let mut tcp = TcpStream::connect(addr(&app)).await?;
    let answer = request(&mut tcp, "/healthz", "").await?;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    dropped_by(&mut tcp, Instant::now() + GENEROUS).await?;
    assert!(app.admin.metric(&dropped("idle_timeout")).await? >= 1.0);
    Ok(())
}

#[tokio::test]
async fn at_the_cap_busy_requests_stay_and_a_newcomer_gets_503() -> anyhow::Result<()> {
    let app = app_with(limits(10, 60, 2)).await;
    let token = app.admin.token.clone().unwrap_or_default();
    let auth = format!("Authorization: Bearer {token}\r\n");
    // Two event streams: requests in progress, which are never evicted.
    let mut streams = Vec::new();
    for _ in 0..2 {
        let mut tcp = TcpStream::connect(addr(&app)).await?;
        tcp.write_all(format!("GET /api/v1/events HTTP/1.1\r\nHost: t\r\n{auth}\r\n").as_bytes())
            .await?;
        let mut head = [0u8; 12];
        tcp.read_exact(&mut head).await?;
        assert_eq!(&head, b"HTTP/1.1 200");
        streams.push(tcp);
    }
    let refused = Api::new(&app.url)
        .call(reqwest::Method::GET, "/healthz", None)
        .await?;
    assert_eq!(refused.status, StatusCode::SERVICE_UNAVAILABLE);
    let error = refused.body["error"].as_str().unwrap_or_default();
    assert!(error.contains("connections"), "{:?}", refused.body);
    // The streams are still open: once what was sent is read (the first
    // ping), reading waits for the next ping rather than finding the end.
    for tcp in &mut streams {
        still_open(tcp).await?;
    }
    streams.pop();
    eventually(GENEROUS, "a free slot", || async {
        let answer = Api::new(&app.url)
            .call(reqwest::Method::GET, "/healthz", None)
            .await?;
        Ok((answer.status == StatusCode::OK).then_some(()))
    })
    .await?;
    Ok(())
}

#[tokio::test]
async fn https_sends_hsts_and_its_handshake_is_under_the_header_timeout() -> anyhow::Result<()> {
    let ca = TestCa::new("connections")?;
    let app = https_app(&ca, limits(1, 60, 100)).await?;
    assert_eq!(app.url.scheme(), "https", "the default public URL");
    let client = reqwest::Client::builder()
        .tls_backend_preconfigured(rustls::ClientConfig::clone(&*ca.client_config()?))
        .build()?;
    let response = client.get(app.url.join("/healthz")?).send().await?;
    assert_eq!(response.status(), StatusCode::OK);
    let hsts = response
        .headers()
        .get("strict-transport-security")
        .context("no Strict-Transport-Security header")?;
    assert!(hsts.to_str()?.starts_with("max-age="), "{hsts:?}");

    // A client that never finishes its handshake is dropped like one that
    // never finishes its request head.
    let mut silent = TcpStream::connect(addr(&app)).await?;
    let mut partial = TcpStream::connect(addr(&app)).await?;
    partial
        .write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01])
        .await?;
    let deadline = Instant::now() + GENEROUS;
    dropped_by(&mut silent, deadline).await?;
    dropped_by(&mut partial, deadline).await?;
    assert!(app.admin.metric(&dropped("header_timeout")).await? >= 2.0);
    Ok(())
}

/// An app serving HTTPS with a certificate of `ca`, and its admin.
async fn https_app(ca: &TestCa, http: HttpLimits) -> anyhow::Result<TestApp> {
    let cert = ca.server_cert("server")?;
    let files = TlsFiles {
        cert: cert.cert.clone(),
        key: cert.key.clone(),
    };
    let configure = move |config: &mut streamspace_server::Config| {
        config.tls = Some(files);
        config.http = http;
    };
    Ok(spawn_app_with(Engine::Sqlite, configure, Some(ca.client_config()?)).await)
}

#[tokio::test]
async fn stalled_tls_handshakes_are_evicted_at_the_cap() -> anyhow::Result<()> {
    let ca = TestCa::new("handshakes")?;
    let app = https_app(&ca, limits(120, 120, 4)).await?;
    let mut silent = Vec::new();
    for _ in 0..4 {
        silent.push(TcpStream::connect(addr(&app)).await?);
    }
    let client = Api::with_tls(&app.url, ca.client_config()?)?;
    let health = timeout(GENEROUS, client.text("/healthz"))
        .await
        .context("/healthz did not answer at the connection cap")??;
    assert_eq!(health, "ok");
    dropped_by(&mut silent[0], Instant::now() + GENEROUS)
        .await
        .context("the oldest handshake")?;
    assert!(app.admin.metric(&dropped("evicted")).await? >= 1.0);
    Ok(())
}

/// A SIGHUP (a certificate renewal hook) can come the moment the server
/// is up: without a handler in place yet it would end the process, here
/// this test binary.
#[tokio::test]
async fn a_sighup_right_after_start_reloads_the_certificate() -> anyhow::Result<()> {
    let ca = TestCa::new("hangup")?;
    let cert = ca.server_cert("server")?;
    let dir = tempfile::tempdir()?;
    let config = streamspace_server::Config {
        listen: "127.0.0.1:0".parse()?,
        data_dir: dir.path().to_owned(),
        admin_password: Some(streamspace_testkit::ADMIN_PASSWORD.into()),
        tls: Some(TlsFiles {
            cert: cert.cert.clone(),
            key: cert.key.clone(),
        }),
        ..Default::default()
    };
    let app = streamspace_server::Application::build(config).await?;
    use rustix::process::{Signal, getpid, kill_process};
    kill_process(getpid(), Signal::HUP)?;
    let url = app.public_url().clone();
    let stop = tokio_util::sync::CancellationToken::new();
    let server = tokio::spawn(app.run_until_stopped(stop.clone()));
    let admin = Api::with_tls(&url, ca.client_config()?)?.as_admin().await?;
    let reloaded = r#"streamspace_tls_reloads_total{outcome="ok"}"#;
    eventually(GENEROUS, "the certificate reloaded", || async {
        Ok((admin.metric(reloaded).await? >= 1.0).then_some(()))
    })
    .await?;
    stop.cancel();
    server.await??;
    Ok(())
}
