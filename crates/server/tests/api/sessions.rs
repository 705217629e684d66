//! Sessions against protocol-level agents: commands are stored before they
//! are sent, replayed until done, and only a session's own agent can report
//! on it.

use crate::fake_agent::{FakeAgent, enroll};
use crate::{TestApp, on_both_engines};
use reqwest::{Method, StatusCode};
use serde_json::json;
use std::time::Duration;
use streamspace_protocol::{Action, AgentMessage, Phase, ServerMessage, SessionReport};
use streamspace_testkit::api::Answer;
use streamspace_testkit::rfb::VncSocket;

async fn desktop(app: &TestApp) -> anyhow::Result<()> {
    app.admin
        .create_template(json!({"name": "desktop", "image": "streamspace/desktop:local"}))
        .await?;
    Ok(())
}

async fn new_session(app: &TestApp) -> anyhow::Result<String> {
    let session = app
        .admin
        .create_session(json!({"template": "desktop"}))
        .await?;
    Ok(session["id"].as_str().unwrap_or_default().to_owned())
}

async fn phase_of(app: &TestApp, id: &str) -> anyhow::Result<String> {
    Ok(app.admin.session(id).await?["phase"]
        .as_str()
        .unwrap_or_default()
        .to_owned())
}

async fn commands_are_replayed_until_done(app: TestApp) -> anyhow::Result<()> {
    desktop(&app).await?;
    let (agent_id, secret) = enroll(&app.admin, "a").await?;
    let mut agent = FakeAgent::connect(&app.url, &agent_id, &secret).await?;
    let id = new_session(&app).await?;
    let start = agent.expect_command().await?;
    assert_eq!(start.session_id, id);
    assert!(
        matches!(&start.action, Action::Start { spec } if spec.image == "streamspace/desktop:local")
    );

    // Lost before the agent answered: the same command comes again.
    agent.close().await;
    let mut agent = FakeAgent::connect(&app.url, &agent_id, &secret).await?;
    let again = agent.expect_command().await?;
    assert_eq!(again.id, start.id);
    agent.complete(&again).await?;
    agent
        .report(SessionReport::new(&id, Phase::Running))
        .await?;
    app.admin
        .wait_for_phase(&id, "Running", Duration::from_secs(5))
        .await?;

    // While the agent is offline, a hibernate is accepted and queued; on
    // reconnect it is the first command, so the completed start was not
    // replayed.
    agent.close().await;
    app.admin
        .wait_for_phase(&id, "Running", Duration::from_secs(5))
        .await?;
    let hibernating = app.admin.set_state(&id, "hibernated").await?;
    assert_eq!(hibernating["phase"], "Hibernating");
    let mut agent = FakeAgent::connect(&app.url, &agent_id, &secret).await?;
    let hibernate = agent.expect_command().await?;
    assert_eq!(
        hibernate.action,
        Action::Hibernate,
        "only the open command is replayed"
    );
    agent.complete(&hibernate).await?;
    agent
        .report(SessionReport::new(&id, Phase::Hibernated))
        .await?;
    app.admin
        .wait_for_phase(&id, "Hibernated", Duration::from_secs(5))
        .await?;
    Ok(())
}

async fn agents_speak_only_for_themselves(app: TestApp) -> anyhow::Result<()> {
    desktop(&app).await?;
    let (a_id, a_secret) = enroll(&app.admin, "a").await?;
    let mut a = FakeAgent::connect(&app.url, &a_id, &a_secret).await?;
    let id = a
        .run_session(&app.admin, json!({"template": "desktop"}))
        .await?;

    let (b_id, b_secret) = enroll(&app.admin, "b").await?;
    let mut b = FakeAgent::connect(&app.url, &b_id, &b_secret).await?;
    b.report(SessionReport::new(&id, Phase::Failed).with_message("lies"))
        .await?;
    b.send(AgentMessage::Inventory {
        sessions: vec![SessionReport::new(&id, Phase::Terminated)],
    })
    .await?;
    // Whatever order the two connections' messages are applied in, B's
    // cannot touch A's session: it stays as A reports it.
    a.report(SessionReport::new(&id, Phase::Running).with_message("still here"))
        .await?;
    streamspace_testkit::eventually(Duration::from_secs(5), "A's report", || async {
        let s = app.admin.session(&id).await?;
        Ok((s["message"] == "still here").then_some(()))
    })
    .await?;
    assert_eq!(phase_of(&app, &id).await?, "Running");

    // B cannot claim a tunnel meant for A.
    let token = app.admin.token.clone().unwrap_or_default();
    let url = app.url.clone();
    let viewer =
        tokio::spawn(async move { VncSocket::connect(&url, &id, &token, &[]).await.err() });
    let tunnel_id = match a.recv().await? {
        ServerMessage::OpenTunnel { tunnel_id, .. } => tunnel_id,
        other => anyhow::bail!("expected open_tunnel, got {other:?}"),
    };
    let claim = reqwest::Client::new()
        .get(
            app.url
                .join(&format!("/api/v1/agents/tunnels/{tunnel_id}"))?,
        )
        .bearer_auth(&b.secret)
        .header("connection", "upgrade")
        .header("upgrade", "streamspace-tunnel/1")
        .send()
        .await?;
    assert_eq!(claim.status(), StatusCode::NOT_FOUND);
    // A says it cannot reach the session: the viewer hears why, at once.
    a.send(AgentMessage::TunnelFailed {
        tunnel_id,
        error: "port closed".into(),
    })
    .await?;
    let refused = viewer.await?.expect("the viewer is refused");
    assert_eq!(refused.status, 503);
    assert!(refused.error.contains("port closed"), "{}", refused.error);
    Ok(())
}

async fn tunnel_requests_time_out_clearly(app: TestApp) -> anyhow::Result<()> {
    desktop(&app).await?;
    let (a_id, a_secret) = enroll(&app.admin, "a").await?;
    let mut a = FakeAgent::connect(&app.url, &a_id, &a_secret).await?;
    let id = a
        .run_session(&app.admin, json!({"template": "desktop"}))
        .await?;
    let token = app.admin.token.clone().unwrap_or_default();
    let refused = VncSocket::connect(&app.url, &id, &token, &[])
        .await
        .err()
        .expect("refused");
    assert_eq!(refused.status, 504, "{}", refused.error);
    Ok(())
}

/// `answer` is a 503 with exactly this error.
fn assert_unavailable(answer: &Answer, error: &str) {
    assert_eq!(
        answer.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        answer.body
    );
    assert_eq!(answer.body["error"], error, "{}", answer.body);
}

/// `/vnc` answers a request that is not a WebSocket handshake with a JSON
/// 400 naming what is missing, before looking at the session.
async fn vnc_names_what_a_handshake_lacks(app: TestApp) -> anyhow::Result<()> {
    let token = app.admin.token.clone().unwrap_or_default();
    let url = app.url.join("/vnc/no-such-session")?;
    let upgrade = [("connection", "Upgrade"), ("upgrade", "websocket")];
    let cases: [(&[(&str, &str)], &str); 4] = [
        (&[], "send Connection: Upgrade"),
        (&upgrade[..1], "send Upgrade: websocket"),
        (&upgrade, "send Sec-WebSocket-Version: 13"),
        (
            &[upgrade[0], upgrade[1], ("sec-websocket-version", "13")],
            "send a Sec-WebSocket-Key",
        ),
    ];
    for (headers, fix) in cases {
        let mut request = reqwest::Client::new().get(url.clone()).bearer_auth(&token);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().await?;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{fix}");
        let body: serde_json::Value = response.json().await?;
        let error = body["error"].as_str().unwrap_or_default();
        assert!(error.contains(fix), "{error:?} should say {fix:?}");
    }
    Ok(())
}

async fn placement_explains_why_nothing_fits(app: TestApp) -> anyhow::Result<()> {
    desktop(&app).await?;
    let create = || {
        app.admin.call(
            Method::POST,
            "/api/v1/sessions",
            Some(json!({"template": "desktop"})),
        )
    };
    let none = create().await?;
    assert_eq!(none.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        none.body["error"]
            .as_str()
            .unwrap_or_default()
            .contains("no agent is enrolled"),
        "{}",
        none.body
    );

    let (offline_id, _) = enroll(&app.admin, "offline").await?;
    let (drained_id, drained_secret) = enroll(&app.admin, "drained").await?;
    let _drained = FakeAgent::connect(&app.url, &drained_id, &drained_secret).await?;
    app.admin
        .expect(
            Method::POST,
            &format!("/api/v1/agents/{drained_id}/drain"),
            None,
            StatusCode::OK,
        )
        .await?;
    let (full_id, full_secret) = enroll(&app.admin, "full").await?;
    let mut full = FakeAgent::connect(&app.url, &full_id, &full_secret).await?;
    for _ in 0..2 {
        let answer = create().await?;
        assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.body);
        full.expect_command().await?;
    }
    assert_unavailable(
        &create().await?,
        "no online agent with free capacity: 1 offline, 1 draining, 1 full",
    );
    let listed = app
        .admin
        .expect(Method::GET, "/api/v1/sessions", None, StatusCode::OK)
        .await?;
    assert_eq!(
        listed.as_array().map(Vec::len),
        Some(2),
        "refused requests created nothing"
    );
    let create_on = |agent_id: &str| {
        app.admin.call(
            Method::POST,
            "/api/v1/sessions",
            Some(json!({"template": "desktop", "agent_id": agent_id})),
        )
    };
    let explicit = create_on(&offline_id).await?;
    assert_eq!(explicit.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        explicit.body["error"]
            .as_str()
            .unwrap_or_default()
            .contains("offline")
    );
    // Naming an agent reads only its load, which must still show it full.
    assert_unavailable(
        &create_on(&full_id).await?,
        "agent full cannot take the session: it is full",
    );
    let shown = app
        .admin
        .expect(
            Method::GET,
            &format!("/api/v1/agents/{full_id}"),
            None,
            StatusCode::OK,
        )
        .await?;
    assert_eq!(shown["session_count"], 2, "{shown}");
    Ok(())
}

async fn inventory_drift_fails_missing_sessions(app: TestApp) -> anyhow::Result<()> {
    desktop(&app).await?;
    let (agent_id, secret) = enroll(&app.admin, "a").await?;
    let mut agent = FakeAgent::connect(&app.url, &agent_id, &secret).await?;
    let id = agent
        .run_session(&app.admin, json!({"template": "desktop"}))
        .await?;
    agent.close().await;
    // Reconnects with an inventory that no longer has the session.
    let _agent = FakeAgent::connect(&app.url, &agent_id, &secret).await?;
    let failed = app
        .admin
        .wait_for_phase(&id, "Failed", Duration::from_secs(5))
        .await?;
    assert!(
        failed["message"]
            .as_str()
            .unwrap_or_default()
            .contains("outside StreamSpace")
    );
    Ok(())
}

on_both_engines!(
    commands_are_replayed_until_done,
    agents_speak_only_for_themselves,
    tunnel_requests_time_out_clearly,
    vnc_names_what_a_handshake_lacks,
    placement_explains_why_nothing_fits,
    inventory_drift_fails_missing_sessions
);
