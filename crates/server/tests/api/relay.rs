//! Requests for an agent connected to another replica (two control planes
//! on one PostgreSQL, the agent on B, the requests on A): the tunnel
//! request and the agent's failure report cross replicas, so the viewer on
//! A hears the agent's reason at once; pre-pulls and the goodbye on
//! deletion reach it too. (The bytes of a relayed tunnel, with a real
//! agent: `crates/cli/tests/e2e/replicas_relay.rs`.)

use crate::fake_agent::{FakeAgent, enroll};
use crate::{Engine, TestApp, spawn_app, spawn_replica};
use reqwest::{Method, StatusCode};
use serde_json::json;
use std::time::Duration;
use streamspace_protocol::{AgentMessage, ServerMessage, TunnelId};
use streamspace_testkit::rfb::{Refused, VncSocket};
use tokio::task::JoinHandle;

/// A on its own, B with a fake agent running one desktop session.
struct TwoReplicas {
    a: TestApp,
    /// Runs as long as the test holds it.
    _b: TestApp,
    agent: FakeAgent,
    agent_id: String,
    session_id: String,
}

async fn two_replicas() -> anyhow::Result<TwoReplicas> {
    let a = spawn_app(Engine::Postgres).await;
    let b = spawn_replica(&a).await;
    b.admin
        .create_template(json!({"name": "desktop", "image": "streamspace/desktop:local"}))
        .await?;
    let (agent_id, secret) = enroll(&b.admin, "on-b").await?;
    let mut agent = FakeAgent::connect(&b.url, &agent_id, &secret).await?;
    let session_id = agent
        .run_session(&b.admin, json!({"template": "desktop"}))
        .await?;
    Ok(TwoReplicas {
        a,
        _b: b,
        agent,
        agent_id,
        session_id,
    })
}

/// Opens a viewer on A until the agent on B is asked for its tunnel: B's
/// listener may not hear the very first notice (it connects in the
/// background at start); the later ones it does.
async fn viewer_on_a(
    replicas: &mut TwoReplicas,
) -> anyhow::Result<(JoinHandle<Option<Refused>>, TunnelId)> {
    for _ in 0..5 {
        let url = replicas.a.url.clone();
        let id = replicas.session_id.clone();
        let token = replicas.a.admin.token.clone().unwrap_or_default();
        let viewer =
            tokio::spawn(async move { VncSocket::connect(&url, &id, &token, &[]).await.err() });
        let asked = tokio::time::timeout(Duration::from_secs(3), replicas.agent.recv()).await;
        match asked {
            Ok(Ok(ServerMessage::OpenTunnel { tunnel_id, .. })) => return Ok((viewer, tunnel_id)),
            Ok(Ok(other)) => anyhow::bail!("expected open_tunnel, got {other:?}"),
            Ok(Err(err)) => return Err(err),
            Err(_) => viewer.abort(),
        }
    }
    anyhow::bail!("the agent on B was never asked for the tunnel a viewer on A waits for")
}

#[tokio::test]
async fn the_agents_failure_on_b_reaches_the_viewer_on_a_at_once() -> anyhow::Result<()> {
    let mut replicas = two_replicas().await?;
    let (viewer, tunnel_id) = viewer_on_a(&mut replicas).await?;
    // The id names the waiting replica: 16 hex digits before the random 32.
    assert_eq!(tunnel_id.as_str().len(), 48, "{tunnel_id}");
    let started = std::time::Instant::now();
    replicas
        .agent
        .send(AgentMessage::TunnelFailed {
            tunnel_id,
            error: "port closed".into(),
        })
        .await?;
    let refused = viewer.await?.expect("the viewer is refused");
    // The time limit (2 s here) would have been a 504 without the reason.
    assert_eq!(refused.status, 503, "{}", refused.error);
    assert!(refused.error.contains("port closed"), "{}", refused.error);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    Ok(())
}

#[tokio::test]
async fn prepulls_and_the_goodbye_reach_an_agent_on_another_replica() -> anyhow::Result<()> {
    let mut replicas = two_replicas().await?;
    // A private image: B reads the credentials from the store, the notice
    // names the template only.
    let template = replicas
        .a
        .admin
        .create_template(
            json!({"name": "private", "image": "registry.example.com/team/app:1",
            "registry_auth": {"username": "robot", "password": "hunter2-registry"}}),
        )
        .await?;
    let template_id = template["id"].as_str().unwrap_or_default().to_owned();
    // Until B listens, a notice may be missed: ask again until it arrives.
    let path = format!("/api/v1/templates/{template_id}/prepull");
    let mut asked = None;
    for _ in 0..5 {
        let answer = replicas.a.admin.call(Method::POST, &path, None).await?;
        assert_eq!(answer.status, StatusCode::ACCEPTED, "{:?}", answer.body);
        let heard = tokio::time::timeout(Duration::from_secs(2), replicas.agent.recv()).await;
        if let Ok(message) = heard {
            asked = Some(message?);
            break;
        }
    }
    let Some(ServerMessage::Prepull {
        image,
        registry_auth: Some(auth),
        ..
    }) = asked
    else {
        anyhow::bail!(
            "the pre-pull asked on A did not reach the agent on B with credentials: {asked:?}"
        );
    };
    assert_eq!(image, "registry.example.com/team/app:1");
    assert_eq!(
        (auth.username.as_str(), auth.password.as_str()),
        ("robot", "hunter2-registry")
    );

    let path = format!("/api/v1/agents/{}?force=true", replicas.agent_id);
    replicas
        .a
        .admin
        .expect(Method::DELETE, &path, None, StatusCode::NO_CONTENT)
        .await?;
    // What follows the pre-pull: the deleted session's stop, then goodbye.
    loop {
        match replicas.agent.recv().await? {
            ServerMessage::Goodbye { reason } => {
                assert!(reason.contains("removed"), "{reason}");
                break;
            }
            ServerMessage::Command(_) | ServerMessage::Prepull { .. } => {}
            other => anyhow::bail!("expected goodbye, got {other:?}"),
        }
    }
    Ok(())
}
