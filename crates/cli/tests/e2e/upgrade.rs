//! The old-binary test (docs/UPGRADING.md): the previous release (the commit
//! in tests/upgrade/previous-release, built by scripts/test-upgrade.sh,
//! which runs this test) and this one on one PostgreSQL database that this
//! one migrated, during a rolling upgrade. An old replica, an old Docker
//! agent and new replicas, behind a load balancer in miniature
//! (`front.rs`): logins, templates and sessions work across them, and an
//! old agent follows the upgrade from replica to replica.

use crate::front::Front;
use crate::{RUNNING_LIMIT, assert_vnc_works, bin, desktop_template, require_desktop_image};
use anyhow::Context;
use http::{Method, StatusCode};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::time::Duration;
use streamspace_testkit::docker::Cleanup;
use streamspace_testkit::{AgentProcess, Api, ControlPlane, Mode, eventually, postgres};

/// How long an agent may take to find the next replica: an old agent does
/// not know `reconnect` and waits out its backoff (at most 1.5 s a try).
const AGENT_MOVES: Duration = Duration::from_secs(10);

fn previous_release() -> anyhow::Result<PathBuf> {
    let path = std::env::var("STREAMSPACE_PREVIOUS_BIN")
        .context("STREAMSPACE_PREVIOUS_BIN is not set: run scripts/test-upgrade.sh")?;
    Ok(PathBuf::from(path))
}

async fn session_on(api: &Api, watcher: &Api) -> anyhow::Result<String> {
    let session = api.create_session(json!({"template": "desktop"})).await?;
    let id = session["id"].as_str().unwrap_or_default().to_owned();
    watcher
        .wait_for_phase(&id, "Running", RUNNING_LIMIT)
        .await?;
    Ok(id)
}

async fn connected_here(api: &Api) -> anyhow::Result<Option<()>> {
    let count = api.metric("streamspace_agents_connected").await?;
    Ok((count == 1.0).then_some(()))
}

#[tokio::test]
#[ignore = "needs the previous release's binary: scripts/test-upgrade.sh builds it and runs this"]
async fn old_and_new_replicas_and_an_old_agent_work_together_on_the_new_schema()
-> anyhow::Result<()> {
    require_desktop_image();
    let old_bin = previous_release()?;
    let db = postgres::fresh_database().await?;
    // The first new replica migrates the database; the old one then opens
    // a schema with a migration it does not know.
    let mut new = ControlPlane::start(bin(), Mode::Server, Some(&db)).await?;
    let mut old = ControlPlane::start(&old_bin, Mode::Server, Some(&db)).await?;
    let newer = ControlPlane::start(bin(), Mode::Server, Some(&db)).await?;
    let front = Front::start(&[&old.url, &new.url, &newer.url]).await?;
    let on_old = Api::admin(&old.url).await?;
    let on_new = Api::admin(&new.url).await?;

    // An enrollment token of the new replica, redeemed through the old one.
    let token = on_new.enrollment_token().await?;
    let agent = AgentProcess::start(&old_bin, &front.url, &token, "old-agent").await?;
    let agent_id = on_new
        .wait_for_agent("old-agent", Duration::from_secs(30))
        .await
        .map_err(|e| anyhow::anyhow!("{e:#}\nagent log:\n{}", agent.process.log()))?;
    let _cleanup = Cleanup(vec![agent_id]);
    connected_here(&on_old)
        .await?
        .context("the old agent is on the old replica")?;

    // A template the new replica made, used through the old one.
    on_new.create_template(desktop_template("desktop")).await?;
    let listed = on_old
        .expect(Method::GET, "/api/v1/templates", None, StatusCode::OK)
        .await?;
    let names: Vec<&Value> = listed
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| &t["name"])
        .collect();
    assert!(names.contains(&&json!("desktop")), "{listed}");

    // A session made on each side, both on the old agent (the old replica
    // delivers the new one's command from the store), both viewed.
    let by_old = session_on(&on_old, &on_new).await?;
    let by_new = session_on(&on_new, &on_old).await?;
    assert_vnc_works(&on_old, &by_old).await?;
    assert_vnc_works(&on_old, &by_new).await?;

    // The rolling upgrade: the old replica stops, its agent finds the new.
    old.process.stop().await?;
    eventually(AGENT_MOVES, "the old agent on the new replica", || {
        connected_here(&on_new)
    })
    .await
    .map_err(|e| anyhow::anyhow!("{e:#}\nagent log:\n{}", agent.process.log()))?;
    assert_vnc_works(&on_new, &by_old).await?;
    assert_vnc_works(&on_new, &by_new).await?;

    // The new replica drains in turn: the old agent ignores `reconnect`,
    // and still comes back, on the next replica.
    new.process.stop().await?;
    let on_newer = Api::admin(&newer.url).await?;
    eventually(AGENT_MOVES, "the old agent on the newer replica", || {
        connected_here(&on_newer)
    })
    .await
    .map_err(|e| anyhow::anyhow!("{e:#}\nagent log:\n{}", agent.process.log()))?;
    assert!(
        agent
            .process
            .log()
            .contains("ignoring unknown control message"),
        "the old agent received `reconnect` and ignored it"
    );
    assert_vnc_works(&on_newer, &by_old).await?;
    Ok(())
}
