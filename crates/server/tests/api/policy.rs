//! What templates let users ask for, enforced at the API, and what users
//! may see of templates.

use crate::fake_agent::{FakeAgent, enroll};
use crate::{TestApp, on_both_engines};
use reqwest::{Method, StatusCode};
use serde_json::json;
use streamspace_protocol::Action;
use streamspace_testkit::Api;

/// Only admins read a template's environment: it may hold credentials.
async fn users_do_not_read_template_secrets(app: TestApp) -> anyhow::Result<()> {
    app.admin
        .create_template(
            json!({"name": "desktop", "image": "streamspace/desktop:local",
            "env": {"PROXY": "http://proxy:3128"}, "secret_env": {"LICENSE": "s3cret"}}),
        )
        .await?;
    app.admin.create_user("alice", "alice-password").await?;
    let alice = Api::login(&app.url, "alice", "alice-password").await?;
    for path in ["/api/v1/templates", "/api/v1/templates/desktop"] {
        let shown = alice
            .expect(Method::GET, path, None, StatusCode::OK)
            .await?;
        let text = shown.to_string();
        assert!(
            !text.contains("s3cret") && !text.contains("proxy:3128"),
            "{path}: {text}"
        );
    }
    let admin = app
        .admin
        .expect(
            Method::GET,
            "/api/v1/templates/desktop",
            None,
            StatusCode::OK,
        )
        .await?;
    assert_eq!(admin["secret_env"]["LICENSE"], "s3cret", "admins manage it");
    Ok(())
}

/// A user cannot exceed the template's resources, override its
/// variables or switch idle hibernation off, unless the template says so;
/// what is allowed reaches the agent.
async fn requests_stay_within_the_template(app: TestApp) -> anyhow::Result<()> {
    app.admin
        .create_template(
            json!({"name": "desktop", "image": "streamspace/desktop:local",
            "resources": {"cpu": "1", "memory": "1Gi"}, "max_resources": {"memory": "2Gi"},
            "env": {"PROXY": "http://proxy:3128"}, "user_env": ["TZ"],
            "idle_timeout": "30m"}),
        )
        .await?;
    let (agent_id, secret) = enroll(&app.admin, "a").await?;
    let mut agent = FakeAgent::connect(&app.url, &agent_id, &secret).await?;
    app.admin.create_user("alice", "alice-password").await?;
    let alice = Api::login(&app.url, "alice", "alice-password").await?;
    for (body, field) in [
        (
            json!({"template": "desktop", "resources": {"cpu": "4"}}),
            "resources.cpu",
        ),
        (
            json!({"template": "desktop", "resources": {"memory": "3Gi"}}),
            "resources.memory",
        ),
        (
            json!({"template": "desktop", "env": {"PROXY": "http://evil:1"}}),
            "env.PROXY",
        ),
        (
            json!({"template": "desktop", "idle_timeout": "0"}),
            "idle_timeout",
        ),
    ] {
        let refused = alice
            .refused(
                Method::POST,
                "/api/v1/sessions",
                body,
                StatusCode::BAD_REQUEST,
            )
            .await?;
        assert_eq!(refused["field"], field, "{refused}");
    }
    let listed = alice
        .expect(Method::GET, "/api/v1/sessions", None, StatusCode::OK)
        .await?;
    assert_eq!(listed, json!([]), "refusals create nothing");

    let allowed = json!({"template": "desktop", "resources": {"memory": "2Gi"},
                         "env": {"TZ": "Europe/Paris"}});
    let session = alice.create_session(allowed).await?;
    assert_eq!(session["idle_timeout"], "30m");
    let start = agent.expect_command().await?;
    let Action::Start { spec } = start.action else {
        anyhow::bail!("expected start, got {:?}", start.action);
    };
    assert_eq!(spec.env["TZ"], "Europe/Paris");
    assert_eq!(spec.env["PROXY"], "http://proxy:3128");
    assert_eq!(spec.resources.memory.map(|m| m.bytes()), Some(2 << 30));
    assert_eq!(spec.security.pids_limit, Some(2048));
    Ok(())
}

on_both_engines!(
    users_do_not_read_template_secrets,
    requests_stay_within_the_template,
);
