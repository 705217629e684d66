//! Admission across control-plane replicas: two replicas on one PostgreSQL
//! database never admit more sessions than a quota allows.

use crate::fake_agent::{FakeAgent, enroll};
use crate::{Engine, spawn_app, spawn_replica};
use reqwest::{Method, StatusCode};
use serde_json::json;
use std::time::Duration;
use streamspace_testkit::Api;

/// Users racing, each with a quota of one session and one create on each
/// replica at once: every pair is a chance for both replicas to pass the
/// check before either writes (without a shared lock, some pair does).
const USERS: usize = 16;

#[tokio::test]
async fn replicas_admit_no_more_than_the_quota() -> anyhow::Result<()> {
    let first = spawn_app(Engine::Postgres).await;
    let second = spawn_replica(&first).await;
    first
        .admin
        .create_template(json!({"name": "desktop", "image": "streamspace/desktop:local"}))
        .await?;
    let (agent_id, secret) = enroll(&first.admin, "a").await?;
    // Room for every attempt: only quotas may refuse.
    let _agent = FakeAgent::connect_with_capacity(&first.url, &agent_id, &secret, 100).await?;
    // The second replica sees the agent once its heartbeat is stored.
    second
        .admin
        .wait_for_agent("a", Duration::from_secs(10))
        .await?;
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
