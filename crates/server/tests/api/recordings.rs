//! Session recordings through the API: with "record all sessions" on, a
//! viewer's tunnel is recorded; admins list, download and delete the
//! recording (each audited); a session not recorded makes none; a full
//! recording store refuses a viewer rather than show it unrecorded.

use crate::audit::{by, the_one};
use crate::fake_agent::{FakeAgent, enroll};
use crate::revoked_streams::{user, view};
use crate::{TestApp, on_both_engines, spawn_app_with};
use anyhow::ensure;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::time::Duration;
use streamspace_testkit::api::Api;
use streamspace_testkit::eventually;
use streamspace_testkit::rfb::VncSocket;
use tokio::io::AsyncWriteExt;

async fn record_all_sessions(app: &TestApp, on: bool) -> anyhow::Result<()> {
    let mut settings = app
        .admin
        .expect(Method::GET, "/api/v1/settings", None, StatusCode::OK)
        .await?;
    settings["record_all_sessions"] = json!(on);
    app.admin
        .expect(
            Method::PUT,
            "/api/v1/settings",
            Some(settings),
            StatusCode::OK,
        )
        .await?;
    Ok(())
}

/// A running session of alice's on a fake agent.
async fn session(app: &TestApp) -> anyhow::Result<(FakeAgent, String, Api)> {
    session_of(
        app,
        json!({"name": "desktop", "image": "streamspace/desktop:local"}),
    )
    .await
}

async fn session_of(app: &TestApp, template: Value) -> anyhow::Result<(FakeAgent, String, Api)> {
    let name = template["name"].as_str().unwrap_or_default().to_owned();
    app.admin.create_template(template).await?;
    let (agent_id, secret) = enroll(&app.admin, "a").await?;
    let mut agent = FakeAgent::connect(&app.url, &agent_id, &secret).await?;
    let (_, alice) = user(app, "alice", "user").await?;
    let session = agent.run_session(&alice, json!({"template": name})).await?;
    Ok((agent, session, alice))
}

async fn recordings(app: &TestApp, session: &str) -> anyhow::Result<Vec<Value>> {
    let path = format!("/api/v1/recordings?session_id={session}");
    let listed = app
        .admin
        .expect(Method::GET, &path, None, StatusCode::OK)
        .await?;
    Ok(listed.as_array().cloned().unwrap_or_default())
}

/// The bytes of a download (the test client's `call` reads text).
async fn download(app: &TestApp, id: &str) -> anyhow::Result<Vec<u8>> {
    let url = app.url.join(&format!("/api/v1/recordings/{id}"))?;
    let token = app.admin.token.clone().unwrap_or_default();
    let response = reqwest::Client::new()
        .get(url)
        .bearer_auth(token)
        .send()
        .await?;
    ensure!(
        response.status() == StatusCode::OK,
        "download: {}",
        response.status()
    );
    Ok(response.bytes().await?.to_vec())
}

/// The server-to-viewer bytes of a recording file, joined; checks the
/// layout docs/RECORDING.md gives.
fn replayed(file: &[u8]) -> anyhow::Result<Vec<u8>> {
    ensure!(file.len() >= 16 && file[..8] == *b"SSREC\0\0\x01", "header");
    let mut rest = &file[16..];
    let mut bytes = Vec::new();
    while !rest.is_empty() {
        ensure!(rest.len() >= 8, "a whole chunk header");
        let len = u32::from_be_bytes(rest[4..8].try_into()?) as usize;
        ensure!(rest.len() >= 8 + len, "a whole chunk");
        bytes.extend_from_slice(&rest[8..8 + len]);
        rest = &rest[8 + len..];
    }
    Ok(bytes)
}

async fn a_recorded_viewer_is_listed_downloaded_and_deleted(app: TestApp) -> anyhow::Result<()> {
    record_all_sessions(&app, true).await?;
    let (mut agent, session, alice) = session(&app).await?;
    let seen = alice.session(&session).await?;
    assert_eq!(seen["recorded"], true, "the viewer is told: {seen}");
    let (mut vnc, mut channel) = view(&app, &mut agent, &session, &alice).await?;
    channel.write_all(&[7u8; 1000]).await?;
    vnc.read_exact(1000).await?;
    vnc.close().await;

    let listed = eventually(Duration::from_secs(5), "a finished recording", || async {
        let listed = recordings(&app, &session).await?;
        Ok((listed.len() == 1 && listed[0]["recording"] == false).then_some(listed))
    })
    .await?;
    let recording = &listed[0];
    let id = recording["id"].as_str().unwrap_or_default().to_owned();
    assert_eq!(recording["viewer"], "user:alice", "{recording}");
    assert!(recording["ended_at"].is_string(), "{recording}");

    let file = download(&app, &id).await?;
    assert_eq!(recording["bytes"], file.len(), "{recording}");
    let mut expected = b"RFB 003.008\n".to_vec();
    expected.extend_from_slice(&[7u8; 1000]);
    assert_eq!(replayed(&file)?, expected, "what the viewer was sent");

    let target = format!("session:{session}");
    let start = the_one(&app, "recording.start", &target).await?;
    by(&start, "user:alice", "success")?;
    assert_eq!(start["detail"]["recording"], id.as_str());
    let replayed_by = the_one(&app, "recording.download", &target).await?;
    by(&replayed_by, "user:admin", "success")?;
    assert_eq!(replayed_by["detail"]["recording"], id.as_str());

    // Admins only; bad filters are named.
    let path = format!("/api/v1/recordings/{id}");
    alice
        .refused(
            Method::GET,
            "/api/v1/recordings",
            json!(null),
            StatusCode::FORBIDDEN,
        )
        .await?;
    alice
        .refused(Method::DELETE, &path, json!(null), StatusCode::FORBIDDEN)
        .await?;
    let bad = app
        .admin
        .refused(
            Method::GET,
            "/api/v1/recordings?session_id=",
            json!(null),
            StatusCode::BAD_REQUEST,
        )
        .await?;
    assert_eq!(bad["field"], "session_id", "{bad}");
    app.admin
        .refused(
            Method::GET,
            "/api/v1/recordings?colour=red",
            json!(null),
            StatusCode::BAD_REQUEST,
        )
        .await?;

    app.admin
        .expect(Method::DELETE, &path, None, StatusCode::NO_CONTENT)
        .await?;
    let deleted = the_one(&app, "recording.delete", &target).await?;
    by(&deleted, "user:admin", "success")?;
    app.admin
        .refused(Method::GET, &path, json!(null), StatusCode::NOT_FOUND)
        .await?;
    app.admin
        .refused(Method::DELETE, &path, json!(null), StatusCode::NOT_FOUND)
        .await?;
    app.admin
        .refused(
            Method::GET,
            "/api/v1/recordings/..%2F..%2Fmfa-key",
            json!(null),
            StatusCode::NOT_FOUND,
        )
        .await?;
    assert!(recordings(&app, &session).await?.is_empty());
    Ok(())
}

async fn a_running_recording_cannot_be_deleted(app: TestApp) -> anyhow::Result<()> {
    record_all_sessions(&app, true).await?;
    let (mut agent, session, alice) = session(&app).await?;
    let (vnc, _channel) = view(&app, &mut agent, &session, &alice).await?;
    let listed = recordings(&app, &session).await?;
    assert!(
        listed.len() == 1 && listed[0]["recording"] == true,
        "{listed:?}"
    );
    let path = format!(
        "/api/v1/recordings/{}",
        listed[0]["id"].as_str().unwrap_or("")
    );
    app.admin
        .refused(Method::DELETE, &path, json!(null), StatusCode::CONFLICT)
        .await?;
    vnc.close().await;
    Ok(())
}

async fn a_template_can_require_recording(app: TestApp) -> anyhow::Result<()> {
    let template = json!({"name": "audited", "image": "streamspace/desktop:local",
                          "desktop": {"recording": "required"}});
    let (mut agent, session, alice) = session_of(&app, template).await?;
    let seen = alice.session(&session).await?;
    assert_eq!(seen["recorded"], true, "{seen}");
    let (vnc, _channel) = view(&app, &mut agent, &session, &alice).await?;
    vnc.close().await;
    let listed = recordings(&app, &session).await?;
    assert_eq!(listed.len(), 1, "{listed:?}");
    Ok(())
}

async fn a_session_not_recorded_makes_no_recording(app: TestApp) -> anyhow::Result<()> {
    let (mut agent, session, alice) = session(&app).await?;
    let seen = alice.session(&session).await?;
    assert_eq!(seen["recorded"], false, "{seen}");
    let (mut vnc, mut channel) = view(&app, &mut agent, &session, &alice).await?;
    channel.write_all(&[1u8; 100]).await?;
    vnc.read_exact(100).await?;
    vnc.close().await;
    assert!(recordings(&app, &session).await?.is_empty());
    let listed = app
        .admin
        .expect(Method::GET, "/api/v1/recordings", None, StatusCode::OK)
        .await?;
    assert_eq!(listed, json!([]));
    Ok(())
}

on_both_engines!(
    a_recorded_viewer_is_listed_downloaded_and_deleted,
    a_running_recording_cannot_be_deleted,
    a_template_can_require_recording,
    a_session_not_recorded_makes_no_recording,
);

/// With no room left for recordings, a recorded session's viewer is
/// refused (503) before any tunnel opens.
#[tokio::test]
async fn a_full_recording_store_refuses_the_viewer() -> anyhow::Result<()> {
    let app = spawn_app_with(
        crate::Engine::Sqlite,
        |config| config.recording_limits.max_total = 8,
        None,
    )
    .await;
    record_all_sessions(&app, true).await?;
    let (_agent, session, alice) = session(&app).await?;
    let token = alice.token.clone().unwrap_or_default();
    match VncSocket::connect(&app.url, &session, &token, &[]).await {
        Ok(_) => anyhow::bail!("the viewer was let in unrecorded"),
        Err(refused) => {
            assert_eq!(refused.status, 503, "{}", refused.error);
            assert!(
                refused.error.contains("recording storage is full"),
                "{}",
                refused.error
            );
        }
    }
    Ok(())
}
