//! Sessions and viewer connections in the system audit log: a session's
//! create and end, a VNC viewer and a log stream opened and closed with
//! their duration and bytes, and a web app opened.

use crate::audit::{by, call, events, the_one};
use crate::fake_agent::{FakeAgent, enroll};
use crate::revoked_streams::{Streamed, data_channel, next_channel, user, view};
use crate::{TestApp, on_both_engines};
use reqwest::{Method, StatusCode};
use serde_json::json;
use std::time::Duration;
use streamspace_testkit::eventually;
use tokio::io::AsyncWriteExt;

async fn sessions_and_viewers_are_recorded(app: TestApp) -> anyhow::Result<()> {
    app.admin
        .create_template(json!({"name": "desktop", "image": "streamspace/desktop:local"}))
        .await?;
    let (agent_id, secret) = enroll(&app.admin, "a").await?;
    let mut agent = FakeAgent::connect(&app.url, &agent_id, &secret).await?;
    let (_, alice) = user(&app, "alice", "user").await?;
    let session = agent
        .run_session(&alice, json!({"template": "desktop"}))
        .await?;
    let target = format!("session:{session}");
    let created = the_one(&app, "session.create", &target).await?;
    by(&created, "user:alice", "success")?;
    assert_eq!(created["detail"]["template"], "desktop");
    assert_eq!(created["client"], "127.0.0.1");

    // A viewer: the agent sends the banner and 1000 bytes, the viewer 5.
    let (mut vnc, mut channel) = view(&app, &mut agent, &session, &alice).await?;
    channel.write_all(&[7u8; 1000]).await?;
    vnc.read_exact(1000).await?;
    vnc.write(b"hello").await?;
    let open = the_one(&app, "viewer.open", &target).await?;
    by(&open, "user:alice", "success")?;
    assert_eq!(open["detail"]["kind"], "vnc");
    assert_eq!(open["client"], "127.0.0.1");
    tokio::time::sleep(Duration::from_millis(300)).await;
    vnc.close().await;
    let close = eventually(Duration::from_secs(5), "viewer.close", || async {
        let found = events(&app, &format!("kind=viewer.close&target={target}")).await?;
        Ok(found.into_iter().next())
    })
    .await?;
    let detail = &close["detail"];
    assert_eq!(detail["bytes_out"], 12 + 1000, "{close}");
    assert_eq!(
        detail["bytes_in"].as_u64().map(|n| n >= 5),
        Some(true),
        "{close}"
    );
    assert!(
        detail["duration_ms"].as_u64().unwrap_or_default() >= 300,
        "{close}"
    );

    // A log stream, open and closed.
    let path = format!("/api/v1/sessions/{session}/logs");
    let logs = tokio::spawn({
        let alice = alice.clone();
        async move { Streamed::get(&alice, &path).await }
    });
    let tunnel = next_channel(&mut agent).await?;
    let mut logs_channel = data_channel(&app, &secret, &tunnel).await?;
    logs_channel.write_all(b"desktop started\n").await?;
    drop(logs_channel);
    logs.await??.ends_within(Duration::from_secs(5)).await?;
    let closes = eventually(Duration::from_secs(5), "the log stream's close", || async {
        let found = events(&app, &format!("kind=viewer.close&target={target}")).await?;
        Ok((found.len() == 2).then_some(found))
    })
    .await?;
    assert_eq!(closes[0]["detail"]["kind"], "logs");
    assert_eq!(closes[0]["detail"]["bytes_out"], 16);
    assert_eq!(
        events(&app, &format!("kind=viewer.open&target={target}"))
            .await?
            .len(),
        2
    );

    let ended = format!("/api/v1/sessions/{session}");
    call(&alice, Method::DELETE, &ended, None, StatusCode::OK).await?;
    let terminated = the_one(&app, "session.terminate", &target).await?;
    by(&terminated, "user:alice", "success")?;
    assert_eq!(terminated["detail"]["state"], "terminated");
    Ok(())
}

async fn opening_a_web_app_is_recorded(app: TestApp) -> anyhow::Result<()> {
    let ports = json!([
        {"name": "web", "port": 6080, "protocol": "http"},
        {"name": "vnc", "port": 5901, "protocol": "vnc"},
    ]);
    let template = json!({"name": "webapp", "image": "streamspace/webvnc:local", "ports": ports});
    app.admin.create_template(template).await?;
    let (agent_id, secret) = enroll(&app.admin, "a").await?;
    let mut agent = FakeAgent::connect(&app.url, &agent_id, &secret).await?;
    let (_, alice) = user(&app, "alice", "user").await?;
    let session = agent
        .run_session(&alice, json!({"template": "webapp"}))
        .await?;
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let opened = no_redirects
        .get(
            app.url
                .join(&format!("/api/v1/sessions/{session}/apps/6080?mode=path"))?,
        )
        .bearer_auth(alice.token.clone().unwrap_or_default())
        .send()
        .await?;
    assert_eq!(
        opened.status(),
        StatusCode::SEE_OTHER,
        "{}",
        opened.text().await?
    );
    let grant = the_one(&app, "viewer.grant", &format!("session:{session}")).await?;
    by(&grant, "user:alice", "success")?;
    assert_eq!(
        grant["detail"],
        json!({"kind": "app", "port": 6080, "mode": "path"})
    );
    assert_eq!(grant["client"], "127.0.0.1");
    Ok(())
}

on_both_engines!(
    sessions_and_viewers_are_recorded,
    opening_a_web_app_is_recorded
);
