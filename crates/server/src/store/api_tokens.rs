//! Named API tokens in the store: created, listed and revoked by their
//! owner, and when each was last used. They live in `api_tokens` beside
//! login tokens (kind `api`), so expiry, logout-all, password changes and
//! user deletion end them the same way. Only the SHA-256 is stored.

use super::{Store, StoreResult, User, new_id, now_ms};
use sqlx::Row;
use sqlx::any::AnyRow;
use streamspace_protocol::UserId;

/// How stale `last_used_at` may get before a request writes it again: a
/// script making thousands of calls a minute costs one write a minute.
pub const LAST_USED_RESOLUTION_MS: i64 = 60_000;

/// An API token as its owner sees it (never the secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiTokenRecord {
    pub id: String,
    pub name: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub last_used_at: Option<i64>,
}

impl ApiTokenRecord {
    fn from_row(row: &AnyRow) -> StoreResult<Self> {
        Ok(Self {
            id: row.try_get("id")?,
            name: row.try_get("name")?,
            created_at: row.try_get("created_at")?,
            expires_at: row.try_get("expires_at")?,
            last_used_at: row.try_get("last_used_at")?,
        })
    }
}

/// Why an API token was not created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NewTokenRefusal {
    /// The owner already has `limit` live tokens.
    TooMany { limit: u32 },
    /// The owner already has a live token of this name.
    NameTaken,
    /// The owner no longer exists.
    NoSuchUser,
}

/// Checks the count and inserts as one statement; the count and name are
/// about live tokens only (expired ones wait for the purge).
macro_rules! insert_api_token_sql {
    () => {
        "INSERT INTO api_tokens (token_hash, user_id, created_at, expires_at, id, name, kind) \
         SELECT $1, id, $3, $4, $5, $6, 'api' FROM users WHERE id = $2 \
         AND (SELECT COUNT(*) FROM api_tokens \
              WHERE user_id = $2 AND kind = 'api' AND expires_at > $3) < $7"
    };
}

impl Store {
    /// Creates an API token for `user_id` unless they have `limit` live ones
    /// or one named `name`. PostgreSQL locks the user's row first, so two
    /// creations at once count each other; SQLite writes one at a time.
    pub async fn create_named_token(
        &self,
        user_id: &UserId,
        token_hash: &str,
        name: &str,
        expires_at: i64,
        limit: u32,
    ) -> StoreResult<Result<ApiTokenRecord, NewTokenRefusal>> {
        let _turn = self.write_turn().await;
        let now = now_ms();
        let mut tx = self.pool.begin().await?;
        if self.writes.is_none() {
            sqlx::query("SELECT id FROM users WHERE id = $1 FOR UPDATE")
                .bind(user_id)
                .execute(&mut *tx)
                .await?;
        }
        // An expired token of the same name would block the unique index:
        // it is dead anyway, so it goes now rather than at the next purge.
        sqlx::query("DELETE FROM api_tokens WHERE user_id = $1 AND name = $2 AND expires_at <= $3")
            .bind(user_id)
            .bind(name)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        let id = new_id();
        let inserted = sqlx::query(insert_api_token_sql!())
            .bind(token_hash)
            .bind(user_id)
            .bind(now)
            .bind(expires_at)
            .bind(&id)
            .bind(name)
            .bind(i64::from(limit))
            .execute(&mut *tx)
            .await;
        let refusal = match inserted {
            Ok(done) if done.rows_affected() == 1 => None,
            Ok(_) => Some(self.why_no_token(&mut tx, user_id, limit).await?),
            Err(sqlx::Error::Database(db)) if db.is_unique_violation() => {
                Some(NewTokenRefusal::NameTaken)
            }
            Err(err) => return Err(err.into()),
        };
        if let Some(refusal) = refusal {
            tx.rollback().await?;
            return Ok(Err(refusal));
        }
        tx.commit().await?;
        Ok(Ok(ApiTokenRecord {
            id,
            name: name.to_owned(),
            created_at: now,
            expires_at,
            last_used_at: None,
        }))
    }

    /// An insert that added no row: the user is gone, or at the limit.
    async fn why_no_token(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        user_id: &UserId,
        limit: u32,
    ) -> StoreResult<NewTokenRefusal> {
        let exists = sqlx::query("SELECT id FROM users WHERE id = $1")
            .bind(user_id)
            .fetch_optional(&mut **tx)
            .await?;
        Ok(match exists {
            None => NewTokenRefusal::NoSuchUser,
            Some(_) => NewTokenRefusal::TooMany { limit },
        })
    }

    /// The live API tokens of `user_id`, newest first.
    pub async fn list_named_tokens(&self, user_id: &UserId) -> StoreResult<Vec<ApiTokenRecord>> {
        let rows = sqlx::query(
            "SELECT id, name, created_at, expires_at, last_used_at FROM api_tokens \
             WHERE user_id = $1 AND kind = 'api' AND expires_at > $2 \
             ORDER BY created_at DESC, id DESC",
        )
        .bind(user_id)
        .bind(now_ms())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(ApiTokenRecord::from_row).collect()
    }

    /// Revokes `user_id`'s API token `id`; the record, if there was one.
    pub async fn revoke_named_token(
        &self,
        user_id: &UserId,
        id: &str,
    ) -> StoreResult<Option<ApiTokenRecord>> {
        let _turn = self.write_turn().await;
        let row = sqlx::query(
            "DELETE FROM api_tokens WHERE user_id = $1 AND id = $2 AND kind = 'api' \
             RETURNING id, name, created_at, expires_at, last_used_at",
        )
        .bind(user_id)
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(ApiTokenRecord::from_row).transpose()
    }

    /// Whether the token stored as `token_hash` is an API token (rather than
    /// a login).
    pub async fn is_named_token(&self, token_hash: &str) -> StoreResult<bool> {
        let row = sqlx::query("SELECT kind FROM api_tokens WHERE token_hash = $1")
            .bind(token_hash)
            .fetch_optional(&self.pool)
            .await?;
        Ok(match row {
            Some(row) => row.try_get::<String, _>("kind")? == "api",
            None => false,
        })
    }

    /// The user a live token belongs to, as `user_for_token`, noting the use
    /// of an API token: the read is the one every request makes anyway, and
    /// a write follows only when the stored time is a minute old.
    pub async fn user_for_token_noting_use(&self, token_hash: &str) -> StoreResult<Option<User>> {
        let now = now_ms();
        let row = sqlx::query(
            "SELECT u.id, u.username, u.role, u.legacy_home, t.kind, t.last_used_at \
             FROM api_tokens t JOIN users u ON u.id = t.user_id \
             WHERE t.token_hash = $1 AND t.expires_at > $2",
        )
        .bind(token_hash)
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let kind: String = row.try_get("kind")?;
        let last_used: Option<i64> = row.try_get("last_used_at")?;
        if kind == "api" && last_used.is_none_or(|at| at <= now - LAST_USED_RESOLUTION_MS) {
            self.note_token_use(token_hash, now).await?;
        }
        User::from_row(&row).map(Some)
    }

    /// Sets `last_used_at` unless another request just did (the condition
    /// makes a burst at the minute's edge write once).
    async fn note_token_use(&self, token_hash: &str, now: i64) -> StoreResult<()> {
        let _turn = self.write_turn().await;
        sqlx::query(
            "UPDATE api_tokens SET last_used_at = $2 WHERE token_hash = $1 \
             AND (last_used_at IS NULL OR last_used_at <= $3)",
        )
        .bind(token_hash)
        .bind(now)
        .bind(now - LAST_USED_RESOLUTION_MS)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::Role;
    use super::*;

    const LATER: i64 = i64::MAX / 2;

    /// Creations at once never pass the limit between them: PostgreSQL
    /// takes turns on the user's row, SQLite writes one at a time.
    async fn concurrent_creations_stay_within_the_limit(url: &str) {
        let store = Store::connect(url).await.expect("store");
        let alice = store.create_user("alice", "h", Role::User).await;
        let alice = alice.expect("user").id;
        let creations = (0..20).map(|i| {
            let (store, alice) = (store.clone(), alice.clone());
            tokio::spawn(async move {
                let name = format!("t{i}");
                let hash = format!("hash{i}");
                store
                    .create_named_token(&alice, &hash, &name, LATER, 5)
                    .await
            })
        });
        let mut created = 0;
        for creation in futures::future::join_all(creations).await {
            match creation.expect("joined").expect("no database error") {
                Ok(_) => created += 1,
                Err(refusal) => assert_eq!(refusal, NewTokenRefusal::TooMany { limit: 5 }),
            }
        }
        assert_eq!(created, 5);
        assert_eq!(
            store.list_named_tokens(&alice).await.expect("list").len(),
            5
        );
    }

    /// A name is unique among live tokens; an expired one frees it.
    async fn names_are_unique_among_live_tokens(url: &str) {
        let store = Store::connect(url).await.expect("store");
        let alice = store.create_user("alice", "h", Role::User).await;
        let alice = alice.expect("user").id;
        let create = |hash: &'static str, expires_at: i64| {
            let (store, alice) = (store.clone(), alice.clone());
            async move {
                store
                    .create_named_token(&alice, hash, "ci", expires_at, 5)
                    .await
                    .expect("no database error")
            }
        };
        assert!(create("h1", now_ms() + 1).await.is_ok());
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        assert!(create("h2", LATER).await.is_ok(), "the first has expired");
        assert_eq!(create("h3", LATER).await, Err(NewTokenRefusal::NameTaken));
    }

    /// PostgreSQL: a creation not yet committed holds another back until it
    /// is, and then counts (without the row lock, both would be made).
    #[tokio::test]
    async fn a_creation_in_progress_is_counted() {
        let url = streamspace_testkit::postgres::fresh_database();
        let store = Store::connect(&url.await.expect("a database")).await;
        let store = store.expect("store");
        let alice = store.create_user("alice", "h", Role::User).await;
        let alice = alice.expect("user").id;
        let mut other = store.pool().begin().await.expect("transaction");
        sqlx::query("SELECT id FROM users WHERE id = $1 FOR UPDATE")
            .bind(&alice)
            .execute(&mut *other)
            .await
            .expect("lock");
        sqlx::query(
            "INSERT INTO api_tokens (token_hash, user_id, created_at, expires_at, id, name, kind) \
             VALUES ('h0', $1, 0, $2, 'i0', 'other', 'api')",
        )
        .bind(&alice)
        .bind(LATER)
        .execute(&mut *other)
        .await
        .expect("insert");
        let mine = {
            let (store, alice) = (store.clone(), alice.clone());
            tokio::spawn(async move {
                store
                    .create_named_token(&alice, "h1", "mine", LATER, 1)
                    .await
            })
        };
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        assert!(!mine.is_finished(), "it waits for the creation in progress");
        other.commit().await.expect("commit");
        let mine = mine.await.expect("joined").expect("no database error");
        assert_eq!(mine, Err(NewTokenRefusal::TooMany { limit: 1 }));
    }

    on_both_engines!(
        concurrent_creations_stay_within_the_limit,
        names_are_unique_among_live_tokens
    );
}
