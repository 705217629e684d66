//! Login tokens. Only the SHA-256 of each token is stored.

use super::{Store, StoreResult, User, now_ms};
use streamspace_protocol::UserId;

/// Issues a login token only while the user's password hash is still the
/// one the password was checked against (`$5`).
macro_rules! issue_token_sql {
    () => {
        "INSERT INTO api_tokens (token_hash, user_id, created_at, expires_at) \
         SELECT $1, id, $3, $4 FROM users WHERE id = $2 AND password_hash = $5"
    };
}

impl Store {
    /// Issues a login token for `user_id` if their password hash is still
    /// `checked_hash`, the one the login checked the password against, and
    /// says whether it did. A login takes tens of milliseconds to check; a
    /// password change (which ends every login) or a deletion landing in
    /// between must not leave it a token, nor a foreign-key error.
    ///
    /// PostgreSQL reads the user row `FOR SHARE`: otherwise a change could
    /// commit after this statement's snapshot and sweep the tokens before
    /// this one commits. SQLite writes one at a time, so it needs no lock.
    pub async fn create_api_token(
        &self,
        token_hash: &str,
        user_id: &UserId,
        checked_hash: &str,
        expires_at: i64,
    ) -> StoreResult<bool> {
        let _turn = self.write_turn().await;
        let sql = match self.writes {
            Some(_) => issue_token_sql!(),
            None => concat!(issue_token_sql!(), " FOR SHARE"),
        };
        let done = sqlx::query(sql)
            .bind(token_hash)
            .bind(user_id)
            .bind(now_ms())
            .bind(expires_at)
            .bind(checked_hash)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
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
    pub async fn delete_user_tokens(
        &self,
        user_id: &UserId,
        keep: Option<&str>,
    ) -> StoreResult<u64> {
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
}

#[cfg(test)]
pub(super) mod tests {
    use super::super::Role;
    use super::*;
    use sqlx::Row;
    use std::time::Duration;

    const LATER: i64 = i64::MAX / 2;

    /// Only the password hash that was checked issues a token; a deleted
    /// user gets none, and no foreign-key error.
    async fn tokens_are_issued_only_for_the_checked_hash(url: &str) {
        let store = Store::connect(url).await.expect("store");
        let alice = store.create_user("alice", "h1", Role::User).await;
        let alice = alice.expect("user").id;
        let issue = |token: &'static str, hash: &'static str| {
            let (store, alice) = (store.clone(), alice.clone());
            async move { store.create_api_token(token, &alice, hash, LATER).await }
        };
        assert!(issue("t1", "h1").await.expect("write"));
        store.set_user_password(&alice, "h2").await.expect("write");
        assert!(
            !issue("t2", "h1").await.expect("write"),
            "checked h1, now h2"
        );
        assert_eq!(store.user_for_token("t2").await.expect("read"), None);
        store.delete_user(&alice).await.expect("write");
        assert!(!issue("t3", "h2").await.expect("no error, no token"));
    }

    on_both_engines!(tokens_are_issued_only_for_the_checked_hash);

    /// PostgreSQL: a password change not yet committed holds the token back
    /// until it is, and then none is issued.
    #[tokio::test]
    async fn a_change_in_progress_holds_the_token_back() {
        let url = streamspace_testkit::postgres::fresh_database();
        let store = Store::connect(&url.await.expect("a database")).await;
        let store = store.expect("store");
        let alice = store.create_user("alice", "h1", Role::User).await;
        let alice = alice.expect("user").id;
        let mut change = store.pool().begin().await.expect("transaction");
        sqlx::query("UPDATE users SET password_hash = 'h2' WHERE id = $1")
            .bind(&alice)
            .execute(&mut *change)
            .await
            .expect("update");
        let issuing = tokio::spawn({
            let (store, alice) = (store.clone(), alice.clone());
            async move { store.create_api_token("t", &alice, "h1", LATER).await }
        });
        waits_for_a_lock(&store).await;
        change.commit().await.expect("commit");
        let issued = issuing.await.expect("joins").expect("write");
        assert!(!issued, "the token was issued for the old password");
    }

    /// PostgreSQL: until a statement of this database waits for a lock.
    pub(in crate::store) async fn waits_for_a_lock(store: &Store) {
        for _ in 0..200 {
            let row = sqlx::query(
                "SELECT COUNT(*) AS n FROM pg_stat_activity \
                 WHERE datname = current_database() AND wait_event_type = 'Lock'",
            )
            .fetch_one(store.pool())
            .await
            .expect("pg_stat_activity");
            if row.try_get::<i64, _>("n").expect("count") > 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("no statement waited for a lock within 10 s");
    }
}
