//! `/audio/{id}`: who may open it, what it refuses (as JSON, before the
//! upgrade), and that it asks the session's agent for the template's
//! `audio` port. The sound itself, end to end through a real desktop, is
//! tests/ui/audio.test.mjs.

use crate::fake_agent::{FakeAgent, enroll};
use crate::{TestApp, on_both_engines};
use serde_json::json;
use streamspace_protocol::{AgentMessage, ServerMessage};
use streamspace_testkit::api::Api;
use url::Url;

const AUDIO_PORT: u16 = 5911;

async fn templates(app: &TestApp) -> anyhow::Result<()> {
    app.admin
        .create_template(json!({
            "name": "sound",
            "image": "streamspace/desktop:local",
            "ports": [
                {"name": "vnc", "port": 5901, "protocol": "vnc"},
                {"name": "audio", "port": AUDIO_PORT, "protocol": "audio"},
            ],
        }))
        .await?;
    app.admin
        .create_template(json!({"name": "silent", "image": "streamspace/desktop:local"}))
        .await?;
    Ok(())
}

/// The status and `error` of a WebSocket handshake on `/audio/{id}`.
async fn handshake(base: &Url, api: &Api, id: &str) -> anyhow::Result<(u16, String)> {
    let url = base.join(&format!("/audio/{id}"))?;
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

on_both_engines!(
    audio_tunnels_go_to_the_audio_port,
    audio_needs_a_running_session
);
