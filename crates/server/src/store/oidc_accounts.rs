//! Accounts of single sign-on users: found by the identity provider's
//! subject, made at the first login (just in time). Their password hash is
//! `NO_PASSWORD`, which no password matches, so they sign in only through
//! the provider.

use super::{Role, Store, StoreResult, User, conflict, now_ms};
use sqlx::Row;
use streamspace_protocol::UserId;

/// The password hash of accounts that have no password. It is no PHC
/// string, so the password check never matches it.
pub const NO_PASSWORD: &str = "!oidc";

impl Store {
    /// The account linked to the provider's subject `sub`, with the
    /// password hash a login token is issued against.
    pub async fn oidc_account(&self, subject: &str) -> StoreResult<Option<(User, String)>> {
        let row = sqlx::query(
            "SELECT id, username, role, legacy_home, password_hash FROM users \
             WHERE oidc_subject = $1 AND auth_source = 'oidc'",
        )
        .bind(subject)
        .fetch_optional(&self.pool)
        .await?;
        match row {
            Some(row) => Ok(Some((User::from_row(&row)?, row.try_get("password_hash")?))),
            None => Ok(None),
        }
    }

    /// Makes the account of a first single sign-on login. A username that
    /// is taken (by a local account or another subject) is a conflict: the
    /// provider must not take over an account it did not make.
    pub async fn create_oidc_user(
        &self,
        username: &str,
        subject: &str,
        role: Role,
    ) -> StoreResult<(User, String)> {
        let _turn = self.write_turn().await;
        let user = User {
            id: UserId::new(),
            username: username.to_owned(),
            role,
            legacy_home: false,
        };
        sqlx::query(
            "INSERT INTO users (id, username, password_hash, role, created_at, auth_source, oidc_subject) \
             VALUES ($1, $2, $3, $4, $5, 'oidc', $6)",
        )
        .bind(&user.id)
        .bind(&user.username)
        .bind(NO_PASSWORD)
        .bind(role.as_str())
        .bind(now_ms())
        .bind(subject)
        .execute(&self.pool)
        .await
        .map_err(conflict("a user with this username"))?;
        Ok((user, NO_PASSWORD.to_owned()))
    }

    /// Whether `username` is an account that signs in with a password.
    pub async fn is_local_user(&self, username: &str) -> StoreResult<bool> {
        let row = sqlx::query("SELECT auth_source FROM users WHERE username = $1")
            .bind(username)
            .fetch_optional(&self.pool)
            .await?;
        Ok(match row {
            Some(row) => row.try_get::<String, _>("auth_source")? == "local",
            None => false,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreError;

    async fn accounts_are_keyed_by_subject(url: &str) {
        let store = Store::connect(url).await.expect("store");
        store
            .create_user("alice", "h1", Role::User)
            .await
            .expect("local");
        let taken = store.create_oidc_user("alice", "sub-1", Role::User).await;
        assert!(matches!(taken, Err(StoreError::Conflict(_))), "{taken:?}");
        let (bob, hash) = store
            .create_oidc_user("bob", "sub-2", Role::Admin)
            .await
            .expect("bob");
        assert_eq!(hash, NO_PASSWORD);
        let (found, _) = store
            .oidc_account("sub-2")
            .await
            .expect("query")
            .expect("found");
        assert_eq!(found, bob);
        assert!(store.oidc_account("sub-1").await.expect("query").is_none());
        assert!(store.is_local_user("alice").await.expect("query"));
        assert!(!store.is_local_user("bob").await.expect("query"));
        let again = store.create_oidc_user("bob2", "sub-2", Role::User).await;
        assert!(again.is_err(), "one account per subject");
    }

    on_both_engines!(accounts_are_keyed_by_subject);
}
