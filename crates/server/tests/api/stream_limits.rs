//! Long-lived streams: each user's budget of event, log and VNC streams,
//! the zero-copy path of plain tunnels, and streams at shutdown. The agent
//! is the fake that opens real data channels (see `revoked_streams.rs`).

use crate::fake_agent::{FakeAgent, enroll};
use crate::revoked_streams::{Streamed, data_channel, next_channel, user, view};
use crate::{Engine, TestApp, spawn_app_with};
use anyhow::{Context, ensure};
use reqwest::StatusCode;
use serde_json::json;
use std::time::Duration;
use streamspace_testkit::rfb::VncSocket;
use streamspace_testkit::{Api, eventually};
use tokio::io::AsyncWriteExt;

/// Far more than anything here should take.
const GENEROUS: Duration = Duration::from_secs(20);

/// An app whose users may each have `max` streams open.
async fn app_with_budget(max: usize) -> TestApp {
    spawn_app_with(Engine::Sqlite, |c| c.max_streams_per_user = max, None).await
}

/// A desktop of `owner` on a fake agent that opens data channels.
async fn desktop(app: &TestApp, owner: &Api) -> anyhow::Result<(FakeAgent, String)> {
    app.admin
        .create_template(json!({"name": "desktop", "image": "streamspace/desktop:local"}))
        .await?;
    let (agent_id, secret) = enroll(&app.admin, "a").await?;
    let mut agent = FakeAgent::connect(&app.url, &agent_id, &secret).await?;
    let session = agent
        .run_session(owner, json!({"template": "desktop"}))
        .await?;
    Ok((agent, session))
}

/// GET `path` as `api`'s user, which must be refused with 429: what
/// `Retry-After` and the error say.
async fn over_budget(api: &Api, path: &str) -> anyhow::Result<(u64, String)> {
    let response = Streamed::open(api, path).await?;
    ensure!(
        response.status() == StatusCode::TOO_MANY_REQUESTS,
        "GET {path}: {}",
        response.status()
    );
    let retry_after = response
        .headers()
        .get("retry-after")
        .context("no Retry-After")?
        .to_str()?
        .parse()?;
    let body: serde_json::Value = response.json().await?;
    let error = body["error"].as_str().context("no error")?.to_owned();
    Ok((retry_after, error))
}

/// An event stream of `api`'s user opens, now or within the bound (a
/// closed stream gives its place back when the server sees it gone).
async fn an_event_stream_gets_in(api: &Api) -> anyhow::Result<()> {
    eventually(GENEROUS, "a place for an event stream", || async {
        let answer = Streamed::get(api, "/api/v1/events").await;
        Ok(answer.is_ok().then_some(()))
    })
    .await
}

#[tokio::test]
async fn a_user_has_a_budget_of_streams_shared_by_events_logs_and_vnc() -> anyhow::Result<()> {
    let app = app_with_budget(3).await;
    let (_, alice) = user(&app, "alice", "user").await?;
    let (mut agent, session) = desktop(&app, &alice).await?;
    let mut first = Streamed::get(&alice, "/api/v1/events").await?;
    first.expect("event: ping").await?;
    let _second = Streamed::get(&alice, "/api/v1/events").await?;
    let (_viewer, _channel) = view(&app, &mut agent, &session, &alice).await?;

    for path in [
        "/api/v1/events".to_owned(),
        format!("/api/v1/sessions/{session}/logs?follow=true"),
    ] {
        let (retry_after, error) = over_budget(&alice, &path).await?;
        assert!(retry_after >= 1, "{path}: Retry-After {retry_after}");
        assert!(error.contains("3 live streams"), "{path}: {error}");
    }
    let token = alice.token.clone().unwrap_or_default();
    let refused = VncSocket::connect(&app.url, &session, &token, &[])
        .await
        .err()
        .context("a fourth stream, a viewer, was let in")?;
    assert_eq!(refused.status, 429, "{}", refused.error);

    // Another user's budget is their own.
    let (_, bob) = user(&app, "bob", "user").await?;
    let _bobs = Streamed::get(&bob, "/api/v1/events").await?;

    // A closed stream gives its place back.
    drop(first);
    an_event_stream_gets_in(&alice).await?;
    Ok(())
}

#[tokio::test]
async fn followed_logs_hold_a_place_until_their_client_leaves() -> anyhow::Result<()> {
    let app = app_with_budget(1).await;
    let (_, alice) = user(&app, "alice", "user").await?;
    let (mut agent, session) = desktop(&app, &alice).await?;
    let path = format!("/api/v1/sessions/{session}/logs?follow=true");
    let logs = tokio::spawn({
        let (alice, path) = (alice.clone(), path.clone());
        async move { Streamed::get(&alice, &path).await }
    });
    let tunnel_id = next_channel(&mut agent).await?;
    let mut channel = data_channel(&app, &agent.secret, &tunnel_id).await?;
    channel.write_all(b"desktop started\n").await?;
    let mut logs = logs.await??;
    logs.expect("desktop started").await?;
    over_budget(&alice, "/api/v1/events").await?;
    drop(logs);
    an_event_stream_gets_in(&alice).await?;
    Ok(())
}

/// The splice(2) path depends on taking the plain TCP socket back out of
/// hyper's upgrade (`serve::into_tcp`); another wrapper around connections
/// would silently turn every tunnel into a copying one.
#[tokio::test]
async fn a_plain_tunnel_takes_the_zero_copy_path() -> anyhow::Result<()> {
    const ZERO_COPY: &str = "streamspace_tunnels_zero_copy_total";
    let app = spawn_app_with(Engine::Sqlite, |_| {}, None).await;
    let (_, alice) = user(&app, "alice", "user").await?;
    let (mut agent, session) = desktop(&app, &alice).await?;
    assert_eq!(app.admin.metric(ZERO_COPY).await?, 0.0);
    let (_viewer, _channel) = view(&app, &mut agent, &session, &alice).await?;
    assert_eq!(app.admin.metric(ZERO_COPY).await?, 1.0);
    Ok(())
}

/// Event streams never finish on their own; shutdown must end them rather
/// than wait out the whole drain for requests in flight.
#[tokio::test]
async fn shutdown_ends_event_streams_without_waiting_out_the_drain() -> anyhow::Result<()> {
    let app = spawn_app_with(
        Engine::Sqlite,
        |c| c.shutdown_drain = Duration::from_secs(120),
        None,
    )
    .await;
    let (_, alice) = user(&app, "alice", "user").await?;
    let mut events = Streamed::get(&alice, "/api/v1/events").await?;
    events.expect("event: ping").await?;
    drop(app);
    events.ends_within(GENEROUS).await?;
    Ok(())
}
