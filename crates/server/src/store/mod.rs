//! The store: one code path over SQLite (the embedded default) and PostgreSQL
//! (several control-plane replicas), through sqlx's `Any` driver and one
//! migrations directory.

/// Runs each test body, an `async fn(&str)` given a database URL, on a
/// SQLite file and on a fresh PostgreSQL database.
#[cfg(test)]
macro_rules! on_both_engines {
    ($($body:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test]
            async fn $body() {
                let dir = tempfile::tempdir().expect("dir");
                super::$body(&crate::store::Store::sqlite_url(dir.path())).await;
            })*
        }
        mod postgres {
            $(#[tokio::test]
            async fn $body() {
                let url = streamspace_testkit::postgres::fresh_database()
                    .await
                    .expect("a PostgreSQL database");
                super::$body(&url).await;
            })*
        }
    };
}

mod admission;
mod agents;
mod api_tokens;
mod app_grants;
mod audit;
mod audit_log;
mod audit_query;
mod catalog;
mod commands;
#[cfg(test)]
mod create_tests;
mod enrollment;
mod group_admin;
mod groups;
mod mfa;
pub mod oidc_accounts;
mod pool;
mod quotas;
mod replicas;
mod resources;
mod secrets;
mod sessions;
mod settings;
mod shares;
#[cfg(test)]
mod state_tests;
mod templates;
mod tokens;
mod users;

pub use admission::Admission;
pub use agents::{
    AgentRecord, EnrollError, MAX_AGENT_GPUS, MAX_GPU_MODEL, MAX_UNVERIFIED, NewAgent, Unverified,
};
pub use api_tokens::{ApiTokenRecord, LAST_USED_RESOLUTION_MS, NewTokenRefusal};
pub use app_grants::{Grant, NewGrant};
pub use audit::AuditEntry;
pub use audit_log::{AuditEvent, Outcome};
pub use audit_query::{AuditFilter, LoggedEvent};
pub use catalog::TemplateWrite;
pub use commands::{Advanced, Announcement, CommandRecord, CommandStatus, LatestCommand};
pub use enrollment::DEFAULT_POOL;
pub use group_admin::{GroupMember, GroupRecord, GroupSource, GroupWrite};
pub use mfa::{MfaChallenge, TotpRecord};
pub use quotas::{Limits, Usage};
pub use replicas::ReplicaRecord;
pub use resources::AgentLoad;
pub use sessions::{NewSession, SessionRecord};
pub use settings::{MfaRequired, Settings};
pub use shares::{
    MAX_GUESTS_PER_LINK, MAX_LINKS_PER_SESSION, MAX_SHARES_PER_SESSION, NewShare, ShareRecord,
    ShareRefusal, Watcher,
};
pub use templates::TemplateRecord;
pub use users::POOL_USER;
pub use users::{AdminChange, Role, User};

use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::{AnyPool, migrate::Migrator};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The schema's migrations. A database may hold migrations this binary
/// does not know: a newer replica applied them during a rolling upgrade.
/// Every migration only expands the schema for one release
/// (docs/UPGRADING.md), so the older binary runs on it unchanged.
fn migrator() -> Migrator {
    let mut migrator = sqlx::migrate!("./migrations");
    migrator.set_ignore_missing(true);
    migrator
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A unique constraint refused the write; the string names what clashed.
    #[error("{0} already exists")]
    Conflict(String),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("cannot migrate the database: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("corrupt record in the database: {0}")]
    Corrupt(String),
    /// A sealed secret did not open (another key, or a damaged value).
    #[error("cannot open the sealed secrets of {what}: {source}; {remedy}")]
    Sealed {
        what: String,
        remedy: &'static str,
        #[source]
        source: crate::vault::VaultError,
    },
    /// The store was opened without the key that seals secrets
    /// (`Store::with_vault`), and `what` has some.
    #[error("{0} has secrets, and this store has no key to seal or open them with")]
    NoVault(String),
}

impl StoreError {
    /// PostgreSQL refuses NUL characters in text, in writes and lookups
    /// alike (SQLSTATE 22021); only a client's input can bring them in.
    pub fn is_nul_in_text(&self) -> bool {
        matches!(self, StoreError::Database(sqlx::Error::Database(db))
            if db.code().as_deref() == Some("22021"))
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    /// SQLite only: whose turn it is to write. SQLite takes one writer at a
    /// time and makes the others sleep and retry (1, 2, 5, 10 ms…), which
    /// put 15–50 ms tails on `POST /sessions` beside the heartbeat flush;
    /// queued here, a write waits only for the writes before it.
    writes: Option<Arc<tokio::sync::Mutex<()>>>,
    /// This process's turn to admit a session (see `admission.rs`).
    admissions: Arc<tokio::sync::Mutex<()>>,
    /// The key that seals templates' secrets at rest (`secrets.rs`).
    vault: Option<Arc<crate::vault::Vault>>,
}

impl Store {
    /// Connects to `database_url` (`sqlite://…` or `postgres://…`) and applies
    /// pending migrations.
    pub async fn connect(database_url: &str) -> StoreResult<Self> {
        install_default_drivers();
        let is_sqlite = database_url.starts_with("sqlite:");
        let options = AnyPoolOptions::new()
            .max_connections(if is_sqlite { 4 } else { 16 })
            .acquire_timeout(Duration::from_secs(10));
        let pool = options.connect(database_url).await?;
        if is_sqlite {
            // WAL lets readers run beside the one writer; the busy timeout
            // makes concurrent writers wait instead of failing.
            sqlx::query("PRAGMA journal_mode = WAL")
                .execute(&pool)
                .await?;
        }
        migrator().run(&pool).await?;
        let writes = is_sqlite.then(Arc::default);
        let store = Self {
            pool,
            writes,
            admissions: Arc::default(),
            vault: None,
        };
        store.backfill_resources().await?;
        Ok(store)
    }

    /// The store sealing templates' secrets (`secrets.rs`) with `vault`:
    /// without one, it refuses to write or read any.
    pub fn with_vault(mut self, vault: Arc<crate::vault::Vault>) -> Self {
        self.vault = Some(vault);
        self
    }

    /// The SQLite database file in `dir`.
    pub fn sqlite_file(dir: &Path) -> std::path::PathBuf {
        dir.join("streamspace.db")
    }

    /// The URL of the SQLite database file in `dir`, created if missing.
    pub fn sqlite_url(dir: &Path) -> String {
        format!("sqlite://{}?mode=rwc", Self::sqlite_file(dir).display())
    }

    /// Whether the database is PostgreSQL (else SQLite).
    fn is_postgres(&self) -> bool {
        self.writes.is_none()
    }

    /// Waits for this store's turn to write (SQLite), held while the guard
    /// lives; no wait on PostgreSQL, which locks rows, not the database.
    async fn write_turn(&self) -> Option<tokio::sync::MutexGuard<'_, ()>> {
        match &self.writes {
            Some(turn) => Some(turn.lock().await),
            None => None,
        }
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// The versions of this binary's migrations the database has not
    /// applied (successfully): empty once the schema is ready for it. Also
    /// the readiness probe's proof that the database answers.
    pub async fn missing_migrations(&self) -> StoreResult<Vec<i64>> {
        let applied: Vec<i64> =
            sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success")
                .fetch_all(&self.pool)
                .await?;
        Ok(migrator()
            .iter()
            .map(|migration| migration.version)
            .filter(|version| !applied.contains(version))
            .collect())
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// Milliseconds since the Unix epoch: the one timestamp format in the store.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

/// A duration in the store's milliseconds. Saturating: an idle timeout of a
/// billion years is "never", not a wrapped-around negative "at once".
pub fn duration_ms(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

/// A new id for an audit event. UUIDv7 sorts by creation time, which keeps
/// the trail in order. Sessions, users, templates, agents and commands mint
/// theirs with their own types (`SessionId::new()`, …), in the same form.
fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// Maps a unique-constraint violation to `Conflict(what)`.
fn conflict(what: &str) -> impl FnOnce(sqlx::Error) -> StoreError + '_ {
    move |err| match &err {
        sqlx::Error::Database(db) if db.is_unique_violation() => {
            StoreError::Conflict(what.to_owned())
        }
        _ => StoreError::Database(err),
    }
}

fn from_json<T: serde::de::DeserializeOwned>(what: &str, text: &str) -> StoreResult<T> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
}

fn to_json<T: serde::Serialize>(value: &T) -> String {
    // Serializing our own plain data types cannot fail.
    serde_json::to_string(value).unwrap_or_default()
}

/// Marks SQL assembled from this module's own constants (column lists,
/// status sets) as safe; values always go through bind parameters.
fn sql(text: String) -> sqlx::AssertSqlSafe<String> {
    sqlx::AssertSqlSafe(text)
}

/// A query with its parameters bound so far (`bind_…` helpers add theirs).
type AnyQuery<'q> = sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>;

/// `$first, …` for `count` parameters: statements combined into one number
/// their parameters on from where the previous one stopped.
fn placeholders(first: usize, count: usize) -> String {
    (first..first + count)
        .map(|n| format!("${n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod upgrade_tests {
    use super::Store;

    /// A replica of the previous release keeps starting on a database that
    /// a newer one has already migrated further (docs/UPGRADING.md).
    async fn a_database_migrated_by_a_newer_binary_opens(url: &str) {
        let store = Store::connect(url).await.expect("store");
        sqlx::query(
            "INSERT INTO _sqlx_migrations \
             (version, description, installed_on, success, checksum, execution_time) \
             VALUES (99999, 'from a newer release', CURRENT_TIMESTAMP, TRUE, $1, 1)",
        )
        .bind(vec![0u8; 48])
        .execute(store.pool())
        .await
        .expect("a newer migration");
        store.close().await;
        let again = Store::connect(url).await;
        assert!(again.is_ok(), "{:?}", again.err());
    }

    on_both_engines!(a_database_migrated_by_a_newer_binary_opens);
}
