//! Agents are not trusted with identity: a host can only bring back
//! sessions this control plane sealed for it, can only report usage for its
//! own sessions, and cannot flood the store.

use crate::fake_agent::{FakeAgent, enroll};
use crate::{TestApp, on_both_engines, run_sql};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::time::Duration;
use streamspace_protocol::{
    Action, AgentMessage, NodeMetrics, Phase, ServerMessage, SessionOrigin, SessionReport,
    SessionUsage,
};
use streamspace_testkit::Api;

async fn setup(app: &TestApp) -> anyhow::Result<(FakeAgent, String, Value)> {
    let template = app
        .admin
        .create_template(json!({"name": "desktop", "image": "streamspace/desktop:local"}))
        .await?;
    let (id, secret) = enroll(&app.admin, "a").await?;
    let agent = FakeAgent::connect(&app.url, &id, &secret).await?;
    Ok((agent, id, template))
}

async fn admin_id(app: &TestApp) -> anyhow::Result<String> {
    let me = app
        .admin
        .expect(Method::GET, "/api/v1/users/me", None, StatusCode::OK)
        .await?;
    Ok(me["id"].as_str().unwrap_or_default().to_owned())
}

async fn all_sessions(api: &Api) -> anyhow::Result<Value> {
    api.expect(
        Method::GET,
        "/api/v1/sessions?all=true&include_terminated=true",
        None,
        StatusCode::OK,
    )
    .await
}

async fn agent_view(app: &TestApp, agent_id: &str) -> anyhow::Result<Value> {
    app.admin
        .expect(
            Method::GET,
            &format!("/api/v1/agents/{agent_id}"),
            None,
            StatusCode::OK,
        )
        .await
}

/// A compromised host reports a "Running" desktop labelled as the admin's,
/// with a made-up seal and with none: it appears in nobody's list, and
/// admins see it on the agent.
async fn forged_sessions_are_never_adopted(app: TestApp) -> anyhow::Result<()> {
    let (agent, agent_id, template) = setup(&app).await?;
    let secret = agent.secret.clone();
    agent.close().await;
    let forged = SessionOrigin {
        user: "admin".into(),
        template: "desktop".into(),
        user_id: Some(admin_id(&app).await?.into()),
        template_id: template["id"].as_str().map(Into::into),
        seal: Some("0123456789abcdef0123456789abcdef".into()),
    };
    let unsealed = SessionOrigin {
        seal: None,
        ..forged.clone()
    };
    let inventory = vec![
        SessionReport::new("01234567-89ab-7def-8123-456789abcde1", Phase::Running)
            .with_origin(forged),
        SessionReport::new("01234567-89ab-7def-8123-456789abcde2", Phase::Running)
            .with_origin(unsealed),
        SessionReport::new("01234567-89ab-7def-8123-456789abcde3", Phase::Running)
            .with_origin(SessionOrigin::named("admin", "desktop")),
        // What admins are shown is the agent's to choose, so it is cut short.
        SessionReport::new("01234567-89ab-7def-8123-456789abcde4", Phase::Running)
            .with_origin(SessionOrigin::named("x".repeat(100_000), "desktop")),
    ];
    let _agent = FakeAgent::connect_with(&app.url, &agent_id, &secret, inventory).await?;
    let flagged = streamspace_testkit::eventually(
        Duration::from_secs(5),
        "unverified sessions on the agent",
        || async {
            let view = agent_view(&app, &agent_id).await?;
            let list = view["unverified_sessions"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            Ok((list.len() == 4).then_some(list))
        },
    )
    .await?;
    assert_eq!(flagged[0]["claimed_user"], "admin");
    let long = flagged[3]["claimed_user"]
        .as_str()
        .unwrap_or_default()
        .len();
    assert!((100..=104).contains(&long), "a claim of {long} bytes kept");
    assert!(
        flagged[0]["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("seal"),
        "{flagged:?}"
    );
    assert_eq!(
        all_sessions(&app.admin).await?,
        json!([]),
        "in nobody's list"
    );
    Ok(())
}

/// A session this control plane placed, whose record was lost (a database
/// restored from an older backup), comes back with its seal and is adopted
/// for its owner; the same seal reported by another agent is refused.
async fn sealed_sessions_are_adopted_only_from_their_agent(app: TestApp) -> anyhow::Result<()> {
    let (mut agent, agent_id, _) = setup(&app).await?;
    let session = app
        .admin
        .create_session(json!({"template": "desktop"}))
        .await?;
    let id = session["id"].as_str().unwrap_or_default().to_owned();
    let start = agent.expect_command().await?;
    let Action::Start { spec } = start.action else {
        anyhow::bail!("expected a start command, got {:?}", start.action);
    };
    assert_eq!(spec.seal.len(), 32, "the start command carries the seal");
    let origin = SessionOrigin {
        user: spec.user.clone(),
        template: spec.template.clone(),
        user_id: Some(spec.user_id.clone()),
        template_id: Some(spec.template_id.clone()),
        seal: Some(spec.seal.clone()),
    };
    let secret = agent.secret.clone();
    agent.close().await;
    run_sql(&app, &format!("DELETE FROM sessions WHERE id = '{id}'")).await?;

    // Another enrolled host repeats the seal: not its session.
    let (other_id, other_secret) = enroll(&app.admin, "b").await?;
    let report = SessionReport::new(&id, Phase::Running).with_origin(origin.clone());
    let _other =
        FakeAgent::connect_with(&app.url, &other_id, &other_secret, vec![report.clone()]).await?;
    streamspace_testkit::eventually(Duration::from_secs(5), "flagged on b", || async {
        let view = agent_view(&app, &other_id).await?;
        Ok((view["unverified_sessions"].as_array().map(Vec::len) == Some(1)).then_some(()))
    })
    .await?;
    assert_eq!(all_sessions(&app.admin).await?, json!([]));

    let _agent = FakeAgent::connect_with(&app.url, &agent_id, &secret, vec![report]).await?;
    let adopted = app
        .admin
        .wait_for_phase(&id, "Running", Duration::from_secs(5))
        .await?;
    assert_eq!(
        (adopted["user"].as_str(), adopted["agent_id"].as_str()),
        (Some("admin"), Some(agent_id.as_str()))
    );
    // The audit log says who brought it back: the agent, once. It is
    // written just after the session, so it may trail the phase a little.
    let path = format!("/api/v1/audit?kind=session.create&target=session:{id}");
    let adoptions =
        streamspace_testkit::eventually(Duration::from_secs(5), "the adoption audited", || async {
            let log = app
                .admin
                .expect(Method::GET, &path, None, StatusCode::OK)
                .await?;
            let adoptions: Vec<Value> = log["events"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|e| e["detail"]["adopted"] == true)
                .cloned()
                .collect();
            Ok((!adoptions.is_empty()).then_some(adoptions))
        })
        .await?;
    assert_eq!(adoptions.len(), 1, "{adoptions:?}");
    assert_eq!(adoptions[0]["actor"], "agent:a");
    Ok(())
}

/// An agent's heartbeat describes its own sessions only: figures it sends
/// for another agent's session are not shown.
async fn usage_only_for_own_sessions(app: TestApp) -> anyhow::Result<()> {
    let (mut agent, _, _) = setup(&app).await?;
    let id = agent
        .run_session(&app.admin, json!({"template": "desktop"}))
        .await?;
    let (other_id, other_secret) = enroll(&app.admin, "b").await?;
    let mut other = FakeAgent::connect(&app.url, &other_id, &other_secret).await?;
    let claims = |cpu| AgentMessage::Heartbeat {
        metrics: NodeMetrics::default(),
        sessions: vec![SessionUsage {
            session_id: id.clone().into(),
            cpu_millicores: cpu,
            memory_bytes: 1 << 20,
        }],
        health: None,
    };
    // Only the heartbeats below: a background one would replace them.
    agent.stop_heartbeats();
    other.stop_heartbeats();
    agent.send(claims(123)).await?;
    other.send(claims(999)).await?;
    let shown = streamspace_testkit::eventually(Duration::from_secs(5), "usage", || async {
        let usage = app.admin.session(&id).await?["usage"].clone();
        Ok((!usage.is_null()).then_some(usage))
    })
    .await?;
    assert_eq!(shown["cpu"], "123m", "the session's own agent's figures");
    Ok(())
}

/// An agent that floods the control plane is cut off, and what it reports
/// is cut to size before it is stored.
async fn agents_cannot_flood_the_store(app: TestApp) -> anyhow::Result<()> {
    let (mut agent, _, _) = setup(&app).await?;
    let id = agent
        .run_session(&app.admin, json!({"template": "desktop"}))
        .await?;
    let huge = "x".repeat(100_000);
    agent
        .report(SessionReport::new(&id, Phase::Failed).with_message(&huge))
        .await?;
    let failed = app
        .admin
        .wait_for_phase(&id, "Failed", Duration::from_secs(5))
        .await?;
    let kept = failed["message"].as_str().unwrap_or_default().len();
    assert!((2000..4000).contains(&kept), "message of {kept} bytes kept");

    let heartbeat = AgentMessage::Heartbeat {
        metrics: NodeMetrics::default(),
        sessions: Vec::new(),
        health: None,
    };
    let mut sent = 0;
    while sent < 5000 && agent.send(heartbeat.clone()).await.is_ok() {
        sent += 1;
    }
    let goodbye = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match agent.recv().await {
                Ok(ServerMessage::Goodbye { reason }) => return Ok(reason),
                Ok(_) => continue,
                Err(err) => return Err(err),
            }
        }
    })
    .await??;
    assert!(goodbye.contains("messages a second"), "{goodbye}");
    Ok(())
}

/// An agent cannot make the control plane do unbounded work with huge
/// inventories: they are charged against its rate by length, so a flood of
/// them ends its connection instead of the store's time.
async fn huge_inventories_are_charged_by_length(app: TestApp) -> anyhow::Result<()> {
    let (mut agent, _, _) = setup(&app).await?;
    let bogus: Vec<SessionReport> = (0..10_000)
        .map(|n| SessionReport::new(format!("00000000-0000-7000-8000-{n:012}"), Phase::Running))
        .collect();
    let inventory = AgentMessage::Inventory { sessions: bogus };
    for _ in 0..3 {
        if agent.send(inventory.clone()).await.is_err() {
            break;
        }
    }
    let goodbye = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            match agent.recv().await {
                Ok(ServerMessage::Goodbye { reason }) => return Ok(reason),
                Ok(_) => continue,
                Err(err) => return Err(err),
            }
        }
    })
    .await??;
    assert!(goodbye.contains("inventory counts"), "{goodbye}");
    Ok(())
}

/// A control message over the 1 MiB limit ends the agent's connection
/// before any of it is read into the store: the session keeps the phase
/// and message it had.
async fn oversized_messages_end_the_connection(app: TestApp) -> anyhow::Result<()> {
    let (mut agent, agent_id, _) = setup(&app).await?;
    let id = agent
        .run_session(&app.admin, json!({"template": "desktop"}))
        .await?;
    let over = "x".repeat((1 << 20) + 1);
    let report = SessionReport::new(&id, Phase::Failed).with_message(&over);
    // The write may already fail once the server closes; either way the
    // connection must end.
    let _ = agent.report(report).await;
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if agent.recv().await.is_err() {
                return;
            }
        }
    })
    .await;
    assert!(
        ended.is_ok(),
        "the connection outlived a message over 1 MiB"
    );
    streamspace_testkit::eventually(Duration::from_secs(10), "agent offline", || async {
        let agent = agent_view(&app, &agent_id).await?;
        Ok((agent["status"] == "offline").then_some(()))
    })
    .await?;
    let session = app
        .admin
        .expect(
            Method::GET,
            &format!("/api/v1/sessions/{id}"),
            None,
            StatusCode::OK,
        )
        .await?;
    assert_eq!(session["phase"], "Running", "{session}");
    assert!(session["message"].is_null(), "{session}");
    Ok(())
}

on_both_engines!(
    oversized_messages_end_the_connection,
    huge_inventories_are_charged_by_length,
    forged_sessions_are_never_adopted,
    sealed_sessions_are_adopted_only_from_their_agent,
    usage_only_for_own_sessions,
    agents_cannot_flood_the_store,
);
