//! Enrollment tokens: single-use, expiring, stored only as SHA-256.

use super::{Store, StoreResult, now_ms};

impl Store {
    /// `created_by` is who minted it: an admin's user id, or
    /// `streamspace up` for the embedded agent's token.
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

    /// Deletes enrollment tokens that expired before `now`, used or not:
    /// neither kind can enroll an agent any more.
    pub(super) async fn delete_expired_enrollment_tokens(&self, now: i64) -> StoreResult<u64> {
        let _turn = self.write_turn().await;
        let done = sqlx::query("DELETE FROM enrollment_tokens WHERE expires_at <= $1")
            .bind(now)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }
}
