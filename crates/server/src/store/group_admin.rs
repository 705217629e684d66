//! Groups as admins manage them: create, rename, set their quota and agent
//! pools, add and remove members; and a user's groups, whole, for what they
//! give (limits, pools, names). The OIDC claim's sync is `groups.rs`.

use super::quotas::{to_i64, to_u64};
use super::{Limits, Store, StoreResult, conflict, new_id, now_ms};
use serde::{Deserialize, Serialize};
use sqlx::Row;
use sqlx::any::AnyRow;
use streamspace_protocol::UserId;

/// Where a group or a membership comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum GroupSource {
    /// Made by an admin.
    Local,
    /// From the identity provider's groups claim, replaced at each login.
    Oidc,
}

impl GroupSource {
    pub fn as_str(self) -> &'static str {
        match self {
            GroupSource::Local => "local",
            GroupSource::Oidc => "oidc",
        }
    }

    fn parse(text: &str) -> Self {
        // Anything but 'oidc' is an admin's: the safe reading, since only
        // 'oidc' rows are replaced behind the admin's back.
        if text == "oidc" {
            GroupSource::Oidc
        } else {
            GroupSource::Local
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupRecord {
    pub id: String,
    pub name: String,
    pub source: GroupSource,
    /// `None` in a dimension: the group sets no limit there.
    pub limits: Limits,
    /// The agent pools its members may place sessions on, sorted.
    pub pools: Vec<String>,
    pub created_at: i64,
}

/// What an admin writes: everything but the id, source and time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupWrite {
    pub name: String,
    pub limits: Limits,
    pub pools: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct GroupMember {
    #[schema(value_type = String)]
    pub user_id: UserId,
    pub username: String,
    /// `oidc`: the next login sets it again from the claim.
    pub source: GroupSource,
}

const COLUMNS: &str = "id, name, source, max_sessions, cpu_millis, memory_bytes, created_at";

impl GroupRecord {
    fn from_row(row: &AnyRow, pools: Vec<String>) -> StoreResult<Self> {
        Ok(GroupRecord {
            id: row.try_get("id")?,
            name: row.try_get("name")?,
            source: GroupSource::parse(&row.try_get::<String, _>("source")?),
            limits: Limits {
                max_sessions: to_u64(row.try_get("max_sessions")?),
                cpu_millis: to_u64(row.try_get("cpu_millis")?),
                memory_bytes: to_u64(row.try_get("memory_bytes")?),
            },
            pools,
            created_at: row.try_get("created_at")?,
        })
    }
}

impl Store {
    pub async fn create_group(&self, group: &GroupWrite) -> StoreResult<GroupRecord> {
        let _turn = self.write_turn().await;
        let id = new_id();
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO groups (id, name, source, max_sessions, cpu_millis, memory_bytes, \
             created_at) VALUES ($1, $2, 'local', $3, $4, $5, $6)",
        )
        .bind(&id)
        .bind(&group.name)
        .bind(to_i64(group.limits.max_sessions))
        .bind(to_i64(group.limits.cpu_millis))
        .bind(to_i64(group.limits.memory_bytes))
        .bind(now_ms())
        .execute(&mut *tx)
        .await
        .map_err(conflict("a group with this name"))?;
        write_pools(&mut tx, &id, &group.pools).await?;
        tx.commit().await?;
        drop(_turn);
        self.get_group(&id)
            .await?
            .ok_or_else(|| super::StoreError::Corrupt(format!("group {id} vanished")))
    }

    /// Replaces the group's name, limits and pools; `None` if it is gone.
    pub async fn update_group(
        &self,
        id: &str,
        group: &GroupWrite,
    ) -> StoreResult<Option<GroupRecord>> {
        let _turn = self.write_turn().await;
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(
            "UPDATE groups SET name = $1, max_sessions = $2, cpu_millis = $3, memory_bytes = $4 \
             WHERE id = $5",
        )
        .bind(&group.name)
        .bind(to_i64(group.limits.max_sessions))
        .bind(to_i64(group.limits.cpu_millis))
        .bind(to_i64(group.limits.memory_bytes))
        .bind(id)
        .execute(&mut *tx)
        .await
        .map_err(conflict("a group with this name"))?;
        if done.rows_affected() != 1 {
            return Ok(None);
        }
        sqlx::query("DELETE FROM group_pools WHERE group_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        write_pools(&mut tx, id, &group.pools).await?;
        tx.commit().await?;
        drop(_turn);
        self.get_group(id).await
    }

    /// Deletes the group, its memberships and pools (by cascade).
    pub async fn delete_group(&self, id: &str) -> StoreResult<bool> {
        let _turn = self.write_turn().await;
        let mut tx = self.pool.begin().await?;
        // Spelled out as well as cascaded: SQLite enforces foreign keys
        // only when a connection turns them on.
        for table in ["group_members", "group_pools"] {
            sqlx::query(super::sql(format!(
                "DELETE FROM {table} WHERE group_id = $1"
            )))
            .bind(id)
            .execute(&mut *tx)
            .await?;
        }
        let done = sqlx::query("DELETE FROM groups WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }

    /// A group by id, or by name when no id matches.
    pub async fn get_group(&self, id_or_name: &str) -> StoreResult<Option<GroupRecord>> {
        for column in ["id", "name"] {
            let row = sqlx::query(super::sql(format!(
                "SELECT {COLUMNS} FROM groups WHERE {column} = $1"
            )))
            .bind(id_or_name)
            .fetch_optional(&self.pool)
            .await?;
            if let Some(row) = row {
                let id: String = row.try_get("id")?;
                let pools = self.pools_of_group(&id).await?;
                return GroupRecord::from_row(&row, pools).map(Some);
            }
        }
        Ok(None)
    }

    pub async fn list_groups(&self) -> StoreResult<Vec<GroupRecord>> {
        let rows = sqlx::query(super::sql(format!(
            "SELECT {COLUMNS} FROM groups ORDER BY name"
        )))
        .fetch_all(&self.pool)
        .await?;
        self.with_pools(&rows).await
    }

    /// The groups `user_id` is a member of, by any source, by name.
    pub async fn groups_of(&self, user_id: &UserId) -> StoreResult<Vec<GroupRecord>> {
        let rows = sqlx::query(super::sql(format!(
            "SELECT {} FROM groups g JOIN group_members m ON m.group_id = g.id \
             WHERE m.user_id = $1 ORDER BY g.name",
            prefixed("g")
        )))
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?;
        self.with_pools(&rows).await
    }

    /// Each group's members, by username.
    pub async fn group_members(&self, group_id: &str) -> StoreResult<Vec<GroupMember>> {
        let rows = sqlx::query(
            "SELECT m.user_id, u.username, m.source FROM group_members m \
             JOIN users u ON u.id = m.user_id WHERE m.group_id = $1 ORDER BY u.username",
        )
        .bind(group_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(GroupMember {
                    user_id: r.try_get("user_id")?,
                    username: r.try_get("username")?,
                    source: GroupSource::parse(&r.try_get::<String, _>("source")?),
                })
            })
            .collect()
    }

    /// How `user_id` is a member of the group, if they are.
    pub async fn membership(
        &self,
        group_id: &str,
        user_id: &UserId,
    ) -> StoreResult<Option<GroupSource>> {
        let row =
            sqlx::query("SELECT source FROM group_members WHERE group_id = $1 AND user_id = $2")
                .bind(group_id)
                .bind(user_id)
                .fetch_optional(&self.pool)
                .await?;
        row.map(|r| {
            r.try_get::<String, _>("source")
                .map(|s| GroupSource::parse(&s))
        })
        .transpose()
        .map_err(Into::into)
    }

    /// Makes `user_id` a member by an admin's hand: a membership the claim
    /// made becomes the admin's, so later logins leave it alone.
    pub async fn add_group_member(&self, group_id: &str, user_id: &UserId) -> StoreResult<()> {
        let _turn = self.write_turn().await;
        sqlx::query(
            "INSERT INTO group_members (group_id, user_id, source) VALUES ($1, $2, 'local') \
             ON CONFLICT (group_id, user_id) DO UPDATE SET source = 'local'",
        )
        .bind(group_id)
        .bind(user_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn remove_group_member(&self, group_id: &str, user_id: &UserId) -> StoreResult<bool> {
        let _turn = self.write_turn().await;
        let done = sqlx::query("DELETE FROM group_members WHERE group_id = $1 AND user_id = $2")
            .bind(group_id)
            .bind(user_id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn pools_of_group(&self, group_id: &str) -> StoreResult<Vec<String>> {
        let rows = sqlx::query("SELECT pool FROM group_pools WHERE group_id = $1 ORDER BY pool")
            .bind(group_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| r.try_get("pool").map_err(Into::into))
            .collect()
    }

    async fn with_pools(&self, rows: &[AnyRow]) -> StoreResult<Vec<GroupRecord>> {
        let mut groups = Vec::with_capacity(rows.len());
        for row in rows {
            let id: String = row.try_get("id")?;
            let pools = self.pools_of_group(&id).await?;
            groups.push(GroupRecord::from_row(row, pools)?);
        }
        Ok(groups)
    }
}

fn prefixed(table: &str) -> String {
    COLUMNS
        .split(", ")
        .map(|c| format!("{table}.{c}"))
        .collect::<Vec<_>>()
        .join(", ")
}

async fn write_pools(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    group_id: &str,
    pools: &[String],
) -> StoreResult<()> {
    for pool in pools {
        sqlx::query("INSERT INTO group_pools (group_id, pool) VALUES ($1, $2)")
            .bind(group_id)
            .bind(pool)
            .execute(&mut **tx)
            .await
            .map_err(conflict("this pool, listed twice,"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{NewAgent, Role, StoreError};
    use std::collections::BTreeMap;
    use streamspace_protocol::{Capabilities, Capacity};

    fn write(name: &str, sessions: Option<u64>, pools: &[&str]) -> GroupWrite {
        GroupWrite {
            name: name.into(),
            limits: Limits {
                max_sessions: sessions,
                ..Limits::default()
            },
            pools: pools.iter().map(|p| (*p).to_owned()).collect(),
        }
    }

    /// Create, read by id and name, rename, replace pools, members by
    /// source, delete with what hangs on the group.
    async fn groups_hold_limits_pools_and_members(url: &str) {
        let store = Store::connect(url).await.expect("store");
        let alice = store
            .create_user("alice", "h", Role::User)
            .await
            .expect("user");
        let a = store
            .create_group(&write("team-a", Some(3), &["a", "gpu"]))
            .await
            .expect("a");
        assert_eq!(a.source, GroupSource::Local);
        assert_eq!(a.pools, ["a", "gpu"]);
        assert_eq!(a.limits.max_sessions, Some(3));
        let clash = store.create_group(&write("team-a", None, &[])).await;
        assert!(matches!(clash, Err(StoreError::Conflict(_))), "{clash:?}");
        assert_eq!(
            store.get_group("team-a").await.expect("read"),
            Some(a.clone())
        );
        assert_eq!(store.get_group(&a.id).await.expect("read"), Some(a.clone()));

        let renamed = store
            .update_group(&a.id, &write("team-x", None, &["b"]))
            .await
            .expect("update")
            .expect("exists");
        assert_eq!(
            (renamed.name.as_str(), renamed.pools.as_slice()),
            ("team-x", &["b".to_owned()][..])
        );
        assert_eq!(renamed.limits, Limits::default());
        assert_eq!(
            store
                .update_group("nope", &write("y", None, &[]))
                .await
                .expect("update"),
            None
        );

        store.add_group_member(&a.id, &alice.id).await.expect("add");
        store
            .add_group_member(&a.id, &alice.id)
            .await
            .expect("idempotent");
        assert_eq!(
            store.membership(&a.id, &alice.id).await.expect("read"),
            Some(GroupSource::Local)
        );
        let members = store.group_members(&a.id).await.expect("members");
        assert_eq!(members.len(), 1);
        assert_eq!(members[0].username, "alice");
        assert_eq!(
            store.groups_of(&alice.id).await.expect("groups"),
            vec![renamed]
        );

        assert!(
            store
                .remove_group_member(&a.id, &alice.id)
                .await
                .expect("remove")
        );
        assert!(
            !store
                .remove_group_member(&a.id, &alice.id)
                .await
                .expect("again")
        );
        store.add_group_member(&a.id, &alice.id).await.expect("add");
        assert!(store.delete_group(&a.id).await.expect("delete"));
        assert!(store.groups_of(&alice.id).await.expect("groups").is_empty());
        assert!(store.list_groups().await.expect("list").is_empty());
    }

    /// A claimed membership an admin adds again becomes the admin's.
    async fn an_admins_add_takes_over_a_claimed_membership(url: &str) {
        let store = Store::connect(url).await.expect("store");
        let bob = store
            .create_user("bob", "h", Role::User)
            .await
            .expect("user");
        let g = store
            .create_group(&write("eng", None, &[]))
            .await
            .expect("group");
        sqlx::query(
            "INSERT INTO group_members (group_id, user_id, source) VALUES ($1, $2, 'oidc')",
        )
        .bind(&g.id)
        .bind(&bob.id)
        .execute(store.pool())
        .await
        .expect("claimed");
        assert_eq!(
            store.membership(&g.id, &bob.id).await.expect("read"),
            Some(GroupSource::Oidc)
        );
        store.add_group_member(&g.id, &bob.id).await.expect("add");
        assert_eq!(
            store.membership(&g.id, &bob.id).await.expect("read"),
            Some(GroupSource::Local)
        );
    }

    /// The agent joins the token's pool, whatever labels it sends, and only
    /// an admin's change moves it.
    async fn an_agent_joins_its_tokens_pool(url: &str) {
        let store = Store::connect(url).await.expect("store");
        store
            .create_pool_enrollment_token("t", "admin", now_ms() + 60_000, "team-a")
            .await
            .expect("token");
        let agent = NewAgent {
            name: "host-a".into(),
            platform: "docker".into(),
            region: None,
            labels: BTreeMap::from([("pool".to_owned(), "team-b".to_owned())]),
            capacity: Capacity::default(),
            capabilities: Capabilities::default(),
        };
        let id = store.register_agent("t", &agent, "s").await.expect("agent");
        let read = store.get_agent(&id).await.expect("read").expect("exists");
        assert_eq!(read.pool, "team-a");
        assert!(store.set_agent_pool(&id, "team-b").await.expect("move"));
        let moved = store.get_agent(&id).await.expect("read").expect("exists");
        assert_eq!(moved.pool, "team-b");
        store
            .create_enrollment_token("u", "admin", now_ms() + 60_000)
            .await
            .expect("token");
        let other = NewAgent {
            name: "host-b".into(),
            ..agent
        };
        let id = store
            .register_agent("u", &other, "s2")
            .await
            .expect("agent");
        let read = store.get_agent(&id).await.expect("read").expect("exists");
        assert_eq!(read.pool, crate::store::DEFAULT_POOL);
    }

    on_both_engines!(
        groups_hold_limits_pools_and_members,
        an_admins_add_takes_over_a_claimed_membership,
        an_agent_joins_its_tokens_pool,
    );
}
