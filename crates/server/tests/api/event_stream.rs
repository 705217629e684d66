//! `GET /api/v1/events` stays live behind reverse proxies: it tells them not
//! to buffer it (nginx obeys `X-Accel-Buffering: no`), and its first event,
//! a `ping` naming the ping interval, comes at once, so a client can tell a
//! live stream from one a proxy holds back.

use crate::{Engine, spawn_app};
use anyhow::Context;
use std::time::Duration;

#[tokio::test]
async fn event_stream_asks_proxies_not_to_buffer_and_pings_at_once() -> anyhow::Result<()> {
    let app = spawn_app(Engine::Sqlite).await;
    let mut response = reqwest::Client::new()
        .get(app.url.join("/api/v1/events")?)
        .bearer_auth(app.admin.token.as_deref().unwrap_or_default())
        .send()
        .await?;
    assert_eq!(response.status(), 200);
    let headers = response.headers();
    for (name, value) in [
        ("content-type", "text/event-stream"),
        ("cache-control", "no-cache"),
        ("x-accel-buffering", "no"),
    ] {
        assert_eq!(
            headers.get(name).and_then(|v| v.to_str().ok()),
            Some(value),
            "{name}"
        );
    }

    // Nothing else happens on this server, so the first event is the ping.
    let mut received = String::new();
    while !received.contains("\n\n") {
        let chunk = tokio::time::timeout(Duration::from_secs(2), response.chunk())
            .await
            .context("no event within 2 s")??
            .context("the stream ended")?;
        received.push_str(std::str::from_utf8(&chunk)?);
    }
    assert!(
        received.starts_with("event: ping\ndata: {\"interval_ms\":15000}\n\n"),
        "{received:?}"
    );
    Ok(())
}
