//! Admission across control-plane replicas: two replicas on one PostgreSQL
//! database never admit more sessions than a quota allows.

use crate::fake_agent::{FakeAgent, enroll};
use crate::{Engine, TestApp, spawn_app, spawn_replica};
use reqwest::{Method, StatusCode};
use serde_json::json;
use std::time::Duration;
use streamspace_testkit::Api;

/// Users racing, each with a quota of one session and one create on each
/// replica at once: every pair is a chance for both replicas to pass the
/// check before either writes (without a shared lock, some pair does).
const USERS: usize = 16;

/// Two replicas on one PostgreSQL, a `desktop` template and an agent with
/// room for `capacity` sessions, connected to the first and seen by both.
async fn two_replicas_and_an_agent(capacity: u32) -> anyhow::Result<(TestApp, TestApp, FakeAgent)> {
    let first = spawn_app(Engine::Postgres).await;
    let second = spawn_replica(&first).await;
    first
        .admin
        .create_template(json!({"name": "desktop", "image": "streamspace/desktop:local"}))
        .await?;
    let (agent_id, secret) = enroll(&first.admin, "a").await?;
    let agent = FakeAgent::connect_with_capacity(&first.url, &agent_id, &secret, capacity).await?;
    // The second replica sees the agent once its heartbeat is stored.
    second
        .admin
        .wait_for_agent("a", Duration::from_secs(10))
        .await?;
    Ok((first, second, agent))
}

#[tokio::test]
async fn replicas_admit_no_more_than_the_quota() -> anyhow::Result<()> {
    // Room for every attempt: only quotas may refuse.
    let (first, second, _agent) = two_replicas_and_an_agent(100).await?;
    let mut pairs = Vec::new();
    for n in 0..USERS {
        let name = format!("user{n}");
        let user = first.admin.create_user(&name, "user-password").await?;
        let quota = format!(
            "/api/v1/users/{}/quota",
            user["id"].as_str().unwrap_or_default()
        );
        let one = Some(json!({"max_sessions": 1}));
        first
            .admin
            .expect(Method::PUT, &quota, one, StatusCode::OK)
            .await?;
        pairs.push((
            Api::login(&first.url, &name, "user-password").await?,
            Api::login(&second.url, &name, "user-password").await?,
        ));
    }
    let create = |api: Api| async move {
        let body = Some(json!({"template": "desktop"}));
        api.call(Method::POST, "/api/v1/sessions", body).await
    };
    let attempts: Vec<_> = pairs
        .into_iter()
        .map(|(a, b)| (tokio::spawn(create(a)), tokio::spawn(create(b))))
        .collect();
    for (n, (a, b)) in attempts.into_iter().enumerate() {
        let statuses = [a.await??.status, b.await??.status];
        let created = statuses
            .iter()
            .filter(|s| **s == StatusCode::CREATED)
            .count();
        assert_eq!(created, 1, "user{n}: {statuses:?}");
    }
    Ok(())
}

/// Capacity is admitted across replicas too: an agent with room for one
/// session gets exactly one, however many creates race on both replicas.
#[tokio::test]
async fn replicas_fill_an_agent_no_more_than_its_capacity() -> anyhow::Result<()> {
    let (first, second, _agent) = two_replicas_and_an_agent(1).await?;
    let create = |api: Api| async move {
        let body = Some(json!({"template": "desktop"}));
        api.call(Method::POST, "/api/v1/sessions", body).await
    };
    let attempts: Vec<_> = (0..USERS)
        .flat_map(|_| {
            [
                tokio::spawn(create(first.admin.clone())),
                tokio::spawn(create(second.admin.clone())),
            ]
        })
        .collect();
    let mut statuses = Vec::new();
    for attempt in attempts {
        statuses.push(attempt.await??.status);
    }
    let created = statuses
        .iter()
        .filter(|s| **s == StatusCode::CREATED)
        .count();
    assert_eq!(created, 1, "{statuses:?}");
    assert!(
        statuses
            .iter()
            .all(|s| *s == StatusCode::CREATED || *s == StatusCode::SERVICE_UNAVAILABLE),
        "{statuses:?}"
    );
    Ok(())
}
