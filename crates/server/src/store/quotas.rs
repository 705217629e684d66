//! Per-user quota overrides and what a user's sessions use.

use super::resources::{read_count, read_sum, sum};
use super::{Store, StoreResult, sql};
use serde::{Deserialize, Serialize};
use sqlx::Row;
use sqlx::any::AnyRow;
use streamspace_protocol::UserId;

/// Limits on what one user may run. `None` means no limit (or, in an
/// override, "use the server-wide default").
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    pub max_sessions: Option<u64>,
    pub cpu_millis: Option<u64>,
    pub memory_bytes: Option<u64>,
}

impl Limits {
    /// This override on top of `defaults`.
    pub fn over(self, defaults: Limits) -> Limits {
        Limits {
            max_sessions: self.max_sessions.or(defaults.max_sessions),
            cpu_millis: self.cpu_millis.or(defaults.cpu_millis),
            memory_bytes: self.memory_bytes.or(defaults.memory_bytes),
        }
    }
}

/// What a user's sessions hold. Every session that is not terminated counts
/// toward `sessions`; only those meant to run count toward CPU and memory,
/// since a hibernated session has released its compute.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Usage {
    pub sessions: u64,
    pub cpu_millis: u64,
    pub memory_bytes: u64,
}

/// Only sessions meant to run hold compute.
const RUNNING_CPU: &str = "CASE WHEN state = 'running' THEN cpu_millis ELSE 0 END";
const RUNNING_MEMORY: &str = "CASE WHEN state = 'running' THEN memory_bytes ELSE 0 END";

/// `phase <> 'Terminated'` is spelled as in the partial index
/// `sessions_live_user`, so that both engines see the index applies.
pub(super) fn usage_sql() -> String {
    format!(
        "SELECT COUNT(*) AS sessions, {}, {} FROM sessions \
         WHERE user_id = $1 AND phase <> 'Terminated'",
        sum(RUNNING_CPU, "cpu_millis"),
        sum(RUNNING_MEMORY, "memory_bytes"),
    )
}

pub(super) fn to_u64(v: Option<i64>) -> Option<u64> {
    v.and_then(|n| u64::try_from(n).ok())
}

pub(super) fn to_i64(v: Option<u64>) -> Option<i64> {
    v.map(|n| i64::try_from(n).unwrap_or(i64::MAX))
}

impl Store {
    pub async fn quota_override(&self, user_id: &UserId) -> StoreResult<Limits> {
        let row = sqlx::query(sql(format!(
            "SELECT {OVERRIDE} FROM user_quotas q WHERE user_id = $1"
        )))
        .bind(user_id)
        .fetch_optional(&self.pool)
        .await?;
        row.map_or(Ok(Limits::default()), |row| override_of(&row))
    }

    pub async fn set_quota_override(&self, user_id: &UserId, limits: &Limits) -> StoreResult<()> {
        let _turn = self.write_turn().await;
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM user_quotas WHERE user_id = $1")
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO user_quotas (user_id, max_sessions, cpu_millis, memory_bytes) \
             VALUES ($1, $2, $3, $4)",
        )
        .bind(user_id)
        .bind(to_i64(limits.max_sessions))
        .bind(to_i64(limits.cpu_millis))
        .bind(to_i64(limits.memory_bytes))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn usage(&self, user_id: &UserId) -> StoreResult<Usage> {
        let row = sqlx::query(sql(usage_sql()))
            .bind(user_id)
            .fetch_one(&self.pool)
            .await?;
        usage_of(&row)
    }

    /// [`Store::quota_override`] and [`Store::usage`] in one query: an
    /// admission reads both while every other admission waits for it.
    pub async fn override_and_usage(&self, user_id: &UserId) -> StoreResult<(Limits, Usage)> {
        let row = sqlx::query(sql(format!(
            "SELECT used.*, {OVERRIDE} FROM ({}) AS used \
             LEFT JOIN user_quotas q ON q.user_id = $1",
            usage_sql()
        )))
        .bind(user_id)
        .fetch_one(&self.pool)
        .await?;
        Ok((override_of(&row)?, usage_of(&row)?))
    }
}

/// A `user_quotas` row `q`'s limits, named apart from usage's columns.
const OVERRIDE: &str = "q.max_sessions AS quota_sessions, q.cpu_millis AS quota_cpu, \
                        q.memory_bytes AS quota_memory";

/// The limits [`OVERRIDE`] selected; none where there is no row.
fn override_of(row: &AnyRow) -> StoreResult<Limits> {
    Ok(Limits {
        max_sessions: to_u64(row.try_get("quota_sessions")?),
        cpu_millis: to_u64(row.try_get("quota_cpu")?),
        memory_bytes: to_u64(row.try_get("quota_memory")?),
    })
}

fn usage_of(row: &AnyRow) -> StoreResult<Usage> {
    Ok(Usage {
        sessions: read_count(row, "sessions")?,
        cpu_millis: read_sum(row, "cpu_millis")?,
        memory_bytes: read_sum(row, "memory_bytes")?,
    })
}
