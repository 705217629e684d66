//! `/audio/{id}` and `/audio/{id}/microphone`: who may open them, what they
//! refuse (as JSON, before the upgrade), and that they ask the session's
//! agent for the template's `audio` and `microphone` ports. The sound
//! itself, both ways through a real desktop, is tests/ui/audio.test.mjs.

use crate::fake_agent::{FakeAgent, enroll};
use crate::{TestApp, on_both_engines};
use reqwest::{Method, StatusCode};
use serde_json::json;
use streamspace_protocol::{AgentMessage, ServerMessage};
use streamspace_testkit::api::Api;
use url::Url;

const AUDIO_PORT: u16 = 5911;
const MIC_PORT: u16 = 5912;

async fn templates(app: &TestApp) -> anyhow::Result<()> {
    app.admin
        .create_template(json!({
            "name": "sound",
            "image": "streamspace/desktop:local",
            "ports": [
                {"name": "vnc", "port": 5901, "protocol": "vnc"},
                {"name": "audio", "port": AUDIO_PORT, "protocol": "audio"},
                {"name": "mic", "port": MIC_PORT, "protocol": "microphone"},
            ],
        }))
        .await?;
    app.admin
        .create_template(json!({
            "name": "no-mic",
            "image": "streamspace/desktop:local",
            "ports": [
                {"name": "vnc", "port": 5901, "protocol": "vnc"},
                {"name": "mic", "port": MIC_PORT, "protocol": "microphone"},
            ],
            "desktop": {"microphone": false},
        }))
        .await?;
    app.admin
        .create_template(json!({"name": "silent", "image": "streamspace/desktop:local"}))
        .await?;
    Ok(())
}

/// The status and `error` of a WebSocket handshake on `/audio/{id}`.
async fn handshake(base: &Url, api: &Api, id: &str) -> anyhow::Result<(u16, String)> {
    handshake_at(base, api, &format!("/audio/{id}")).await
}

/// The same on `path`.
async fn handshake_at(base: &Url, api: &Api, path: &str) -> anyhow::Result<(u16, String)> {
    let url = base.join(path)?;
    let response = reqwest::Client::new()
        .get(url)
        .bearer_auth(api.token.clone().unwrap_or_default())
        .header("connection", "Upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .send()
        .await?;
    let status = response.status().as_u16();
    let body: serde_json::Value = response.json().await.unwrap_or_default();
    Ok((
        status,
        body["error"].as_str().unwrap_or_default().to_owned(),
    ))
}

async fn audio_tunnels_go_to_the_audio_port(app: TestApp) -> anyhow::Result<()> {
    templates(&app).await?;
    let (agent_id, secret) = enroll(&app.admin, "a").await?;
    let mut agent = FakeAgent::connect(&app.url, &agent_id, &secret).await?;
    let sound = agent
        .run_session(&app.admin, json!({"template": "sound"}))
        .await?;
    let silent = agent
        .run_session(&app.admin, json!({"template": "silent"}))
        .await?;

    let (status, error) = handshake(&app.url, &app.admin, &silent).await?;
    assert_eq!(status, 409, "{error}");
    assert!(error.contains("no port with protocol \"audio\""), "{error}");

    // Someone else's session does not exist for them.
    app.admin.create_user("eve", "eve-password-123").await?;
    let eve = Api::login(&app.url, "eve", "eve-password-123").await?;
    let (status, _) = handshake(&app.url, &eve, &sound).await?;
    assert_eq!(status, 404);

    // The owner's handshake waits while the agent is asked for port 5911;
    // the agent cannot reach it, and the viewer hears why.
    let (url, admin) = (app.url.clone(), app.admin.clone());
    let viewer = tokio::spawn(async move { handshake(&url, &admin, &sound).await });
    let tunnel_id = match agent.recv().await? {
        ServerMessage::OpenTunnel {
            tunnel_id, port, ..
        } => {
            assert_eq!(port, AUDIO_PORT);
            tunnel_id
        }
        other => anyhow::bail!("expected open_tunnel, got {other:?}"),
    };
    agent
        .send(AgentMessage::TunnelFailed {
            tunnel_id,
            error: "nothing listens on 5911".into(),
        })
        .await?;
    let (status, error) = viewer.await??;
    assert_eq!(status, 503);
    assert!(error.contains("nothing listens on 5911"), "{error}");
    Ok(())
}

async fn audio_needs_a_running_session(app: TestApp) -> anyhow::Result<()> {
    templates(&app).await?;
    let (agent_id, secret) = enroll(&app.admin, "a").await?;
    let mut agent = FakeAgent::connect(&app.url, &agent_id, &secret).await?;
    let id = agent
        .run_session(&app.admin, json!({"template": "sound"}))
        .await?;
    app.admin.set_state(&id, "hibernated").await?;
    let (status, error) = handshake(&app.url, &app.admin, &id).await?;
    assert_eq!(status, 409, "{error}");
    assert!(error.contains("sound plays only while it runs"), "{error}");
    Ok(())
}

/// The agent is asked for `port`; it fails the tunnel, and the 503 the
/// viewer gets names why.
async fn expect_tunnel(
    agent: &mut FakeAgent,
    viewer: tokio::task::JoinHandle<anyhow::Result<(u16, String)>>,
    port: u16,
) -> anyhow::Result<()> {
    let tunnel_id = match agent.recv().await? {
        ServerMessage::OpenTunnel {
            tunnel_id,
            port: asked,
            ..
        } => {
            assert_eq!(asked, port);
            tunnel_id
        }
        other => anyhow::bail!("expected open_tunnel, got {other:?}"),
    };
    let error = format!("nothing listens on {port}");
    agent
        .send(AgentMessage::TunnelFailed {
            tunnel_id,
            error: error.clone(),
        })
        .await?;
    let (status, answer) = viewer.await??;
    assert_eq!(status, 503);
    assert!(answer.contains(&error), "{answer}");
    Ok(())
}

async fn microphones_go_to_the_microphone_port_for_those_in_control(
    app: TestApp,
) -> anyhow::Result<()> {
    templates(&app).await?;
    let (agent_id, secret) = enroll(&app.admin, "a").await?;
    let mut agent = FakeAgent::connect(&app.url, &agent_id, &secret).await?;
    let mic = |id: &str| format!("/audio/{id}/microphone");
    let sound = agent
        .run_session(&app.admin, json!({"template": "sound"}))
        .await?;
    let no_mic = agent
        .run_session(&app.admin, json!({"template": "no-mic"}))
        .await?;
    // The first agent is full (two sessions).
    let (other_id, other_secret) = enroll(&app.admin, "b").await?;
    let mut other = FakeAgent::connect(&app.url, &other_id, &other_secret).await?;
    let silent = other
        .run_session(&app.admin, json!({"template": "silent"}))
        .await?;
    let (status, error) = handshake_at(&app.url, &app.admin, &mic(&silent)).await?;
    assert_eq!(status, 409, "{error}");
    assert!(
        error.contains("no port with protocol \"microphone\""),
        "{error}"
    );
    let (status, error) = handshake_at(&app.url, &app.admin, &mic(&no_mic)).await?;
    assert_eq!(status, 409, "{error}");
    assert!(error.contains("desktop.microphone"), "{error}");

    // A view-only guest may listen but not speak; a guest with control may.
    let mut guests = Vec::new();
    for (name, mode) in [("viewer", "view"), ("helper", "control")] {
        app.admin.create_user(name, "guest-password-123").await?;
        let share = json!({"username": name, "mode": mode});
        let path = format!("/api/v1/sessions/{sound}/shares");
        app.admin
            .expect(Method::POST, &path, Some(share), StatusCode::CREATED)
            .await?;
        guests.push(Api::login(&app.url, name, "guest-password-123").await?);
    }
    let (status, error) = handshake_at(&app.url, &guests[0], &mic(&sound)).await?;
    assert_eq!(status, 403, "{error}");
    assert!(error.contains("view-only"), "{error}");

    for api in [app.admin.clone(), guests[1].clone()] {
        let (url, path) = (app.url.clone(), mic(&sound));
        let viewer = tokio::spawn(async move { handshake_at(&url, &api, &path).await });
        expect_tunnel(&mut agent, viewer, MIC_PORT).await?;
    }
    Ok(())
}

on_both_engines!(
    audio_tunnels_go_to_the_audio_port,
    audio_needs_a_running_session,
    microphones_go_to_the_microphone_port_for_those_in_control
);
