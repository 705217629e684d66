//! GPU placement with fake inventories: agents announce GPUs in their
//! hello, only agents with enough free GPUs are chosen (sessions that are
//! not ended hold theirs), and when none can take a session the 503 says
//! how many GPUs no agent had free.

use crate::fake_agent::{FakeAgent, enroll};
use crate::{Engine, spawn_app};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::Duration;
use streamspace_protocol::Capacity;
use streamspace_testkit::Api;
use streamspace_testkit::api::Answer;

/// Enrolls and connects an agent offering `gpus` GPUs; returns it and its id.
async fn gpu_agent(
    admin: &Api,
    url: &url::Url,
    name: &str,
    gpus: u32,
) -> anyhow::Result<(FakeAgent, String)> {
    let (id, secret) = enroll(admin, name).await?;
    let capacity = Capacity {
        max_sessions: 10,
        gpus,
        gpu_model: (gpus > 0).then(|| "Fake GPU".to_owned()),
        ..Capacity::default()
    };
    let agent = FakeAgent::connect_offering(url, &id, &secret, capacity).await?;
    admin.wait_for_agent(name, Duration::from_secs(10)).await?;
    Ok((agent, id))
}

/// `POST /api/v1/sessions` with `body`, whatever the answer.
async fn create(admin: &Api, body: Value) -> anyhow::Result<Answer> {
    admin
        .call(Method::POST, "/api/v1/sessions", Some(body))
        .await
}

async fn placed_on(admin: &Api, gpus: u32) -> anyhow::Result<String> {
    let body = json!({"template": "cuda", "resources": {"gpu": gpus}});
    let session = admin.create_session(body).await?;
    Ok(session["agent_id"].as_str().unwrap_or_default().to_owned())
}

#[tokio::test]
async fn only_agents_with_free_gpus_are_chosen() -> anyhow::Result<()> {
    let app = spawn_app(Engine::Sqlite).await;
    let admin = &app.admin;
    let template = json!({"name": "cuda", "image": "streamspace/desktop:local",
                          "resources": {"gpu": 1}, "max_resources": {"gpu": 2}});
    admin.create_template(template).await?;
    let (_none, none) = gpu_agent(admin, &app.url, "no-gpus", 0).await?;
    let (_one, one) = gpu_agent(admin, &app.url, "one-gpu", 1).await?;
    let (_two, two) = gpu_agent(admin, &app.url, "two-gpus", 2).await?;

    // Agents show what they have and what is held.
    let agents = admin
        .expect(Method::GET, "/api/v1/agents", None, StatusCode::OK)
        .await?;
    let by_name: BTreeMap<&str, &Value> = (agents.as_array().into_iter().flatten())
        .map(|a| (a["name"].as_str().unwrap_or_default(), a))
        .collect();
    assert_eq!(by_name["two-gpus"]["capacity"]["gpus"], 2);
    assert_eq!(by_name["two-gpus"]["capacity"]["gpu_model"], "Fake GPU");
    assert_eq!(
        by_name["no-gpus"]["capacity"].get("gpus"),
        None,
        "none: left out"
    );

    // Two GPUs: only one agent has them.
    assert_eq!(placed_on(admin, 2).await?, two);
    // One more: the agent with two is full now.
    assert_eq!(placed_on(admin, 1).await?, one);
    let agent = admin
        .expect(
            Method::GET,
            &format!("/api/v1/agents/{two}"),
            None,
            StatusCode::OK,
        )
        .await?;
    assert_eq!(agent["gpus_in_use"], 2);

    // Every GPU is held: the refusal says so, and counts why.
    let refused = create(admin, json!({"template": "cuda"})).await?;
    assert_eq!(
        refused.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        refused.body
    );
    let message = refused.body["error"].as_str().unwrap_or_default();
    assert!(
        message.starts_with("no online agent has 1 free GPU: 3 short of free GPUs"),
        "{message}"
    );
    assert!(message.contains("--gpus"), "{message}");

    // A session without GPUs still goes anywhere there is room.
    admin
        .create_template(json!({"name": "plain", "image": "streamspace/desktop:local"}))
        .await?;
    let plain = admin.create_session(json!({"template": "plain"})).await?;
    assert_eq!(plain["agent_id"], none, "the least loaded");
    Ok(())
}

#[tokio::test]
async fn without_any_gpu_the_refusal_says_so_and_users_stay_within_the_maximum()
-> anyhow::Result<()> {
    let app = spawn_app(Engine::Sqlite).await;
    let admin = &app.admin;
    admin
        .create_template(json!({"name": "cuda", "image": "streamspace/desktop:local",
                                "resources": {"gpu": 1}, "max_resources": {"gpu": 2}}))
        .await?;
    let (_agent, _) = gpu_agent(admin, &app.url, "cpu-only", 0).await?;
    let refused = create(admin, json!({"template": "cuda"})).await?;
    assert_eq!(refused.status, StatusCode::SERVICE_UNAVAILABLE);
    let message = refused.body["error"].as_str().unwrap_or_default();
    assert!(
        message.contains("has 1 free GPU: 1 short of free GPUs"),
        "{message}"
    );
    // Over the template's maximum: the user's fault, named.
    let over = create(admin, json!({"template": "cuda", "resources": {"gpu": 3}})).await?;
    assert_eq!(over.status, StatusCode::BAD_REQUEST);
    assert_eq!(over.body["field"], "resources.gpu", "{}", over.body);
    Ok(())
}
