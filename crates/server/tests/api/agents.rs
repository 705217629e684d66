//! Agents: enrollment, removal, and secrets that are never stored in clear.

use crate::fake_agent::{FakeAgent, enroll};
use crate::{Engine, TestApp, on_both_engines, spawn_app};
use reqwest::{Method, StatusCode};
use serde_json::json;
use sqlx::{Connection, Row};
use std::time::Duration;

async fn removed_agents_are_cut_off(app: TestApp) -> anyhow::Result<()> {
    let (id, secret) = enroll(&app.admin, "gone").await?;
    let agent = FakeAgent::connect(&app.url, &id, &secret).await?;
    let agents = app.admin.agents().await?;
    assert_eq!(agents[0]["status"], "online");
    assert_eq!(agents[0]["capabilities"]["hibernation"], true);
    agent.close().await;
    streamspace_testkit::eventually(Duration::from_secs(5), "offline", || async {
        let agents = app.admin.agents().await?;
        Ok((agents[0]["status"] == "offline").then_some(()))
    })
    .await?;
    app.admin
        .expect(
            Method::DELETE,
            &format!("/api/v1/agents/{id}"),
            None,
            StatusCode::NO_CONTENT,
        )
        .await?;
    let refused = FakeAgent::connect(&app.url, &id, &secret).await;
    assert!(refused.is_err(), "a removed agent's secret no longer works");
    Ok(())
}

async fn enrollment_tokens_are_single_use(app: TestApp) -> anyhow::Result<()> {
    let token = app.admin.enrollment_token().await?;
    let anonymous = streamspace_testkit::Api::new(&app.url);
    let register = |name: &str| {
        let body = json!({"enrollment_token": token, "name": name, "platform": "docker"});
        anonymous.call(Method::POST, "/api/v1/agents/register", Some(body))
    };
    let bad_name = register("Bad Name").await?;
    assert_eq!(bad_name.status, StatusCode::BAD_REQUEST);
    // What an enrolling host describes itself with is bounded and checked.
    let labels: serde_json::Map<String, serde_json::Value> =
        (0..65).map(|i| (format!("k{i}"), json!("v"))).collect();
    for (extra, field) in [
        (json!({"region": "eu west"}), "region"),
        (json!({"labels": labels}), "labels"),
        (
            json!({"capacity": {"max_sessions": 2, "tpus": 8}}),
            "capacity.tpus",
        ),
        (json!({"capacity": {"gpus": 5000}}), "capacity.gpus"),
        (
            json!({"capacity": {"gpus": 1, "gpu_model": "x".repeat(101)}}),
            "capacity.gpu_model",
        ),
    ] {
        let mut body = json!({"enrollment_token": token, "name": "odd", "platform": "docker"});
        if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
            body.extend(extra.clone());
        }
        let path = "/api/v1/agents/register";
        let refused = anonymous
            .refused(Method::POST, path, body, StatusCode::BAD_REQUEST)
            .await?;
        assert_eq!(refused["field"], field, "{refused}");
    }
    let first = register("first").await?;
    assert_eq!(
        first.status,
        StatusCode::CREATED,
        "a refused registration did not use the token"
    );
    let second = register("second").await?;
    assert_eq!(second.status, StatusCode::UNAUTHORIZED);
    assert!(
        second.body["error"]
            .as_str()
            .unwrap_or_default()
            .contains("already used")
    );
    Ok(())
}

on_both_engines!(removed_agents_are_cut_off, enrollment_tokens_are_single_use);

/// Passwords, login tokens, enrollment tokens and agent secrets are stored
/// only as hashes.
#[tokio::test]
async fn secrets_are_hashed_at_rest() -> anyhow::Result<()> {
    let app = spawn_app(Engine::Sqlite).await;
    let login_token = app.admin.token.clone().unwrap_or_default();
    let enrollment = app.admin.enrollment_token().await?;
    let (agent_id, secret) = enroll(&app.admin, "hashed").await?;
    let db = app.dir.path().join("streamspace.db");
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display())).await?;
    let dump: Vec<String> = sqlx::query(
        "SELECT password_hash AS v FROM users UNION ALL SELECT token_hash FROM api_tokens \
         UNION ALL SELECT token_hash FROM enrollment_tokens UNION ALL SELECT secret_hash FROM agents",
    )
    .fetch_all(&mut conn)
    .await?
    .iter()
    .map(|r| r.get::<String, _>("v"))
    .collect();
    assert!(
        dump.iter().any(|v| v.starts_with("$argon2id$")),
        "argon2id passwords"
    );
    for secret in [&login_token, &enrollment, &secret] {
        assert!(
            !dump.iter().any(|v| v.contains(secret.as_str())),
            "{secret} stored in clear"
        );
    }
    let whole = std::fs::read(&db)?;
    let text = String::from_utf8_lossy(&whole);
    assert!(!text.contains(&secret) && !text.contains(&login_token));
    assert!(!agent_id.is_empty());
    Ok(())
}

/// Whatever the umask, only the control plane's user can read its data:
/// the data directory is 0700, the database and its WAL 0600.
#[tokio::test]
async fn the_data_directory_is_private() -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let app = spawn_app(Engine::Sqlite).await;
    app.admin.create_user("someone", "someone-password").await?;
    let mode = |name: &str| -> anyhow::Result<u32> {
        let path = app.dir.path().join(name);
        Ok(std::fs::metadata(path)?.permissions().mode() & 0o777)
    };
    assert_eq!(mode("")?, 0o700, "data directory");
    assert_eq!(mode("streamspace.db")?, 0o600);
    assert_eq!(mode("streamspace.db-wal")?, 0o600);
    Ok(())
}
