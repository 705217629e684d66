//! Users in the store: accounts, password hashes, roles, and the guards that
//! keep at least one admin.

use super::{Store, StoreError, StoreResult, conflict, now_ms};
use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};
use streamspace_protocol::UserId;

/// The pool's user id, as a literal for `concat!` into SQL.
macro_rules! pool_user {
    () => {
        "00000000-0000-7000-8000-000000000001"
    };
}

/// The owner of sessions waiting in a warm pool (`pool.rs`): a row made
/// by migration 0009 that is no account, left out of every query here.
pub const POOL_USER: &str = pool_user!();

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    User,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Admin => "admin",
        }
    }

    fn parse(text: &str) -> StoreResult<Self> {
        match text {
            "user" => Ok(Role::User),
            "admin" => Ok(Role::Admin),
            other => Err(StoreError::Corrupt(format!("unknown role {other:?}"))),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct User {
    #[schema(value_type = String)]
    pub id: UserId,
    pub username: String,
    pub role: Role,
    /// Existed before homes were keyed by ids, so may have a home under the
    /// old name (see `template::home_volume`).
    #[serde(skip)]
    pub legacy_home: bool,
}

impl User {
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }

    pub(super) fn from_row(row: &AnyRow) -> StoreResult<Self> {
        Ok(User {
            id: row.try_get("id")?,
            username: row.try_get("username")?,
            role: Role::parse(&row.try_get::<String, _>("role")?)?,
            legacy_home: row.try_get::<i64, _>("legacy_home")? != 0,
        })
    }
}

impl Store {
    pub async fn create_user(
        &self,
        username: &str,
        password_hash: &str,
        role: Role,
    ) -> StoreResult<User> {
        let _turn = self.write_turn().await;
        let user = User {
            id: UserId::new(),
            username: username.to_owned(),
            role,
            legacy_home: false,
        };
        sqlx::query(
            "INSERT INTO users (id, username, password_hash, role, created_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&user.id)
        .bind(&user.username)
        .bind(password_hash)
        .bind(role.as_str())
        .bind(now_ms())
        .execute(&self.pool)
        .await
        .map_err(conflict("a user with this username"))?;
        Ok(user)
    }

    pub async fn count_users(&self) -> StoreResult<i64> {
        let row = sqlx::query(concat!(
            "SELECT COUNT(*) AS n FROM users WHERE id <> '",
            pool_user!(),
            "'"
        ))
        .fetch_one(&self.pool)
        .await?;
        Ok(row.try_get("n")?)
    }

    pub async fn list_users(&self) -> StoreResult<Vec<User>> {
        let rows = sqlx::query(concat!(
            "SELECT id, username, role, legacy_home FROM users ",
            "WHERE id <> '",
            pool_user!(),
            "' ORDER BY username"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(User::from_row).collect()
    }

    pub async fn get_user(&self, id: &UserId) -> StoreResult<Option<User>> {
        let row = sqlx::query(concat!(
            "SELECT id, username, role, legacy_home FROM users WHERE id = $1 AND id <> '",
            pool_user!(),
            "'"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(User::from_row).transpose()
    }

    /// The user and their password hash, for login.
    pub async fn user_credentials(&self, username: &str) -> StoreResult<Option<(User, String)>> {
        let row = sqlx::query(concat!(
            "SELECT id, username, role, legacy_home, password_hash FROM users ",
            "WHERE username = $1 AND id <> '",
            pool_user!(),
            "'"
        ))
        .bind(username)
        .fetch_optional(&self.pool)
        .await?;
        match row {
            Some(row) => Ok(Some((User::from_row(&row)?, row.try_get("password_hash")?))),
            None => Ok(None),
        }
    }

    pub async fn set_user_password(&self, id: &UserId, password_hash: &str) -> StoreResult<bool> {
        let _turn = self.write_turn().await;
        let done = sqlx::query("UPDATE users SET password_hash = $1 WHERE id = $2")
            .bind(password_hash)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Deletes the user with their tokens and session history, unless they
    /// are the last admin.
    pub async fn delete_user(&self, id: &UserId) -> StoreResult<AdminChange> {
        let _turn = self.write_turn().await;
        let mut tx = self.pool.begin().await?;
        let change = delete_user_in(&mut tx, self.writes.is_none(), id).await?;
        tx.commit().await?;
        Ok(change)
    }

    /// Sets the user's role, unless that takes away the last admin.
    pub async fn set_user_role(&self, id: &UserId, role: Role) -> StoreResult<AdminChange> {
        let _turn = self.write_turn().await;
        let mut tx = self.pool.begin().await?;
        let change = set_role_in(&mut tx, self.writes.is_none(), id, role).await?;
        tx.commit().await?;
        Ok(change)
    }
}

/// What a change that may take away an admin did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminChange {
    Done,
    NoSuchUser,
    /// Refused: it would have left no admin.
    LastAdmin,
}

/// The advisory lock (PostgreSQL) that orders changes which may take away
/// an admin, on every replica (`"SSADMINS"` as an integer).
const ADMINS_LOCK: i64 = 0x5353_4144_4d49_4e53;

/// Two admins demoting or deleting each other at once must not both
/// succeed. Each change is conditional on another admin remaining; on
/// PostgreSQL, whose statements see only what was committed before they
/// began, the changes also take turns on an advisory lock held until
/// commit, so the second sees the first. SQLite writes one at a time.
async fn take_turn(tx: &mut Transaction<'_, Any>, postgres: bool) -> StoreResult<()> {
    if postgres {
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(ADMINS_LOCK)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

/// Whether nothing changed because there is no such user or because it
/// would have taken away the last admin.
async fn outcome(
    tx: &mut Transaction<'_, Any>,
    changed: u64,
    id: &UserId,
) -> StoreResult<AdminChange> {
    if changed == 1 {
        return Ok(AdminChange::Done);
    }
    let exists = sqlx::query(concat!(
        "SELECT id FROM users WHERE id = $1 AND id <> '",
        pool_user!(),
        "'"
    ))
    .bind(id)
    .fetch_optional(&mut **tx)
    .await?;
    Ok(match exists {
        Some(_) => AdminChange::LastAdmin,
        None => AdminChange::NoSuchUser,
    })
}

pub(super) async fn set_role_in(
    tx: &mut Transaction<'_, Any>,
    postgres: bool,
    id: &UserId,
    role: Role,
) -> StoreResult<AdminChange> {
    take_turn(tx, postgres).await?;
    let done = sqlx::query(concat!(
        "UPDATE users SET role = $1 WHERE id = $2 AND id <> '",
        pool_user!(),
        "' AND ($1 = 'admin' OR role <> 'admin' \
              OR EXISTS (SELECT 1 FROM users WHERE role = 'admin' AND id <> $2))"
    ))
    .bind(role.as_str())
    .bind(id)
    .execute(&mut **tx)
    .await?;
    outcome(tx, done.rows_affected(), id).await
}

async fn delete_user_in(
    tx: &mut Transaction<'_, Any>,
    postgres: bool,
    id: &UserId,
) -> StoreResult<AdminChange> {
    take_turn(tx, postgres).await?;
    let done = sqlx::query(concat!(
        "DELETE FROM users WHERE id = $1 AND id <> '",
        pool_user!(),
        "' AND (role <> 'admin' \
              OR EXISTS (SELECT 1 FROM users WHERE role = 'admin' AND id <> $1))"
    ))
    .bind(id)
    .execute(&mut **tx)
    .await?;
    outcome(tx, done.rows_affected(), id).await
}

#[cfg(test)]
mod tests {
    use super::super::tokens::tests::waits_for_a_lock;
    use super::*;

    /// Sets `id`'s role, or deletes them for `None`.
    async fn change(store: &Store, id: &UserId, role: Option<Role>) -> AdminChange {
        let change = match role {
            Some(role) => store.set_user_role(id, role).await,
            None => store.delete_user(id).await,
        };
        change.expect("write")
    }

    /// Demoting or deleting the last admin is refused; others are not.
    async fn the_last_admin_stays(url: &str) {
        use AdminChange::{Done, LastAdmin, NoSuchUser};
        use Role::{Admin, User};
        let store = Store::connect(url).await.expect("store");
        let mut ids = Vec::new();
        for (name, role) in [("a", Admin), ("b", Admin), ("u", User)] {
            ids.push(store.create_user(name, "h", role).await.expect("user").id);
        }
        let [a, b, u] = [&ids[0], &ids[1], &ids[2]];
        assert_eq!(change(&store, a, Some(User)).await, Done);
        assert_eq!(change(&store, b, Some(User)).await, LastAdmin);
        assert_eq!(change(&store, b, None).await, LastAdmin);
        assert_eq!(change(&store, u, None).await, Done);
        let nobody = UserId::from("nobody");
        assert_eq!(change(&store, &nobody, None).await, NoSuchUser);
        assert_eq!(change(&store, &nobody, Some(Admin)).await, NoSuchUser);
        assert_eq!(change(&store, b, Some(Admin)).await, Done, "no change");
        assert_eq!(change(&store, a, Some(Admin)).await, Done);
        assert_eq!(change(&store, b, None).await, Done);
    }

    on_both_engines!(the_last_admin_stays);

    /// PostgreSQL: while one demotion is not yet committed, a second waits
    /// for it, then sees it: without the turn both would see the other
    /// admin still in place and leave none.
    #[tokio::test]
    async fn concurrent_demotions_take_turns() {
        let url = streamspace_testkit::postgres::fresh_database();
        let store = Store::connect(&url.await.expect("a database")).await;
        let store = store.expect("store");
        let a = store
            .create_user("a", "h", Role::Admin)
            .await
            .expect("user")
            .id;
        let b = store
            .create_user("b", "h", Role::Admin)
            .await
            .expect("user")
            .id;
        let mut first = store.pool().begin().await.expect("transaction");
        let demoted = set_role_in(&mut first, true, &a, Role::User).await;
        assert_eq!(demoted.expect("write"), AdminChange::Done);
        let second = tokio::spawn({
            let store = store.clone();
            async move { store.set_user_role(&b, Role::User).await }
        });
        waits_for_a_lock(&store).await;
        first.commit().await.expect("commit");
        let second = second.await.expect("joins").expect("write");
        assert_eq!(second, AdminChange::LastAdmin);
    }
}
