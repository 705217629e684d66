//! Agents in the store: enrollment, their reported capacity and load,
//! drain, removal.

use super::{Store, StoreError, StoreResult, conflict, from_json, now_ms, sql, to_json};
use crate::hub::channels::Beat;
use serde::{Deserialize, Serialize};
use sqlx::Row;
use sqlx::any::AnyRow;
use std::collections::BTreeMap;
use streamspace_protocol::{AgentId, Capabilities, Capacity, NodeMetrics, Phase, PlatformHealth};

#[derive(Debug, Clone)]
pub struct AgentRecord {
    pub id: AgentId,
    pub name: String,
    pub platform: String,
    pub region: Option<String>,
    pub labels: BTreeMap<String, String>,
    /// Set by admins only (the enrollment token's, or a change later), never
    /// by the agent: whose sessions may land here (docs/GROUPS.md).
    pub pool: String,
    pub capacity: Capacity,
    pub capabilities: Capabilities,
    pub version: Option<String>,
    pub connected: bool,
    /// The replica holding its control channel (`None`: none, or one that
    /// predates replica ids).
    pub replica_id: Option<String>,
    pub draining: bool,
    pub last_heartbeat: Option<i64>,
    pub metrics: Option<NodeMetrics>,
    /// What its last health check said; `None` from agents that do not
    /// check (older ones), which count as healthy.
    pub health: Option<PlatformHealth>,
    pub created_at: i64,
    /// What its last inventory held that the control plane cannot account
    /// for, for admins.
    pub unverified: Vec<Unverified>,
}

/// A session an agent reports that is in nobody's list: no record, and not
/// adopted (it carries no valid seal, its owner is gone, or it is placed on
/// another agent). Its owner and template are only what the agent claims.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Unverified {
    pub session_id: String,
    #[schema(value_type = String)]
    pub phase: Phase,
    pub claimed_user: Option<String>,
    pub claimed_template: Option<String>,
    /// Why it was not adopted.
    pub reason: String,
}

/// Unverified sessions kept per agent: enough to investigate, bounded so a
/// hostile agent cannot grow the row at will.
pub const MAX_UNVERIFIED: usize = 100;

/// What an agent says about itself when it enrolls.
#[derive(Debug, Clone)]
pub struct NewAgent {
    pub name: String,
    pub platform: String,
    pub region: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub capacity: Capacity,
    pub capabilities: Capabilities,
}

/// Heartbeats stored per statement (4 parameters each, far below both
/// databases' limits); see `record_heartbeats`.
const HEARTBEATS_PER_STATEMENT: usize = 250;

pub(super) const COLUMNS: &str = "id, name, platform, region, labels, capacity, capabilities, version, \
                       connected, draining, last_heartbeat, metrics, created_at, unverified, pool, \
                       health";

impl AgentRecord {
    pub(super) fn from_row(row: &AnyRow) -> StoreResult<Self> {
        let metrics: Option<String> = row.try_get("metrics")?;
        let unverified: Option<String> = row.try_get("unverified")?;
        let health: Option<String> = row.try_get("health")?;
        Ok(AgentRecord {
            id: row.try_get("id")?,
            name: row.try_get("name")?,
            platform: row.try_get("platform")?,
            region: row.try_get("region")?,
            labels: from_json("agent labels", &row.try_get::<String, _>("labels")?)?,
            pool: row.try_get("pool")?,
            capacity: from_json("agent capacity", &row.try_get::<String, _>("capacity")?)?,
            capabilities: from_json(
                "agent capabilities",
                &row.try_get::<String, _>("capabilities")?,
            )?,
            version: row.try_get("version")?,
            connected: row.try_get::<i64, _>("connected")? != 0,
            replica_id: row.try_get("replica_id")?,
            draining: row.try_get::<i64, _>("draining")? != 0,
            last_heartbeat: row.try_get("last_heartbeat")?,
            metrics: metrics
                .map(|m| from_json("agent metrics", &m))
                .transpose()?,
            health: health.map(|h| from_json("agent health", &h)).transpose()?,
            created_at: row.try_get("created_at")?,
            unverified: unverified
                .map(|u| from_json("unverified sessions", &u))
                .transpose()?
                .unwrap_or_default(),
        })
    }
}

/// Why an enrollment was refused.
#[derive(Debug, thiserror::Error)]
pub enum EnrollError {
    #[error("the enrollment token is unknown, expired or already used: ask an admin for a new one")]
    BadToken,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Store {
    /// Consumes the enrollment token and creates the agent, atomically: a
    /// refused registration leaves the token usable and creates nothing.
    pub async fn register_agent(
        &self,
        enrollment_token_hash: &str,
        agent: &NewAgent,
        secret_hash: &str,
    ) -> Result<AgentId, EnrollError> {
        let _turn = self.write_turn().await;
        let id = AgentId::new();
        let now = now_ms();
        let mut tx = self.pool.begin().await.map_err(StoreError::from)?;
        let claimed = sqlx::query(
            "UPDATE enrollment_tokens SET used_at = $1, agent_id = $2 \
             WHERE token_hash = $3 AND used_at IS NULL AND expires_at > $1",
        )
        .bind(now)
        .bind(&id)
        .bind(enrollment_token_hash)
        .execute(&mut *tx)
        .await
        .map_err(StoreError::from)?;
        if claimed.rows_affected() != 1 {
            return Err(EnrollError::BadToken);
        }
        // The pool is the admin's, from the token: nothing the agent sent.
        let pool: String = sqlx::query("SELECT pool FROM enrollment_tokens WHERE token_hash = $1")
            .bind(enrollment_token_hash)
            .fetch_one(&mut *tx)
            .await
            .and_then(|row| row.try_get("pool"))
            .map_err(StoreError::from)?;
        sqlx::query(sql(format!(
            "INSERT INTO agents ({COLUMNS}, secret_hash) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, NULL, 0, 0, NULL, NULL, $8, NULL, $10, NULL, $9)"
        )))
        .bind(&id)
        .bind(&agent.name)
        .bind(&agent.platform)
        .bind(&agent.region)
        .bind(to_json(&agent.labels))
        .bind(to_json(&agent.capacity))
        .bind(to_json(&agent.capabilities))
        .bind(now)
        .bind(secret_hash)
        .bind(&pool)
        .execute(&mut *tx)
        .await
        .map_err(conflict("an agent with this name"))?;
        tx.commit().await.map_err(StoreError::from)?;
        Ok(id)
    }

    pub async fn agent_by_secret_hash(
        &self,
        secret_hash: &str,
    ) -> StoreResult<Option<AgentRecord>> {
        let row = sqlx::query(sql(format!(
            "SELECT {COLUMNS}, replica_id FROM agents WHERE secret_hash = $1"
        )))
        .bind(secret_hash)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(AgentRecord::from_row).transpose()
    }

    pub async fn get_agent(&self, id: &AgentId) -> StoreResult<Option<AgentRecord>> {
        let row = sqlx::query(sql(format!(
            "SELECT {COLUMNS}, replica_id FROM agents WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(AgentRecord::from_row).transpose()
    }

    pub async fn list_agents(&self) -> StoreResult<Vec<AgentRecord>> {
        let rows = sqlx::query(sql(format!(
            "SELECT {COLUMNS}, replica_id FROM agents ORDER BY name"
        )))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(AgentRecord::from_row).collect()
    }

    /// Deletes the agent and its undelivered commands.
    pub async fn delete_agent(&self, id: &AgentId) -> StoreResult<bool> {
        let _turn = self.write_turn().await;
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM commands WHERE agent_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        let done = sqlx::query("DELETE FROM agents WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }

    /// Records what a freshly connected agent said in its `hello`, and the
    /// replica (`replica_id`) that now holds its control channel.
    pub async fn mark_agent_connected(
        &self,
        id: &AgentId,
        replica_id: &str,
        hello: (&str, &Capacity, &Capabilities),
    ) -> StoreResult<()> {
        let (version, capacity, capabilities) = hello;
        let _turn = self.write_turn().await;
        sqlx::query(
            "UPDATE agents SET connected = 1, version = $1, capacity = $2, capabilities = $3, \
             last_heartbeat = $4, replica_id = $5 WHERE id = $6",
        )
        .bind(version)
        .bind(to_json(&bounded(capacity)))
        .bind(to_json(capabilities))
        .bind(now_ms())
        .bind(replica_id)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Records that the agent's channel on `replica_id` closed, unless the
    /// agent has meanwhile connected to another replica (its old channel
    /// can close after the new one opened): that one holds it now.
    pub async fn mark_agent_disconnected(&self, id: &AgentId, replica_id: &str) -> StoreResult<()> {
        let _turn = self.write_turn().await;
        sqlx::query(
            "UPDATE agents SET connected = 0, replica_id = NULL \
             WHERE id = $1 AND (replica_id = $2 OR replica_id IS NULL)",
        )
        .bind(id)
        .bind(replica_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Marks every agent disconnected; run at startup, when no agent can be
    /// connected to this (single) control plane yet.
    pub async fn mark_all_agents_disconnected(&self) -> StoreResult<()> {
        let _turn = self.write_turn().await;
        sqlx::query("UPDATE agents SET connected = 0, replica_id = NULL")
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Stores a batch of heartbeats as one multi-row `UPDATE` per few
    /// hundred agents: with 10,000 agents, a statement per row held SQLite's
    /// write lock for half a second, stalling every request that writes.
    pub async fn record_heartbeats(&self, beats: &[(AgentId, Beat)]) -> StoreResult<()> {
        self.record_heartbeats_in(beats, HEARTBEATS_PER_STATEMENT)
            .await
    }

    async fn record_heartbeats_in(
        &self,
        beats: &[(AgentId, Beat)],
        per_statement: usize,
    ) -> StoreResult<()> {
        for chunk in beats.chunks(per_statement) {
            let _turn = self.write_turn().await;
            let rows: Vec<String> = (0..chunk.len())
                .map(|i| {
                    let n = 4 * i;
                    format!("(${}, ${}, ${}, ${})", n + 1, n + 2, n + 3, n + 4)
                })
                .collect();
            // VALUES names its columns column1.. in SQLite and PostgreSQL.
            let text = format!(
                "UPDATE agents SET last_heartbeat = beat.column2, metrics = beat.column3, \
                 health = beat.column4 \
                 FROM (VALUES {}) AS beat WHERE agents.id = beat.column1",
                rows.join(", ")
            );
            let mut query = sqlx::query(sql(text));
            for (id, beat) in chunk {
                query = query
                    .bind(id)
                    .bind(beat.at)
                    .bind(to_json(&beat.metrics))
                    .bind(beat.health.as_ref().map(to_json));
            }
            query.execute(&self.pool).await?;
        }
        Ok(())
    }

    /// Stores a change of the agent's health at once, rather than with the
    /// next batch of heartbeats: placement on every replica reads it.
    pub async fn set_agent_health(
        &self,
        id: &AgentId,
        health: Option<&PlatformHealth>,
    ) -> StoreResult<()> {
        let _turn = self.write_turn().await;
        sqlx::query("UPDATE agents SET health = $1 WHERE id = $2")
            .bind(health.map(to_json))
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Records what the agent's latest inventory held that nobody's list
    /// accounts for (at most [`MAX_UNVERIFIED`]).
    pub async fn set_unverified(&self, id: &AgentId, sessions: &[Unverified]) -> StoreResult<()> {
        let _turn = self.write_turn().await;
        let kept = &sessions[..sessions.len().min(MAX_UNVERIFIED)];
        sqlx::query("UPDATE agents SET unverified = $1 WHERE id = $2")
            .bind((!kept.is_empty()).then(|| to_json(&kept)))
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Moves the agent to `pool` (an admin's decision); false if it is gone.
    pub async fn set_agent_pool(&self, id: &AgentId, pool: &str) -> StoreResult<bool> {
        let _turn = self.write_turn().await;
        let done = sqlx::query("UPDATE agents SET pool = $1 WHERE id = $2")
            .bind(pool)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn set_agent_draining(&self, id: &AgentId, draining: bool) -> StoreResult<bool> {
        let _turn = self.write_turn().await;
        let done = sqlx::query("UPDATE agents SET draining = $1 WHERE id = $2")
            .bind(i64::from(draining))
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }
}

/// Most GPUs an agent is believed to have, and the longest model name
/// kept: an agent's hello is not checked field by field like an API body,
/// so what it says is bounded here before anyone reads it.
pub const MAX_AGENT_GPUS: u32 = 1024;
pub const MAX_GPU_MODEL: usize = 100;

/// `capacity` with its GPU figures bounded: at most [`MAX_AGENT_GPUS`],
/// and a model name of printable characters, cut at [`MAX_GPU_MODEL`].
pub fn bounded(capacity: &Capacity) -> Capacity {
    let model = capacity.gpu_model.as_deref().map(|m| {
        m.chars()
            .filter(|c| !c.is_control())
            .take(MAX_GPU_MODEL)
            .collect::<String>()
    });
    Capacity {
        gpus: capacity.gpus.min(MAX_AGENT_GPUS),
        gpu_model: model.filter(|m| !m.trim().is_empty()),
        ..capacity.clone()
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    #[test]
    fn what_a_hello_says_of_gpus_is_bounded() {
        let said = Capacity {
            max_sessions: 3,
            gpus: u32::MAX,
            gpu_model: Some(format!("NVIDIA\u{1b}[31m {}", "A".repeat(500))),
            ..Capacity::default()
        };
        let kept = bounded(&said);
        assert_eq!((kept.max_sessions, kept.gpus), (3, MAX_AGENT_GPUS));
        let model = kept.gpu_model.expect("a model");
        assert_eq!(model.chars().count(), MAX_GPU_MODEL);
        assert!(!model.contains('\u{1b}'), "{model:?}");
        let blank = Capacity {
            gpu_model: Some("\n".into()),
            ..Capacity::default()
        };
        assert_eq!(bounded(&blank).gpu_model, None);
    }

    /// An agent named `name`, enrolled with a token of its own.
    pub(in crate::store) async fn enroll(store: &Store, name: &str) -> AgentId {
        let token = format!("token-{name}");
        store
            .create_enrollment_token(&token, "admin", now_ms() + 60_000)
            .await
            .expect("token");
        let agent = NewAgent {
            name: name.into(),
            platform: "docker".into(),
            region: None,
            labels: BTreeMap::new(),
            capacity: Capacity::default(),
            capabilities: Capabilities::default(),
        };
        let secret = format!("secret-{name}");
        store
            .register_agent(&token, &agent, &secret)
            .await
            .expect("agent")
    }

    async fn every_heartbeat_is_stored_across_statements(store: Store) {
        let mut beats = Vec::new();
        for i in 0..5 {
            let id = enroll(&store, &format!("agent-{i}")).await;
            let metrics = NodeMetrics {
                sessions_running: i as u32,
                ..NodeMetrics::default()
            };
            // Every other agent degraded: each row keeps its own health.
            let health = (i % 2 == 1).then(|| PlatformHealth::degraded(format!("disk {i}")));
            beats.push((
                id,
                Beat {
                    at: 1000 + i,
                    metrics,
                    health,
                },
            ));
        }
        store.record_heartbeats_in(&beats, 2).await.expect("stored");
        for (id, beat) in &beats {
            let agent = store.get_agent(id).await.expect("read").expect("exists");
            assert_eq!(agent.last_heartbeat, Some(beat.at), "{}", agent.name);
            assert_eq!(agent.metrics, Some(beat.metrics), "{}", agent.name);
            assert_eq!(agent.health, beat.health, "{}", agent.name);
        }
    }

    #[tokio::test]
    async fn heartbeats_are_stored_on_sqlite() {
        let dir = tempfile::tempdir().expect("dir");
        let url = Store::sqlite_url(dir.path());
        let store = Store::connect(&url).await.expect("store");
        every_heartbeat_is_stored_across_statements(store).await;
    }

    #[tokio::test]
    async fn heartbeats_are_stored_on_postgres() {
        let url = streamspace_testkit::postgres::fresh_database()
            .await
            .expect("a PostgreSQL database");
        let store = Store::connect(&url).await.expect("store");
        every_heartbeat_is_stored_across_statements(store).await;
    }
}
