//! Lifecycle bookkeeping against protocol-level agents: unknown sessions
//! adopted, lingering ones removed, the audit trail, heartbeats, quotas.

use crate::fake_agent::{FakeAgent, enroll};
use crate::{TestApp, on_both_engines};
use reqwest::{Method, StatusCode};
use serde_json::json;
use std::time::Duration;
use streamspace_protocol::{Action, AgentMessage, NodeMetrics, Phase, SessionReport};

async fn setup(app: &TestApp) -> anyhow::Result<(FakeAgent, String)> {
    app.admin
        .create_template(
            json!({"name": "desktop", "image": "streamspace/desktop:local",
                     "user_idle_timeout": true}),
        )
        .await?;
    let (id, secret) = enroll(&app.admin, "a").await?;
    let agent = FakeAgent::connect(&app.url, &id, &secret).await?;
    Ok((agent, id))
}

async fn terminated_sessions_found_again_are_removed(app: TestApp) -> anyhow::Result<()> {
    let (mut agent, agent_id) = setup(&app).await?;
    let id = agent
        .run_session(&app.admin, json!({"template": "desktop"}))
        .await?;
    app.admin
        .expect(
            Method::DELETE,
            &format!("/api/v1/sessions/{id}"),
            None,
            StatusCode::OK,
        )
        .await?;
    let terminate = agent.expect_command().await?;
    agent.complete(&terminate).await?;
    agent
        .report(SessionReport::new(&id, Phase::Terminated))
        .await?;
    app.admin
        .wait_for_phase(&id, "Terminated", Duration::from_secs(5))
        .await?;
    // The container is somehow still there when the agent reconnects.
    let secret = agent.secret.clone();
    agent.close().await;
    let inventory = vec![SessionReport::new(&id, Phase::Running)];
    let mut agent = FakeAgent::connect_with(&app.url, &agent_id, &secret, inventory).await?;
    let again = agent.expect_command().await?;
    assert_eq!(
        (again.session_id.as_str(), again.action),
        (id.as_str(), Action::Terminate)
    );
    assert_eq!(
        app.admin.session(&id).await?["phase"],
        "Terminated",
        "history stays"
    );

    // Listing it again while that terminate is open asks nothing more: an
    // agent that repeats its inventory and never answers cannot make a
    // stored command per message.
    let other = agent
        .run_session(&app.admin, json!({"template": "desktop"}))
        .await?;
    for _ in 0..3 {
        let sessions = vec![
            SessionReport::new(&id, Phase::Running),
            SessionReport::new(&other, Phase::Running),
        ];
        agent.send(AgentMessage::Inventory { sessions }).await?;
    }
    // Messages are applied in order: once this shows, the inventories were.
    agent
        .report(SessionReport::new(&other, Phase::Hibernated))
        .await?;
    app.admin
        .wait_for_phase(&other, "Hibernated", Duration::from_secs(5))
        .await?;
    app.admin
        .expect(
            Method::DELETE,
            &format!("/api/v1/sessions/{other}"),
            None,
            StatusCode::OK,
        )
        .await?;
    // Up to the other's terminate (the reconciler may wake it first),
    // nothing more for the first session.
    loop {
        let next = agent.expect_command().await?;
        assert_ne!(next.session_id.as_str(), id, "a further {next:?}");
        if next.action == Action::Terminate {
            break;
        }
    }
    Ok(())
}

async fn audit_trail_and_heartbeats(app: TestApp) -> anyhow::Result<()> {
    let (mut agent, _) = setup(&app).await?;
    let id = agent
        .run_session(
            &app.admin,
            json!({"template": "desktop", "idle_timeout": "1h"}),
        )
        .await?;
    assert_eq!(app.admin.session(&id).await?["idle_timeout"], "1h");
    let before = app.admin.session(&id).await?["last_activity"].clone();
    tokio::time::sleep(Duration::from_millis(20)).await;
    app.admin
        .expect(
            Method::POST,
            &format!("/api/v1/sessions/{id}/heartbeat"),
            None,
            StatusCode::NO_CONTENT,
        )
        .await?;
    assert_ne!(app.admin.session(&id).await?["last_activity"], before);
    app.admin.set_state(&id, "hibernated").await?;
    let events = app
        .admin
        .expect(
            Method::GET,
            &format!("/api/v1/sessions/{id}/events"),
            None,
            StatusCode::OK,
        )
        .await?;
    let summary: Vec<(String, String)> = events
        .as_array()
        .map(|e| {
            e.iter()
                .map(|e| {
                    (
                        e["actor"].as_str().unwrap_or_default().to_owned(),
                        e["kind"].as_str().unwrap_or_default().to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(
        summary,
        vec![
            ("user:admin".to_owned(), "created".to_owned()),
            ("agent:a".to_owned(), "phase".to_owned()),
            ("user:admin".to_owned(), "state".to_owned()),
        ],
        "{events}"
    );
    let bad = app
        .admin
        .call(
            Method::POST,
            "/api/v1/sessions",
            Some(json!({"template": "desktop", "idle_timeout": "soonish"})),
        )
        .await?;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert_eq!(bad.body["field"], "idle_timeout");
    Ok(())
}

async fn quota_overrides_and_defaults(app: TestApp) -> anyhow::Result<()> {
    let (mut agent, _) = setup(&app).await?;
    let user = app.admin.create_user("uma", "uma-password").await?;
    let path = format!(
        "/api/v1/users/{}/quota",
        user["id"].as_str().unwrap_or_default()
    );
    let view = app
        .admin
        .expect(Method::GET, &path, None, StatusCode::OK)
        .await?;
    assert_eq!(
        view["limits"],
        json!({"max_sessions": null, "cpu": null, "memory": null})
    );
    let bad = app
        .admin
        .call(Method::PUT, &path, Some(json!({"memory": "lots"})))
        .await?;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    app.admin
        .expect(
            Method::PUT,
            &path,
            Some(json!({"max_sessions": 1})),
            StatusCode::OK,
        )
        .await?;
    let uma = streamspace_testkit::Api::login(&app.url, "uma", "uma-password").await?;
    uma.create_session(json!({"template": "desktop"})).await?;
    agent.expect_command().await?;
    let second = uma
        .call(
            Method::POST,
            "/api/v1/sessions",
            Some(json!({"template": "desktop"})),
        )
        .await?;
    assert_eq!(second.status, StatusCode::FORBIDDEN);
    assert_eq!(
        second.body["error"],
        "quota exceeded: 1 of 1 sessions in use: terminate one first"
    );
    let mine = uma
        .expect(Method::GET, "/api/v1/users/me/quota", None, StatusCode::OK)
        .await?;
    assert_eq!(mine["usage"]["sessions"], 1);
    let forbidden = uma
        .call(Method::PUT, &path, Some(json!({"max_sessions": 99})))
        .await?;
    assert_eq!(
        forbidden.status,
        StatusCode::FORBIDDEN,
        "users cannot raise their own quota"
    );
    Ok(())
}

/// An idle timeout too long to count in milliseconds wrapped around to a
/// negative one, and the reconciler hibernated the session at once.
async fn endless_idle_timeouts_never_hibernate(app: TestApp) -> anyhow::Result<()> {
    let (mut agent, _) = setup(&app).await?;
    let id = agent
        .run_session(
            &app.admin,
            json!({"template": "desktop", "idle_timeout": "1000000000years"}),
        )
        .await?;
    let shown = app.admin.session(&id).await?["idle_timeout"].clone();
    assert!(
        shown
            .as_str()
            .is_some_and(|s| s.starts_with("292271023years")),
        "{shown}"
    );
    // Three reconciler rounds (one a second) pass without a command; the
    // heartbeats keep the agent online meanwhile.
    for _ in 0..8 {
        agent
            .send(AgentMessage::Heartbeat {
                metrics: NodeMetrics::default(),
                sessions: Vec::new(),
                health: None,
            })
            .await?;
        let command =
            tokio::time::timeout(Duration::from_millis(400), agent.expect_command()).await;
        assert!(command.is_err(), "unexpected command {command:?}");
    }
    assert_eq!(app.admin.session(&id).await?["state"], "running");
    Ok(())
}

on_both_engines!(
    terminated_sessions_found_again_are_removed,
    audit_trail_and_heartbeats,
    quota_overrides_and_defaults,
    endless_idle_timeouts_never_hibernate
);
