use super::{Store, StoreError, StoreResult, conflict, new_id, now_ms};
use serde::{Deserialize, Serialize};
use sqlx::Row;
use sqlx::any::AnyRow;

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
    pub id: String,
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
            id: new_id(),
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
        let row = sqlx::query("SELECT COUNT(*) AS n FROM users")
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get("n")?)
    }

    pub async fn list_users(&self) -> StoreResult<Vec<User>> {
        let rows =
            sqlx::query("SELECT id, username, role, legacy_home FROM users ORDER BY username")
                .fetch_all(&self.pool)
                .await?;
        rows.iter().map(User::from_row).collect()
    }

    pub async fn get_user(&self, id: &str) -> StoreResult<Option<User>> {
        let row = sqlx::query("SELECT id, username, role, legacy_home FROM users WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(User::from_row).transpose()
    }

    /// The user and their password hash, for login.
    pub async fn user_credentials(&self, username: &str) -> StoreResult<Option<(User, String)>> {
        let row = sqlx::query(
            "SELECT id, username, role, legacy_home, password_hash FROM users WHERE username = $1",
        )
        .bind(username)
        .fetch_optional(&self.pool)
        .await?;
        match row {
            Some(row) => Ok(Some((User::from_row(&row)?, row.try_get("password_hash")?))),
            None => Ok(None),
        }
    }

    pub async fn set_user_password(&self, id: &str, password_hash: &str) -> StoreResult<bool> {
        let _turn = self.write_turn().await;
        let done = sqlx::query("UPDATE users SET password_hash = $1 WHERE id = $2")
            .bind(password_hash)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Deletes the user with their tokens and session history.
    pub async fn delete_user(&self, id: &str) -> StoreResult<bool> {
        let _turn = self.write_turn().await;
        let done = sqlx::query("DELETE FROM users WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }
}

impl Store {
    pub async fn set_user_role(&self, id: &str, role: Role) -> StoreResult<bool> {
        let _turn = self.write_turn().await;
        let done = sqlx::query("UPDATE users SET role = $1 WHERE id = $2")
            .bind(role.as_str())
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }
}
