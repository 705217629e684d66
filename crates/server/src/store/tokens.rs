//! Login tokens. Only the SHA-256 of each token is stored.

use super::{Store, StoreResult, User, now_ms};
use sqlx::Row;

impl Store {
    pub async fn create_api_token(
        &self,
        token_hash: &str,
        user_id: &str,
        expires_at: i64,
    ) -> StoreResult<()> {
        let _turn = self.write_turn().await;
        sqlx::query(
            "INSERT INTO api_tokens (token_hash, user_id, created_at, expires_at) \
             VALUES ($1, $2, $3, $4)",
        )
        .bind(token_hash)
        .bind(user_id)
        .bind(now_ms())
        .bind(expires_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The user a live (unexpired) token belongs to.
    pub async fn user_for_token(&self, token_hash: &str) -> StoreResult<Option<User>> {
        let row = sqlx::query(
            "SELECT u.id, u.username, u.role, u.legacy_home FROM api_tokens t \
             JOIN users u ON u.id = t.user_id \
             WHERE t.token_hash = $1 AND t.expires_at > $2",
        )
        .bind(token_hash)
        .bind(now_ms())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(User::from_row).transpose()
    }

    pub async fn delete_api_token(&self, token_hash: &str) -> StoreResult<()> {
        let _turn = self.write_turn().await;
        sqlx::query("DELETE FROM api_tokens WHERE token_hash = $1")
            .bind(token_hash)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Ends every login of `user_id` except `keep` (the token of the
    /// request that asked, when it should survive); returns how many ended.
    pub async fn delete_user_tokens(&self, user_id: &str, keep: Option<&str>) -> StoreResult<u64> {
        let _turn = self.write_turn().await;
        let done = sqlx::query("DELETE FROM api_tokens WHERE user_id = $1 AND token_hash <> $2")
            .bind(user_id)
            // No token hashes to the empty string.
            .bind(keep.unwrap_or(""))
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    /// Deletes expired login and enrollment tokens: (logins, enrollments).
    pub async fn delete_expired_tokens(&self) -> StoreResult<(u64, u64)> {
        let now = now_ms();
        let logins = {
            let _turn = self.write_turn().await;
            sqlx::query("DELETE FROM api_tokens WHERE expires_at <= $1")
                .bind(now)
                .execute(&self.pool)
                .await?
                .rows_affected()
        };
        let enrollments = self.delete_expired_enrollment_tokens(now).await?;
        Ok((logins, enrollments))
    }

    pub async fn count_api_tokens(&self, user_id: &str) -> StoreResult<i64> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM api_tokens WHERE user_id = $1")
            .bind(user_id)
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get("n")?)
    }
}
