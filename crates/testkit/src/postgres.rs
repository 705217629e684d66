//! A fresh PostgreSQL database per test, on the server the test script
//! starts (`scripts/install-deps.sh` creates the role).

use anyhow::Context;
use sqlx::Connection;

/// The test server; override with `STREAMSPACE_TEST_POSTGRES_URL`.
pub fn base_url() -> String {
    std::env::var("STREAMSPACE_TEST_POSTGRES_URL").unwrap_or_else(|_| {
        "postgres://streamspace:streamspace@127.0.0.1:5432/streamspace_test".to_owned()
    })
}

/// Creates an empty database and returns its URL.
pub async fn fresh_database() -> anyhow::Result<String> {
    let base = base_url();
    let mut conn = sqlx::PgConnection::connect(&base).await.with_context(|| {
        format!(
            "PostgreSQL is not reachable at {base}: run scripts/install-deps.sh (scripts/test.sh does), \
             or set STREAMSPACE_TEST_POSTGRES_URL"
        )
    })?;
    let name = format!("ss_test_{}", uuid::Uuid::new_v4().simple());
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .context("cannot create a test database (the role needs CREATEDB)")?;
    let mut url = url::Url::parse(&base)?;
    url.set_path(&format!("/{name}"));
    Ok(url.to_string())
}
