//! Control-plane-wide values every replica shares.

use super::{Store, StoreResult};
use sqlx::Row;

impl Store {
    /// The value of setting `name`, stored as `default` if it has none yet.
    /// Replicas starting together agree: the first insert wins and every
    /// one reads what it wrote.
    pub async fn setting_or_insert(&self, name: &str, default: &str) -> StoreResult<String> {
        let _turn = self.write_turn().await;
        sqlx::query(
            "INSERT INTO settings (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(default)
        .execute(&self.pool)
        .await?;
        let row = sqlx::query("SELECT value FROM settings WHERE name = $1")
            .bind(name)
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get("value")?)
    }
}
