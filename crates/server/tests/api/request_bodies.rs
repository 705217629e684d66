//! Request bodies: a body that stops or trickles runs out of time (408),
//! a connection waiting for one is evicted at the cap like a stalled head,
//! and routes anyone may call take small bodies only.

use crate::connections::{addr, all_dropped, an_agent_gets_in, dropped, healthz_gets_in, limits};
use crate::{Engine, TestApp, spawn_app_with};
use anyhow::{Context, bail, ensure};
use reqwest::{Method, StatusCode};
use serde_json::json;
use std::net::SocketAddr;
use std::time::Duration;
use streamspace_server::config::HttpLimits;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout};

/// Far more than any limit below.
const GENEROUS: Duration = Duration::from_secs(20);

/// An app whose request bodies must arrive within `body_secs`, and whose
/// other timeouts are far beyond the test.
async fn app_with(body_secs: u64, max_connections: usize) -> TestApp {
    let http = HttpLimits {
        body_read_timeout: Duration::from_secs(body_secs),
        ..limits(120, 120, max_connections)
    };
    spawn_app_with(Engine::Sqlite, move |config| config.http = http, None).await
}

/// A login whose body never completes: the head, then all but the last
/// byte, sent once the server has begun reading the body (it answers
/// `100 Continue` then), so the request is surely past its head.
async fn stalled_login(addr: SocketAddr) -> anyhow::Result<TcpStream> {
    let body = br#"{"username":"admin","password":"not-the-password"}"#;
    let mut tcp = TcpStream::connect(addr).await?;
    let head = format!(
        "POST /api/v1/auth/login HTTP/1.1\r\nHost: t\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nexpect: 100-continue\r\n\r\n",
        body.len()
    );
    tcp.write_all(head.as_bytes()).await?;
    let interim = read_head(&mut tcp).await?;
    ensure!(interim.starts_with("HTTP/1.1 100"), "{interim}");
    tcp.write_all(&body[..body.len() - 1]).await?;
    Ok(tcp)
}

/// Reads a response head, byte by byte (nothing past it is taken).
async fn read_head(tcp: &mut TcpStream) -> anyhow::Result<String> {
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        ensure!(head.len() < 16 * 1024, "no end to the response head");
        let byte = timeout(GENEROUS, tcp.read_u8())
            .await
            .context("no answer")??;
        head.push(byte);
    }
    Ok(String::from_utf8_lossy(&head).into_owned())
}

/// Everything until the server closes the connection (with a reset when
/// it left bytes unread, after what it sent).
async fn read_rest(tcp: &mut TcpStream) -> anyhow::Result<String> {
    let mut rest = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + GENEROUS;
    while let Ok(n) = tokio::time::timeout_at(deadline, tcp.read(&mut buf))
        .await
        .context("the connection stayed open")?
    {
        if n == 0 {
            break;
        }
        rest.extend_from_slice(&buf[..n]);
    }
    Ok(String::from_utf8_lossy(&rest).into_owned())
}

/// POSTs `body` as JSON on a connection of its own (a refusal may close it
/// before reading the body, which would reset a pooled client's request);
/// the answer's head and body.
async fn post(
    addr: SocketAddr,
    path: &str,
    body: &serde_json::Value,
) -> anyhow::Result<(String, String)> {
    let body = body.to_string();
    let mut tcp = TcpStream::connect(addr).await?;
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: t\r\ncontent-type: application/json\r\n\
         connection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    tcp.write_all(request.as_bytes()).await?;
    let head = read_head(&mut tcp).await?;
    Ok((head, read_rest(&mut tcp).await?))
}

#[tokio::test]
async fn stalled_bodies_at_the_cap_make_room_for_healthz_and_agents() -> anyhow::Result<()> {
    // Timeouts far beyond the test: only eviction can make room.
    let app = app_with(120, 8).await;
    let mut stalled = Vec::new();
    for _ in 0..8 {
        stalled.push(stalled_login(addr(&app)).await?);
    }
    healthz_gets_in(&app).await?;
    // Full of stalled bodies again, right before the agent comes.
    for _ in 0..2 {
        stalled.push(stalled_login(addr(&app)).await?);
    }
    let agent = an_agent_gets_in(&app).await?;

    // The oldest were evicted, without an answer.
    all_dropped(&mut stalled[..2]).await?;
    assert!(app.admin.metric(&dropped("evicted")).await? >= 2.0);
    agent.close().await;
    Ok(())
}

#[tokio::test]
async fn a_body_trickled_past_the_body_timeout_gets_408() -> anyhow::Result<()> {
    let app = app_with(1, 100).await;
    let mut tcp = TcpStream::connect(addr(&app)).await?;
    let request = "POST /api/v1/auth/login HTTP/1.1\r\nHost: t\r\n\
                   content-type: application/json\r\ncontent-length: 1000\r\n\r\n";
    tcp.write_all(request.as_bytes()).await?;
    // A byte at a time, each well within any gap timeout, for longer than
    // the body-read timeout in all, until the answer comes.
    let started = Instant::now();
    loop {
        match timeout(Duration::from_millis(200), tcp.readable()).await {
            Ok(ready) => break ready?,
            Err(_) => {
                ensure!(started.elapsed() < GENEROUS, "no answer to a trickled body");
                // Once the server has answered, it may refuse more.
                let _ = tcp.write_all(b" ").await;
            }
        }
    }
    let head = read_head(&mut tcp).await?;
    assert!(head.starts_with("HTTP/1.1 408"), "{head}");
    let body = read_rest(&mut tcp).await?;
    assert!(body.contains("did not arrive within 1s"), "{body}");
    assert!(app.admin.metric(&dropped("body_timeout")).await? >= 1.0);
    Ok(())
}

#[tokio::test]
async fn routes_anyone_may_call_take_small_bodies() -> anyhow::Result<()> {
    let app = app_with(30, 100).await;
    let big = "x".repeat(17 * 1024);
    for (path, body) in [
        (
            "/api/v1/auth/login",
            json!({"username": "admin", "password": big}),
        ),
        (
            "/api/v1/agents/register",
            json!({"enrollment_token": big, "name": "a", "platform": "docker"}),
        ),
    ] {
        let (head, answer) = post(addr(&app), path, &body).await?;
        assert!(head.starts_with("HTTP/1.1 413"), "{path}: {head}");
        let answer: serde_json::Value = serde_json::from_str(&answer)?;
        let error = answer["error"].as_str().unwrap_or_default();
        assert!(error.contains("16 KiB"), "{path}: {error}");
    }
    // A body announced too large is refused before it is sent.
    let mut tcp = TcpStream::connect(addr(&app)).await?;
    let head = "POST /api/v1/auth/login HTTP/1.1\r\nHost: t\r\n\
                content-type: application/json\r\ncontent-length: 1048575\r\n\r\n";
    tcp.write_all(head.as_bytes()).await?;
    let answer = read_head(&mut tcp).await?;
    if !answer.starts_with("HTTP/1.1 413") {
        bail!("{answer}");
    }
    // Logged-in routes keep the 1 MiB limit.
    let template = json!({"name": "big", "image": "x", "description": big});
    let answer = app
        .admin
        .call(Method::POST, "/api/v1/templates", Some(template))
        .await?;
    assert_ne!(answer.status, StatusCode::PAYLOAD_TOO_LARGE, "{answer:?}");
    Ok(())
}
