//! The control plane in-process on a random port, one fresh database per
//! test, on SQLite and on PostgreSQL. Agents here are protocol-level fakes,
//! so these tests need no Docker.

mod access;
mod admission;
mod agents;
mod audio;
mod audit;
mod audit_sessions;
mod catalog;
mod connections;
mod distrust;
mod event_stream;
mod fake_agent;
mod gpus;
mod groups;
mod lifecycle;
mod login_throttle;
mod metrics;
mod mfa;
mod oidc;
mod oidc_issuer;
mod openapi;
mod platform_health;
mod policy;
mod readiness;
mod recordings;
mod relay;
mod replicas;
mod request_bodies;
mod revocation;
mod revoked_streams;
mod secrets;
mod sessions;
mod settings;
mod sharing;
mod state_machine;
mod stream_limits;
mod tokens;
mod validation;
mod vm_placement;

use std::sync::Arc;
use std::time::Duration;
use streamspace_server::store::Store;
use streamspace_server::{Application, Config};
use streamspace_testkit::{ADMIN_PASSWORD, Api, postgres};
use tempfile::TempDir;
use tokio_util::sync::CancellationToken;
use url::Url;

#[derive(Debug, Clone, Copy)]
pub enum Engine {
    Sqlite,
    Postgres,
}

pub struct TestApp {
    pub url: Url,
    pub admin: Api,
    pub dir: TempDir,
    /// The app's database, for tests that look at the store directly.
    pub database_url: String,
    stop: CancellationToken,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

pub async fn spawn_app(engine: Engine) -> TestApp {
    spawn_app_with(engine, |_| {}, None).await
}

/// `spawn_app` with settings changed by `configure` (short windows and
/// intervals for tests that wait on them); `tls` is what clients trust when
/// `configure` turns TLS on.
pub async fn spawn_app_with(
    engine: Engine,
    configure: impl FnOnce(&mut Config),
    tls: Option<Arc<rustls::ClientConfig>>,
) -> TestApp {
    let database_url = match engine {
        Engine::Sqlite => None,
        Engine::Postgres => Some(
            postgres::fresh_database()
                .await
                .expect("a PostgreSQL database"),
        ),
    };
    spawn_on(database_url, configure, tls).await
}

/// Another control-plane replica on the same PostgreSQL database.
pub async fn spawn_replica(app: &TestApp) -> TestApp {
    spawn_replica_with(app, |_| {}).await
}

/// `spawn_replica` with settings changed by `configure`.
pub async fn spawn_replica_with(app: &TestApp, configure: impl FnOnce(&mut Config)) -> TestApp {
    assert!(
        app.database_url.starts_with("postgres"),
        "replicas share PostgreSQL"
    );
    // Replicas share the key that seals secrets (the manifests mount one).
    let key = app.dir.path().join(streamspace_server::vault::KEY_FILE);
    let configure = |config: &mut Config| {
        config.secrets_key_file = Some(key);
        configure(config);
    };
    spawn_on(Some(app.database_url.clone()), configure, None).await
}

/// An app on an existing database (another replica of one this test
/// started otherwise).
pub async fn spawn_on_database(
    database_url: String,
    configure: impl FnOnce(&mut Config),
) -> TestApp {
    spawn_on(Some(database_url), configure, None).await
}

/// The settings every test app starts from (`spawn_on`; the replica
/// processes of `replicas.rs`).
pub fn test_config(dir: &std::path::Path, database_url: Option<String>) -> Config {
    Config {
        listen: "127.0.0.1:0".parse().expect("address"),
        data_dir: dir.to_owned(),
        database_url,
        admin_password: Some(ADMIN_PASSWORD.into()),
        heartbeat_interval: Duration::from_millis(500),
        tunnel_timeout: Duration::from_secs(2),
        ..Config::default()
    }
}

async fn spawn_on(
    database_url: Option<String>,
    configure: impl FnOnce(&mut Config),
    tls: Option<Arc<rustls::ClientConfig>>,
) -> TestApp {
    streamspace_testkit::init();
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = test_config(dir.path(), database_url.clone());
    configure(&mut config);
    let database_url = database_url.unwrap_or_else(|| Store::sqlite_url(dir.path()));
    let app = Application::build(config).await.expect("the app builds");
    let url = app.public_url().clone();
    let stop = CancellationToken::new();
    tokio::spawn(app.run_until_stopped(stop.clone()));
    let client = match tls {
        Some(tls) => Api::with_tls(&url, tls).expect("a TLS client"),
        None => Api::new(&url),
    };
    let admin = client.as_admin().await.expect("admin login");
    TestApp {
        url,
        admin,
        dir,
        database_url,
        stop,
    }
}

/// Runs `statement` on the app's database directly, as an operator with a
/// database shell (or a backup restore) would.
pub async fn run_sql(app: &TestApp, statement: &str) -> anyhow::Result<u64> {
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&app.database_url).await?;
    let done = sqlx::query(sqlx::AssertSqlSafe(statement.to_owned()))
        .execute(&pool)
        .await?;
    pool.close().await;
    Ok(done.rows_affected())
}

/// Runs a test body once per database engine.
macro_rules! on_both_engines {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test]
            async fn $name() -> anyhow::Result<()> {
                super::$name(crate::spawn_app(crate::Engine::Sqlite).await).await
            })*
        }
        mod postgres {
            $(#[tokio::test]
            async fn $name() -> anyhow::Result<()> {
                super::$name(crate::spawn_app(crate::Engine::Postgres).await).await
            })*
        }
    };
}
pub(crate) use on_both_engines;
