//! Terminated is final, and an admin can end what an absent agent cannot.

use crate::fake_agent::{FakeAgent, enroll};
use crate::{TestApp, on_both_engines};
use reqwest::{Method, StatusCode};
use serde_json::json;
use std::time::Duration;
use streamspace_protocol::{Action, Phase, SessionReport};
use streamspace_testkit::Api;

async fn setup(app: &TestApp) -> anyhow::Result<(FakeAgent, String, Api)> {
    app.admin
        .create_template(json!({"name": "desktop", "image": "streamspace/desktop:local"}))
        .await?;
    let (id, secret) = enroll(&app.admin, "a").await?;
    let agent = FakeAgent::connect(&app.url, &id, &secret).await?;
    app.admin.create_user("alice", "alice-password").await?;
    let alice = Api::login(&app.url, "alice", "alice-password").await?;
    Ok((agent, id, alice))
}

fn session_path(id: &str) -> String {
    format!("/api/v1/sessions/{id}")
}

/// With its agent away, a session being terminated stays on its way out:
/// its owner cannot set it running again, and when the agent returns the
/// terminate it missed is delivered.
async fn a_terminating_session_cannot_be_revived(app: TestApp) -> anyhow::Result<()> {
    let (mut agent, agent_id, alice) = setup(&app).await?;
    let id = agent
        .run_session(&alice, json!({"template": "desktop"}))
        .await?;
    let secret = agent.secret.clone();
    agent.close().await;
    let ending = alice
        .expect(Method::DELETE, &session_path(&id), None, StatusCode::OK)
        .await?;
    assert_eq!(ending["phase"], "Stopping");
    let revive = alice
        .call(
            Method::PUT,
            &format!("{}/state", session_path(&id)),
            Some(json!({"state": "running"})),
        )
        .await?;
    assert_eq!(revive.status, StatusCode::CONFLICT, "{:?}", revive.body);
    assert!(
        revive.body["error"]
            .as_str()
            .unwrap_or_default()
            .contains("cannot run again"),
        "{:?}",
        revive.body
    );
    let inventory = vec![SessionReport::new(&id, Phase::Running)];
    let mut agent = FakeAgent::connect_with(&app.url, &agent_id, &secret, inventory).await?;
    let terminate = agent.expect_command().await?;
    assert_eq!(
        (terminate.session_id.as_str(), terminate.action.clone()),
        (id.as_str(), Action::Terminate)
    );
    agent.complete(&terminate).await?;
    agent
        .report(SessionReport::new(&id, Phase::Terminated))
        .await?;
    alice
        .wait_for_phase(&id, "Terminated", Duration::from_secs(5))
        .await?;
    Ok(())
}

/// Sessions of an agent that is gone for good: only an admin can end them
/// without it, it is recorded, and then the agent and the user can go.
async fn admins_force_terminate_without_the_agent(app: TestApp) -> anyhow::Result<()> {
    let (mut agent, agent_id, alice) = setup(&app).await?;
    let first = agent
        .run_session(&alice, json!({"template": "desktop"}))
        .await?;
    let second = agent
        .run_session(&alice, json!({"template": "desktop"}))
        .await?;
    agent.close().await;
    let forced = format!("{}?force=true", session_path(&first));
    let refused = alice.call(Method::DELETE, &forced, None).await?;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{:?}", refused.body);
    let ended = app
        .admin
        .expect(Method::DELETE, &forced, None, StatusCode::OK)
        .await?;
    assert_eq!(
        (ended["state"].clone(), ended["phase"].clone()),
        (json!("terminated"), json!("Terminated"))
    );
    let events = app
        .admin
        .expect(
            Method::GET,
            &format!("{}/events", session_path(&first)),
            None,
            StatusCode::OK,
        )
        .await?;
    let last = events.as_array().and_then(|e| e.last()).cloned();
    let last = last.unwrap_or_default();
    assert_eq!(
        (last["kind"].as_str(), last["actor"].as_str()),
        (Some("force_terminated"), Some("user:admin"))
    );

    let agent_path = format!("/api/v1/agents/{agent_id}");
    let busy = app.admin.call(Method::DELETE, &agent_path, None).await?;
    assert_eq!(busy.status, StatusCode::CONFLICT, "{:?}", busy.body);
    app.admin
        .expect(
            Method::DELETE,
            &format!("{agent_path}?force=true"),
            None,
            StatusCode::NO_CONTENT,
        )
        .await?;
    assert_eq!(app.admin.session(&second).await?["phase"], "Terminated");
    let alice_id = alice
        .expect(Method::GET, "/api/v1/users/me", None, StatusCode::OK)
        .await?["id"]
        .clone();
    app.admin
        .expect(
            Method::DELETE,
            &format!("/api/v1/users/{}", alice_id.as_str().unwrap_or_default()),
            None,
            StatusCode::NO_CONTENT,
        )
        .await?;
    Ok(())
}

on_both_engines!(
    a_terminating_session_cannot_be_revived,
    admins_force_terminate_without_the_agent,
);
