//! Enrollment tokens: single-use, expiring, stored only as SHA-256.

use super::{Store, StoreResult, now_ms};

/// The pool of agents enrolled without one, and of users in no group
/// that lists pools.
pub const DEFAULT_POOL: &str = "default";

impl Store {
    /// `created_by` is who minted it: an admin's user id, or
    /// `streamspace up` for the embedded agent's token.
    pub async fn create_enrollment_token(
        &self,
        token_hash: &str,
        created_by: &str,
        expires_at: i64,
    ) -> StoreResult<()> {
        self.create_pool_enrollment_token(token_hash, created_by, expires_at, DEFAULT_POOL)
            .await
    }

    /// A token whose agent joins agent pool `pool` (docs/GROUPS.md).
    pub async fn create_pool_enrollment_token(
        &self,
        token_hash: &str,
        created_by: &str,
        expires_at: i64,
        pool: &str,
    ) -> StoreResult<()> {
        let _turn = self.write_turn().await;
        sqlx::query(
            "INSERT INTO enrollment_tokens (token_hash, created_by, created_at, expires_at, pool) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(token_hash)
        .bind(created_by)
        .bind(now_ms())
        .bind(expires_at)
        .bind(pool)
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
