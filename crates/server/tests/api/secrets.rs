//! Templates' secrets at rest: the agent gets them in clear over its
//! control channel, the database never holds them in clear
//! (docs/SECURITY.md, `store/secrets.rs`).

use crate::fake_agent::{FakeAgent, enroll};
use crate::{TestApp, on_both_engines};
use serde_json::json;
use sqlx::Row;
use streamspace_protocol::{Action, Command};
use streamspace_testkit::Api;

const LICENSE: &str = "licence-s3cret-4711";
const PASSWORD: &str = "registry-pa55word-0815";

fn assert_secrets_in(command: &Command) -> anyhow::Result<()> {
    let Action::Start { spec } = &command.action else {
        anyhow::bail!("expected start, got {:?}", command.action);
    };
    assert_eq!(spec.env["LICENSE"], LICENSE);
    assert_eq!(spec.env["LANG"], "C.UTF-8");
    let auth = spec.registry_auth.as_ref().expect("registry credentials");
    assert_eq!(
        (auth.username.as_str(), auth.password.as_str()),
        ("robot", PASSWORD)
    );
    Ok(())
}

/// Every row of the tables that hold secrets, as a dump would show it.
async fn dump(app: &TestApp) -> anyhow::Result<String> {
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&app.database_url).await?;
    let mut text = String::new();
    for query in [
        "SELECT spec, secrets FROM templates",
        "SELECT spec, secrets FROM sessions",
        "SELECT payload, secrets FROM commands",
    ] {
        let rows = sqlx::query(query).fetch_all(&pool).await?;
        assert!(!rows.is_empty(), "{query}: no rows");
        for row in rows {
            for column in 0..2 {
                let value: Option<String> = row.try_get(column)?;
                text.push_str(&value.unwrap_or_default());
                text.push('\n');
            }
        }
    }
    pool.close().await;
    Ok(text)
}

/// The start command carries the template's secret variable and registry
/// password, first and when re-sent after a reconnect (read back from the
/// store); no row of templates, sessions or commands holds them in clear.
async fn secrets_reach_the_agent_but_not_the_database_in_clear(app: TestApp) -> anyhow::Result<()> {
    app.admin
        .create_template(
            json!({"name": "desktop", "image": "streamspace/desktop:local",
            "env": {"LANG": "C.UTF-8"}, "secret_env": {"LICENSE": LICENSE},
            "registry_auth": {"username": "robot", "password": PASSWORD}}),
        )
        .await?;
    let (agent_id, secret) = enroll(&app.admin, "a").await?;
    let mut agent = FakeAgent::connect(&app.url, &agent_id, &secret).await?;
    app.admin.create_user("alice", "alice-password").await?;
    let alice = Api::login(&app.url, "alice", "alice-password").await?;
    alice.create_session(json!({"template": "desktop"})).await?;
    let first = agent.expect_command().await?;
    assert_secrets_in(&first)?;
    agent.close().await;

    let mut again = FakeAgent::connect(&app.url, &agent_id, &secret).await?;
    let resent = again.expect_command().await?;
    assert_eq!(resent.id, first.id, "the same command, from the store");
    assert_secrets_in(&resent)?;

    let rows = dump(&app).await?;
    assert!(
        rows.contains("robot") && rows.contains("C.UTF-8"),
        "the rest stays readable: {rows}"
    );
    assert!(
        !rows.contains(LICENSE) && !rows.contains(PASSWORD),
        "a secret in clear: {rows}"
    );
    Ok(())
}

on_both_engines!(secrets_reach_the_agent_but_not_the_database_in_clear);
