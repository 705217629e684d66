//! The spine with the control plane and the agent as separate processes:
//! create → Running → RFB → hibernate → wake → RFB → terminate, on SQLite and
//! on PostgreSQL.

use crate::{RUNNING_LIMIT, assert_vnc_works, bin, desktop_template, require_desktop_image};
use reqwest::{Method, StatusCode};
use serde_json::json;
use std::time::Duration;
use streamspace_testkit::docker::{self, Cleanup};
use streamspace_testkit::{AgentProcess, Api, ControlPlane, Mode, postgres};

async fn lifecycle(database_url: Option<String>) -> anyhow::Result<()> {
    require_desktop_image();
    let cp = ControlPlane::start(bin(), Mode::Server, database_url.as_deref()).await?;
    let admin = Api::admin(&cp.url).await?;
    let token = admin.enrollment_token().await?;
    let mut agent = AgentProcess::start(bin(), &cp.url, &token, "spine-agent").await?;
    let agent_id = admin
        .wait_for_agent("spine-agent", Duration::from_secs(30))
        .await
        .map_err(|e| anyhow::anyhow!("{e:#}\nagent log:\n{}", agent.process.log()))?;
    let _cleanup = Cleanup(vec![agent_id.clone()]);
    admin.create_template(desktop_template("desktop")).await?;

    let session = admin.create_session(json!({"template": "desktop"})).await?;
    let id = session["id"].as_str().unwrap_or_default().to_owned();
    assert_eq!(session["phase"], "Pending");
    assert_eq!(session["agent_id"], agent_id.as_str());
    admin.wait_for_phase(&id, "Running", RUNNING_LIMIT).await?;
    let containers = docker::session_containers(&id)?;
    assert_eq!(
        containers,
        vec![(format!("streamspace-{id}"), "running".to_owned())]
    );
    assert_vnc_works(&admin, &id).await?;
    let logs = admin
        .text(&format!("/api/v1/sessions/{id}/logs?tail=200"))
        .await?;
    assert!(
        logs.contains("TigerVNC"),
        "the session's console output: {logs}"
    );
    // Heartbeats carry what the session uses, measured on the engine.
    let usage = streamspace_testkit::eventually(RUNNING_LIMIT, "session usage", || async {
        Ok(admin.session(&id).await?["usage"].as_object().cloned())
    })
    .await?;
    let memory: streamspace_protocol::Memory = serde_json::from_value(usage["memory"].clone())?;
    assert!(
        memory.bytes() > 1 << 20,
        "Xvnc uses more than 1 MiB: {usage:?}"
    );

    admin.set_state(&id, "hibernated").await?;
    admin
        .wait_for_phase(&id, "Hibernated", RUNNING_LIMIT)
        .await?;
    assert_eq!(docker::session_containers(&id)?[0].1, "exited");
    admin.set_state(&id, "running").await?;
    admin.wait_for_phase(&id, "Running", RUNNING_LIMIT).await?;
    assert_vnc_works(&admin, &id).await?;

    let path = format!("/api/v1/sessions/{id}");
    admin
        .expect(Method::DELETE, &path, None, StatusCode::OK)
        .await?;
    admin
        .wait_for_phase(&id, "Terminated", RUNNING_LIMIT)
        .await?;
    assert!(
        docker::session_containers(&id)?.is_empty(),
        "container removed"
    );

    // A restarted agent needs no enrollment token: its state dir suffices.
    agent.process.stop().await?;
    agent.restart()?;
    admin
        .wait_for_agent("spine-agent", Duration::from_secs(30))
        .await?;
    Ok(())
}

#[tokio::test]
async fn lifecycle_on_sqlite() -> anyhow::Result<()> {
    lifecycle(None).await
}

#[tokio::test]
async fn lifecycle_on_postgres() -> anyhow::Result<()> {
    lifecycle(Some(postgres::fresh_database().await?)).await
}

#[tokio::test]
async fn missing_image_fails_the_session_with_the_fix() -> anyhow::Result<()> {
    let cp = ControlPlane::start(bin(), Mode::Server, None).await?;
    let admin = Api::admin(&cp.url).await?;
    let token = admin.enrollment_token().await?;
    let _agent = AgentProcess::start(bin(), &cp.url, &token, "image-agent").await?;
    let agent_id = admin
        .wait_for_agent("image-agent", Duration::from_secs(30))
        .await?;
    let _cleanup = Cleanup(vec![agent_id]);
    let mut template = desktop_template("ghost");
    template["image"] = json!("streamspace/not-built-here:1");
    admin.create_template(template).await?;
    let session = admin.create_session(json!({"template": "ghost"})).await?;
    let id = session["id"].as_str().unwrap_or_default();
    let failed = admin.wait_for_phase(id, "Failed", RUNNING_LIMIT).await?;
    let message = failed["message"].as_str().unwrap_or_default();
    assert!(message.contains("not present"), "{message}");
    assert!(
        message.contains("streamspace/not-built-here:1"),
        "{message}"
    );
    Ok(())
}

#[tokio::test]
async fn used_enrollment_token_is_refused_and_agent_secret_is_private() -> anyhow::Result<()> {
    let cp = ControlPlane::start(bin(), Mode::Server, None).await?;
    let admin = Api::admin(&cp.url).await?;
    let token = admin.enrollment_token().await?;
    let agent = AgentProcess::start(bin(), &cp.url, &token, "once-agent").await?;
    let agent_id = admin
        .wait_for_agent("once-agent", Duration::from_secs(30))
        .await?;
    let _cleanup = Cleanup(vec![agent_id]);

    let again = json!({"enrollment_token": token, "name": "second", "platform": "docker"});
    let answer = Api::new(&cp.url)
        .call(Method::POST, "/api/v1/agents/register", Some(again))
        .await?;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{:?}", answer.body);

    let identity = agent.state_dir.join("agent.json");
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&identity)?.permissions());
    assert_eq!(mode & 0o777, 0o600, "the agent secret file is private");
    Ok(())
}
