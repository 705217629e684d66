//! The control plane in-process on a random port, one fresh database per
//! test, on SQLite and on PostgreSQL. Agents here are protocol-level fakes,
//! so these tests need no Docker.

mod agents;
mod event_stream;
mod fake_agent;
mod lifecycle;
mod openapi;
mod sessions;
mod validation;

use std::time::Duration;
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
    stop: CancellationToken,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

pub async fn spawn_app(engine: Engine) -> TestApp {
    streamspace_testkit::init();
    let dir = tempfile::tempdir().expect("temp dir");
    let database_url = match engine {
        Engine::Sqlite => None,
        Engine::Postgres => Some(
            postgres::fresh_database()
                .await
                .expect("a PostgreSQL database"),
        ),
    };
    let config = Config {
        listen: "127.0.0.1:0".parse().expect("address"),
        data_dir: dir.path().to_owned(),
        database_url,
        admin_password: Some(ADMIN_PASSWORD.into()),
        heartbeat_interval: Duration::from_millis(500),
        tunnel_timeout: Duration::from_secs(2),
        ..Config::default()
    };
    let app = Application::build(config).await.expect("the app builds");
    let url = Url::parse(&format!("http://{}", app.local_addr())).expect("url");
    let stop = CancellationToken::new();
    tokio::spawn(app.run_until_stopped(stop.clone()));
    let admin = Api::admin(&url).await.expect("admin login");
    TestApp {
        url,
        admin,
        dir,
        stop,
    }
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
