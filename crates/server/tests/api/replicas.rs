//! Two control-plane replicas on one PostgreSQL (docs/ARCHITECTURE.md#replicas):
//! a command issued on one reaches an agent held by the other at once,
//! changes made on one show on the other's event stream, a logout on one
//! ends the user's streams on the other, and when the replica holding the
//! singleton lock is killed (`kill -9`), the other takes over idle
//! hibernation.
//!
//! Each test's reconciler runs once an hour unless it is what the test is
//! about, so nothing but the bus can be what delivers. The killed replica
//! is a process of its own: this test binary run again as
//! [`replica_process`] (the real server code, the same as every replica
//! here), since a replica inside the test's own process cannot be killed.

use crate::fake_agent::{FakeAgent, enroll};
use crate::mfa::{held_to_enrolment, set_mfa_required};
use crate::revoked_streams::{Streamed, user};
use crate::{Engine, TestApp, spawn_app_with, spawn_replica_with};
use anyhow::{Context, ensure};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::process::Stdio;
use std::time::Duration;
use streamspace_protocol::{Action, Command, ServerMessage};
use streamspace_server::Config;
use streamspace_testkit::{Api, eventually};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::time::{Instant, timeout};
use url::Url;

/// The slower paths (the reconciler's re-sends) wait this long: never
/// within a test.
const NEVER: Duration = Duration::from_secs(3600);
/// What "at once" means on a loaded test machine: well under every slower
/// path (the reconciler's hour here, streams' 30 s login re-check).
const AT_ONCE: Duration = Duration::from_secs(5);

fn no_reconciler(config: &mut Config) {
    config.reconcile_interval = NEVER;
}

/// Replica A (where requests go) and B (where the agent is), with the
/// desktop template and an agent connected to B.
async fn pair() -> anyhow::Result<(TestApp, TestApp, FakeAgent, String)> {
    let a = spawn_app_with(Engine::Postgres, no_reconciler, None).await;
    let b = spawn_replica_with(&a, no_reconciler).await;
    a.admin
        .create_template(
            json!({"name": "desktop", "image": "streamspace/desktop:local",
                                "user_idle_timeout": true}),
        )
        .await?;
    let (agent_id, secret) = enroll(&a.admin, "on-b").await?;
    let agent = FakeAgent::connect(&b.url, &agent_id, &secret).await?;
    // A places sessions on it once its heartbeat is stored.
    a.admin
        .wait_for_agent("on-b", Duration::from_secs(10))
        .await?;
    Ok((a, b, agent, agent_id))
}

/// The next command, skipping anything else the agent is sent.
async fn next_command(agent: &mut FakeAgent, within: Duration) -> anyhow::Result<Command> {
    timeout(within, async {
        loop {
            if let ServerMessage::Command(command) = agent.recv().await? {
                return Ok(command);
            }
        }
    })
    .await
    .with_context(|| format!("no command within {within:?}"))?
}

#[tokio::test]
async fn a_command_issued_on_one_replica_reaches_an_agent_on_another_at_once() -> anyhow::Result<()>
{
    let (a, b, mut agent, agent_id) = pair().await?;
    let started = Instant::now();
    let session = a
        .admin
        .create_session(json!({"template": "desktop"}))
        .await?;
    let id = session["id"].as_str().context("session id")?.to_owned();
    let start = next_command(&mut agent, AT_ONCE).await?;
    println!(
        "the start issued on A reached the agent on B in {:?}",
        started.elapsed()
    );
    assert_eq!(start.session_id.as_str(), id);
    assert!(matches!(start.action, Action::Start { .. }), "{start:?}");
    agent.complete(&start).await?;
    agent
        .report(streamspace_protocol::SessionReport::new(
            &id,
            streamspace_protocol::Phase::Running,
        ))
        .await?;
    a.admin
        .wait_for_phase(&id, "Running", Duration::from_secs(5))
        .await?;
    // B marked it sent when it sent it: A's reconciler would not send it again.
    let hibernate = a.admin.set_state(&id, "hibernated");
    let (answer, command) = tokio::join!(hibernate, next_command(&mut agent, AT_ONCE));
    answer?;
    assert_eq!(command?.action, Action::Hibernate);

    // Which replica holds the agent, as both replicas tell it.
    let b_id = serving_replica(&b.admin).await?;
    for replica in [&a, &b] {
        let view = replica
            .admin
            .expect(
                Method::GET,
                &format!("/api/v1/agents/{agent_id}"),
                None,
                StatusCode::OK,
            )
            .await?;
        assert_eq!(view["replica_id"], json!(b_id));
    }
    Ok(())
}

/// A start holding a template's secrets crosses replicas as its id (the
/// notice is not sealed); B reads it from the store, opens it, and the
/// agent still gets the values, at once.
#[tokio::test]
async fn a_start_with_secrets_reaches_an_agent_on_another_replica_with_them() -> anyhow::Result<()>
{
    let (a, _b, mut agent, _) = pair().await?;
    a.admin
        .create_template(
            json!({"name": "licensed", "image": "streamspace/desktop:local",
            "secret_env": {"LICENSE": "hunter2-license"},
            "registry_auth": {"username": "robot", "password": "hunter2-registry"}}),
        )
        .await?;
    let session = a
        .admin
        .create_session(json!({"template": "licensed"}))
        .await?;
    let start = next_command(&mut agent, AT_ONCE).await?;
    assert_eq!(
        start.session_id.as_str(),
        session["id"].as_str().unwrap_or_default()
    );
    let Action::Start { spec } = start.action else {
        anyhow::bail!("not a start: {start:?}");
    };
    assert_eq!(
        spec.env.get("LICENSE").map(String::as_str),
        Some("hunter2-license")
    );
    let auth = spec.registry_auth.context("registry credentials")?;
    assert_eq!(auth.password, "hunter2-registry");
    Ok(())
}

/// The id of the replica answering `api`, from its replica list.
async fn serving_replica(api: &Api) -> anyhow::Result<String> {
    let replicas = api
        .expect(Method::GET, "/api/v1/replicas", None, StatusCode::OK)
        .await?;
    let serving = replicas
        .as_array()
        .context("a list")?
        .iter()
        .find(|r| r["serving"] == json!(true))
        .context("the serving replica is listed")?;
    Ok(serving["id"].as_str().context("id")?.to_owned())
}

#[tokio::test]
async fn admins_see_every_replica_and_the_agents_each_holds() -> anyhow::Result<()> {
    let (a, b, _agent, _) = pair().await?;
    let (a_id, b_id) = (
        serving_replica(&a.admin).await?,
        serving_replica(&b.admin).await?,
    );
    ensure!(a_id != b_id, "two replicas, one id");
    let listed = a
        .admin
        .expect(Method::GET, "/api/v1/replicas", None, StatusCode::OK)
        .await?;
    let by_id = |id: &str| -> anyhow::Result<Value> {
        let found = listed
            .as_array()
            .context("a list")?
            .iter()
            .find(|r| r["id"] == id);
        found
            .cloned()
            .with_context(|| format!("replica {id} in {listed}"))
    };
    assert_eq!(listed.as_array().map(Vec::len), Some(2), "{listed}");
    let (on_a, on_b) = (by_id(&a_id)?, by_id(&b_id)?);
    assert_eq!(
        (&on_a["agents_connected"], &on_b["agents_connected"]),
        (&json!(0), &json!(1))
    );
    assert_eq!(
        (&on_a["serving"], &on_b["serving"]),
        (&json!(true), &json!(false))
    );
    assert_eq!(on_b["draining"], json!(false));
    assert!(
        on_b["internal_url"]
            .as_str()
            .is_some_and(|u| u.starts_with("http://127.0.0.1:"))
    );
    let (_, plain) = user(&a, "plain", "user").await?;
    let refused = plain.call(Method::GET, "/api/v1/replicas", None).await?;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{:?}", refused.body);
    assert!(
        refused.body["error"]
            .as_str()
            .is_some_and(|e| !e.is_empty())
    );
    Ok(())
}

#[tokio::test]
async fn a_change_made_on_one_replica_shows_on_the_others_event_stream() -> anyhow::Result<()> {
    let (a, b, _agent, _) = pair().await?;
    let mut events = Streamed::get(&b.admin, "/api/v1/events").await?;
    // The agent only receives its start command and reports nothing: the
    // session's creation on A is the one change made, and only A made it.
    let session = a
        .admin
        .create_session(json!({"template": "desktop"}))
        .await?;
    let id = session["id"].as_str().context("session id")?;
    timeout(AT_ONCE, events.expect(id))
        .await
        .context("the session made on A not on B's stream in time")??;
    Ok(())
}

#[tokio::test]
async fn a_logout_on_one_replica_ends_the_users_streams_on_the_other() -> anyhow::Result<()> {
    let a = spawn_app_with(Engine::Postgres, no_reconciler, None).await;
    let b = spawn_replica_with(&a, no_reconciler).await;
    let (_, on_a) = user(&a, "alice", "user").await?;
    // The same login (token), used on B.
    let mut on_b = Api::new(&b.url);
    on_b.token = on_a.token.clone();
    let mut events = Streamed::get(&on_b, "/api/v1/events").await?;
    on_a.expect(
        Method::POST,
        "/api/v1/auth/logout",
        None,
        StatusCode::NO_CONTENT,
    )
    .await?;
    // Streams re-check on their own every 30 s: only the notice is this fast.
    let took = events.ends_within(AT_ONCE).await?;
    println!("the stream on B ended {took:?} after the logout on A");
    Ok(())
}

/// Admin settings are read once a second at most (every request checks the
/// MFA policy); a change saved on A must not wait for that on B. Here B
/// would use what it read for an hour: only A's notice can make it apply.
#[tokio::test]
async fn a_settings_change_on_one_replica_applies_on_the_others_at_once() -> anyhow::Result<()> {
    let keeping = |config: &mut Config| {
        no_reconciler(config);
        config.settings_recheck = NEVER;
    };
    let a = spawn_app_with(Engine::Postgres, keeping, None).await;
    let b = spawn_replica_with(&a, keeping).await;
    a.admin.create_user("bob", "bob-password").await?;
    let bob = Api::login(&b.url, "bob", "bob-password").await?;
    // B reads the settings (no MFA required) and keeps them.
    bob.expect(Method::GET, "/api/v1/sessions", None, StatusCode::OK)
        .await?;
    set_mfa_required(&a, "everyone").await?;
    let started = Instant::now();
    eventually(AT_ONCE, "bob held to enrolment on B", || async {
        Ok(held_to_enrolment(&bob, "/api/v1/sessions").await.ok())
    })
    .await?;
    println!(
        "B applied A's settings {:?} after they were saved",
        started.elapsed()
    );
    Ok(())
}

/// The environment variable that makes [`replica_process`] a replica.
const REPLICA_DB: &str = "STREAMSPACE_TEST_REPLICA_DB";

/// Not a test: the body of the replica process that
/// [`the_lock_holders_death_hands_idle_hibernation_over`] starts (this
/// binary run again with `--ignored --exact replicas::replica_process`)
/// and kills. Without its variable it returns at once.
#[tokio::test]
#[ignore = "the body of a replica process another test starts"]
async fn replica_process() -> anyhow::Result<()> {
    let Ok(database_url) = std::env::var(REPLICA_DB) else {
        return Ok(());
    };
    streamspace_testkit::init();
    let dir = tempfile::tempdir()?;
    let mut config = crate::test_config(dir.path(), Some(database_url));
    config.reconcile_interval = Duration::from_millis(200);
    let app = streamspace_server::Application::build(config).await?;
    println!("replica at {}", app.public_url());
    // The parent kills it; this bounds an orphan's life.
    let stop = tokio_util::sync::CancellationToken::new();
    let run = app.run_until_stopped(stop.clone());
    let _ = timeout(Duration::from_secs(300), run).await;
    Ok(())
}

/// Starts [`replica_process`] on `database_url`; returns it and its URL.
async fn replica_child(database_url: &str) -> anyhow::Result<(tokio::process::Child, Url)> {
    let mut child = tokio::process::Command::new(std::env::current_exe()?)
        .args([
            "replicas::replica_process",
            "--exact",
            "--ignored",
            "--nocapture",
        ])
        .env(REPLICA_DB, database_url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let mut lines = BufReader::new(child.stdout.take().context("stdout")?).lines();
    let url = timeout(Duration::from_secs(60), async {
        while let Some(line) = lines.next_line().await? {
            if let Some(url) = line.strip_prefix("replica at ") {
                return Ok(Url::parse(url.trim())?);
            }
        }
        anyhow::bail!("the replica process ended before it listened")
    })
    .await
    .context("the replica process did not start within 60 s")??;
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok((child, url))
}

/// `streamspace_singleton_leader` on the replica at `api`, which must
/// export it.
async fn leader_gauge(api: &Api) -> anyhow::Result<f64> {
    let text = api.text("/metrics").await?;
    ensure!(
        text.contains("\nstreamspace_singleton_leader "),
        "no gauge in {text}"
    );
    api.metric("streamspace_singleton_leader").await
}

#[tokio::test]
async fn the_lock_holders_death_hands_idle_hibernation_over() -> anyhow::Result<()> {
    let database_url = streamspace_testkit::postgres::fresh_database().await?;
    // A starts first, on an empty database, and takes the lock.
    let (mut holder, holder_url) = replica_child(&database_url).await?;
    let on_holder = Api::admin(&holder_url).await?;
    eventually(
        Duration::from_secs(10),
        "the first replica to hold the lock",
        || async { Ok((leader_gauge(&on_holder).await? == 1.0).then_some(())) },
    )
    .await?;
    let b = crate::spawn_on_database(database_url, |config| {
        config.reconcile_interval = Duration::from_millis(200);
    })
    .await;
    assert_eq!(leader_gauge(&b.admin).await?, 0.0, "two holders");

    b.admin
        .create_template(
            json!({"name": "desktop", "image": "streamspace/desktop:local",
                                "user_idle_timeout": true}),
        )
        .await?;
    let (agent_id, secret) = enroll(&b.admin, "on-b").await?;
    let mut agent = FakeAgent::connect(&b.url, &agent_id, &secret).await?;
    let id = agent
        .run_session(
            &b.admin,
            json!({"template": "desktop", "idle_timeout": "3s"}),
        )
        .await?;
    // A viewer keeps it busy while the holder lives.
    let (busy, path) = (b.admin.clone(), format!("/api/v1/sessions/{id}/heartbeat"));
    let keep_busy = tokio::spawn(async move {
        loop {
            let _ = busy.call(Method::POST, &path, None).await;
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    });
    tokio::time::sleep(Duration::from_millis(3500)).await;
    assert_eq!(
        b.admin.session(&id).await?["state"],
        "running",
        "hibernated while busy"
    );

    holder.kill().await?;
    keep_busy.abort();
    let killed = Instant::now();
    // Idle 3 s, then the lock's retry (2 s) and a pass (0.2 s), with room.
    let hibernate = next_command(&mut agent, Duration::from_secs(12)).await?;
    assert_eq!(
        (hibernate.session_id.as_str(), hibernate.action),
        (id.as_str(), Action::Hibernate)
    );
    println!(
        "B hibernated the idle session {:?} after A was killed",
        killed.elapsed()
    );
    assert_eq!(leader_gauge(&b.admin).await?, 1.0);
    let events = b
        .admin
        .expect(
            Method::GET,
            &format!("/api/v1/sessions/{id}/events"),
            None,
            StatusCode::OK,
        )
        .await?;
    ensure!(
        events.to_string().contains("system:idle"),
        "not idle hibernation: {events}"
    );
    Ok(())
}
