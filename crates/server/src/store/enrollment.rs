//! Enrollment tokens: single-use, expiring, stored only as SHA-256.

use super::{Store, StoreResult, now_ms};

impl Store {
    pub async fn create_enrollment_token(
        &self,
        token_hash: &str,
        created_by: &str,
        expires_at: i64,
    ) -> StoreResult<()> {
        let _turn = self.write_turn().await;
        sqlx::query(
            "INSERT INTO enrollment_tokens (token_hash, created_by, created_at, expires_at) \
             VALUES ($1, $2, $3, $4)",
        )
        .bind(token_hash)
        .bind(created_by)
        .bind(now_ms())
        .bind(expires_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
