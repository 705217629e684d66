//! `GET /readyz` (a load balancer's and Kubernetes' readiness probe) and
//! what a stopping replica tells its agents (`cluster/drain.rs`,
//! docs/UPGRADING.md). The two-replica drain with a real agent is the
//! end-to-end test `crates/cli/tests/e2e/drain.rs`.

use crate::fake_agent::{FakeAgent, enroll};
use crate::{TestApp, on_both_engines, run_sql};
use http::{Method, StatusCode};
use serde_json::json;
use streamspace_protocol::ServerMessage;
use streamspace_testkit::Api;

/// The newest migration this binary applied, marked failed as a migration
/// that broke half-way leaves it (or as a database restored from before it).
const BREAK_NEWEST: &str = "UPDATE _sqlx_migrations SET success = FALSE \
     WHERE version = (SELECT MAX(version) FROM _sqlx_migrations)";
const MEND_NEWEST: &str = "UPDATE _sqlx_migrations SET success = TRUE";

async fn ready_only_while_every_migration_of_this_binary_is_applied(
    app: TestApp,
) -> anyhow::Result<()> {
    let anyone = Api::new(&app.url);
    let ready = anyone
        .expect(Method::GET, "/readyz", None, StatusCode::OK)
        .await?;
    assert_eq!(ready, json!({"status": "ready"}));

    assert_eq!(run_sql(&app, BREAK_NEWEST).await?, 1);
    let refused = anyone.call(Method::GET, "/readyz", None).await?;
    assert_eq!(refused.status, StatusCode::SERVICE_UNAVAILABLE);
    let error = refused.body["error"].as_str().unwrap_or_default();
    assert!(error.contains("lacks migrations"), "{error}");
    // Liveness is another question: the process is fine, restarting it
    // would not help.
    assert_eq!(anyone.text("/healthz").await?, "ok");

    run_sql(&app, MEND_NEWEST).await?;
    anyone
        .expect(Method::GET, "/readyz", None, StatusCode::OK)
        .await?;
    Ok(())
}

async fn a_database_error_makes_it_unready_without_telling_anyone_why(
    app: TestApp,
) -> anyhow::Result<()> {
    // The readiness query fails as it would with the database gone.
    run_sql(
        &app,
        "ALTER TABLE _sqlx_migrations RENAME TO _sqlx_migrations_away",
    )
    .await?;
    let refused = Api::new(&app.url)
        .call(Method::GET, "/readyz", None)
        .await?;
    run_sql(
        &app,
        "ALTER TABLE _sqlx_migrations_away RENAME TO _sqlx_migrations",
    )
    .await?;
    assert_eq!(refused.status, StatusCode::SERVICE_UNAVAILABLE);
    // Anyone may ask: the driver's words (names, addresses) stay in the log.
    assert_eq!(
        refused.body,
        json!({"error": "the database does not answer (the log says why)"})
    );
    Ok(())
}

async fn a_stopping_replica_tells_its_agents_to_reconnect(app: TestApp) -> anyhow::Result<()> {
    let (id, secret) = enroll(&app.admin, "drained").await?;
    let mut agent = FakeAgent::connect(&app.url, &id, &secret).await?;
    // What SIGTERM does to the server (`shutdown::on_signal`).
    app.stop.cancel();
    loop {
        match agent.recv().await? {
            ServerMessage::Reconnect { reason } => {
                assert!(reason.contains("shutting down"), "{reason}");
                break;
            }
            // Commands and the like sent before the stop.
            ServerMessage::Goodbye { reason } => anyhow::bail!("goodbye instead: {reason}"),
            _ => continue,
        }
    }
    Ok(())
}

on_both_engines!(
    ready_only_while_every_migration_of_this_binary_is_applied,
    a_database_error_makes_it_unready_without_telling_anyone_why,
    a_stopping_replica_tells_its_agents_to_reconnect,
);
