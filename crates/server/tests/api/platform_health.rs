//! Platform health as agents report it with their heartbeats: a problem
//! makes the agent `degraded` with the reason, placement skips it (a 503
//! names it and its problem when it is all there is), a session waiting on
//! it says why, and it is `online` again when its health is. On two
//! replicas of one PostgreSQL, placement on one sees an agent degraded on
//! the other at once (the change is stored when it happens). Agents too old
//! to report health count as healthy.

use crate::fake_agent::{FakeAgent, enroll};
use crate::{Engine, TestApp, spawn_app, spawn_replica};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::time::Duration;
use streamspace_protocol::PlatformHealth;
use streamspace_testkit::{Api, eventually};

const LIMIT: Duration = Duration::from_secs(10);

async fn wait_status(admin: &Api, id: &str, want: &str) -> anyhow::Result<Value> {
    eventually(LIMIT, &format!("agent {want}"), || async {
        let path = format!("/api/v1/agents/{id}");
        let agent = admin
            .expect(Method::GET, &path, None, StatusCode::OK)
            .await?;
        Ok((agent["status"] == want).then_some(agent))
    })
    .await
}

async fn connect(app: &TestApp, name: &str) -> anyhow::Result<(FakeAgent, String)> {
    let (id, secret) = enroll(&app.admin, name).await?;
    let agent = FakeAgent::connect(&app.url, &id, &secret).await?;
    app.admin.wait_for_agent(name, LIMIT).await?;
    Ok((agent, id))
}

async fn refused(admin: &Api, body: Value) -> anyhow::Result<String> {
    let answer = admin
        .refused(
            Method::POST,
            "/api/v1/sessions",
            body,
            StatusCode::SERVICE_UNAVAILABLE,
        )
        .await?;
    Ok(answer["error"].as_str().unwrap_or_default().to_owned())
}

#[tokio::test]
async fn a_degraded_agent_is_skipped_named_and_explained() -> anyhow::Result<()> {
    let app = spawn_app(Engine::Sqlite).await;
    let admin = &app.admin;
    admin
        .create_template(json!({"name": "desktop", "image": "streamspace/desktop:local"}))
        .await?;
    let (mut sick, sick_id) = connect(&app, "sick").await?;
    sick.set_health(Some(PlatformHealth::healthy())).await?;

    // A session starting on it when its disk fills waits, and says why.
    let waiting = admin.create_session(json!({"template": "desktop"})).await?;
    let waiting_id = waiting["id"].as_str().unwrap_or_default().to_owned();
    sick.expect_command().await?;
    sick.set_health(Some(PlatformHealth::degraded("disk full")))
        .await?;
    let view = wait_status(admin, &sick_id, "degraded").await?;
    assert_eq!(view["status_reason"], "disk full", "{view}");
    let session = admin.session(&waiting_id).await?;
    assert_eq!(
        session["message"],
        "waiting for agent sick, which is degraded: disk full; the session goes on once its \
         platform answers again",
        "{session}"
    );
    assert_eq!(session["agent_status"], "degraded", "{session}");

    // Alone, it is named with its problem; named, too.
    let error = refused(admin, json!({"template": "desktop"})).await?;
    assert!(
        error.starts_with("no healthy agent can take the session: sick is degraded (disk full)"),
        "{error}"
    );
    let pinned = json!({"template": "desktop", "agent_id": sick_id});
    let error = refused(admin, pinned.clone()).await?;
    assert!(
        error.starts_with("agent sick cannot take the session: it is degraded (disk full)"),
        "{error}"
    );

    // An agent that says nothing of health (an older one) takes sessions.
    let (_old, old_id) = connect(&app, "old").await?;
    let placed = admin.create_session(json!({"template": "desktop"})).await?;
    assert_eq!(placed["agent_id"], old_id.as_str(), "{placed}");
    let agents = admin
        .expect(Method::GET, "/api/v1/agents", None, StatusCode::OK)
        .await?;
    let old = agents
        .as_array()
        .and_then(|a| a.iter().find(|a| a["name"] == "old"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        (&old["status"], &old["status_reason"]),
        (&json!("online"), &Value::Null)
    );

    // Healthy again: online, no reason, the waiting session no excuse.
    sick.set_health(Some(PlatformHealth::healthy())).await?;
    let view = wait_status(admin, &sick_id, "online").await?;
    assert_eq!(view["status_reason"], Value::Null, "{view}");
    let session = admin.session(&waiting_id).await?;
    assert_eq!(session["message"], Value::Null, "{session}");
    admin.create_session(pinned).await?;
    Ok(())
}

#[tokio::test]
async fn what_an_agent_says_of_its_health_is_bounded() -> anyhow::Result<()> {
    let app = spawn_app(Engine::Sqlite).await;
    let (mut agent, id) = connect(&app, "loud").await?;
    let problem = "x".repeat(100_000);
    agent
        .set_health(Some(PlatformHealth::degraded(problem)))
        .await?;
    let view = wait_status(&app.admin, &id, "degraded").await?;
    let kept = view["status_reason"].as_str().unwrap_or_default();
    assert_eq!(
        kept,
        format!("{}…", "x".repeat(2048)),
        "cut to what the control plane keeps"
    );
    Ok(())
}

#[tokio::test]
async fn placement_on_one_replica_skips_an_agent_degraded_on_another() -> anyhow::Result<()> {
    let a = spawn_app(Engine::Postgres).await;
    let b = spawn_replica(&a).await;
    a.admin
        .create_template(json!({"name": "desktop", "image": "streamspace/desktop:local"}))
        .await?;
    // Both agents are connected to B; sessions are created through A.
    let (mut sick, sick_id) = connect(&b, "sick").await?;
    let (_well, well_id) = connect(&b, "well").await?;
    sick.set_health(Some(PlatformHealth::degraded("engine hung")))
        .await?;
    let view = wait_status(&a.admin, &sick_id, "degraded").await?;
    assert_eq!(view["status_reason"], "engine hung", "{view}");
    for _ in 0..2 {
        let placed = a
            .admin
            .create_session(json!({"template": "desktop"}))
            .await?;
        assert_eq!(placed["agent_id"], well_id.as_str(), "{placed}");
    }
    sick.set_health(Some(PlatformHealth::healthy())).await?;
    wait_status(&a.admin, &sick_id, "online").await?;
    Ok(())
}
