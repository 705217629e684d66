//! What sessions ask for (CPU, memory, GPUs), kept in columns of `sessions` beside
//! the JSON spec so that quota usage and agent loads are SQL aggregates.

use super::agents::COLUMNS as AGENT_COLUMNS;
use super::{AgentRecord, Store, StoreResult, from_json, sql};
use sqlx::Row;
use sqlx::any::AnyRow;
use std::collections::HashMap;
use streamspace_protocol::{AgentId, Resources, SessionId, SessionSpec};

/// What a set of sessions asks of an agent, for scheduling.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AgentLoad {
    pub sessions: u32,
    pub cpu_millis: u64,
    pub memory_bytes: u64,
    pub gpus: u64,
}

impl Store {
    /// What the non-terminated sessions on each agent ask for. Hibernated
    /// sessions count too: waking them must not overcommit their agent.
    /// Failed ones count for their GPUs only ([`HOLDS_COMPUTE`]).
    pub async fn agent_loads(&self) -> StoreResult<HashMap<AgentId, AgentLoad>> {
        let rows = sqlx::query(sql(agent_loads_sql()))
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| Ok((row.try_get("agent_id")?, AgentLoad::from_row(row)?)))
            .collect()
    }

    /// [`Store::agent_loads`] for one agent.
    pub async fn agent_load(&self, agent_id: &AgentId) -> StoreResult<AgentLoad> {
        let row = sqlx::query(sql(agent_load_sql()))
            .bind(agent_id)
            .fetch_one(&self.pool)
            .await?;
        AgentLoad::from_row(&row)
    }

    /// The agent and its [`AgentLoad`] in one query, as placement on a
    /// named agent needs both (one round trip fewer while admission is
    /// held); `None` when there is no such agent.
    pub async fn agent_with_load(
        &self,
        agent_id: &AgentId,
    ) -> StoreResult<Option<(AgentRecord, AgentLoad)>> {
        let row = sqlx::query(sql(format!(
            "SELECT {AGENT_COLUMNS}, replica_id, held.* FROM agents \
             CROSS JOIN ({}) AS held WHERE id = $1",
            agent_load_sql()
        )))
        .bind(agent_id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| Ok((AgentRecord::from_row(&row)?, AgentLoad::from_row(&row)?)))
            .transpose()
    }

    /// Fills the resource columns of rows written before they existed, in
    /// one transaction: row by row, SQLite would commit (and sync) once per
    /// session. Finds nothing to do once done, so it is safe on every start
    /// and on several replicas at once (they write the same values).
    pub(super) async fn backfill_resources(&self) -> StoreResult<()> {
        let _turn = self.write_turn().await;
        let rows = sqlx::query(
            "SELECT id, spec FROM sessions WHERE cpu_millis IS NULL OR memory_bytes IS NULL",
        )
        .fetch_all(&self.pool)
        .await?;
        if rows.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool.begin().await?;
        for row in &rows {
            let id: SessionId = row.try_get("id")?;
            let text: String = row.try_get("spec")?;
            let spec: SessionSpec = from_json(&format!("spec of session {id}"), &text)?;
            sqlx::query("UPDATE sessions SET cpu_millis = $1, memory_bytes = $2 WHERE id = $3")
                .bind(cpu_millis(&spec.resources))
                .bind(memory_bytes(&spec.resources))
                .bind(&id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        tracing::info!(
            sessions = rows.len(),
            "filled in the resources of older sessions"
        );
        Ok(())
    }
}

/// Sessions that hold their agent's capacity: not terminated nor failed.
/// Spelled with `phase <> 'Terminated'` as in the partial index
/// `sessions_live_agent`, so that both engines see the index applies; the
/// rows it selects include failed sessions, which hold their GPUs only
/// ([`HOLDS_COMPUTE`]).
const LIVE: &str = "phase <> 'Terminated'";

/// Sessions that hold their agent's sessions, CPU and memory: not failed
/// either. A failed session keeps its GPUs until it is terminated: its
/// container (Docker) keeps the devices it was given, and starting it
/// again uses them.
const HOLDS_COMPUTE: &str = "phase <> 'Failed'";

fn agent_loads_sql() -> String {
    format!(
        "SELECT agent_id, {} FROM sessions WHERE agent_id IS NOT NULL AND {LIVE} \
         GROUP BY agent_id",
        load_columns()
    )
}

fn agent_load_sql() -> String {
    format!(
        "SELECT {} FROM sessions WHERE agent_id = $1 AND {LIVE}",
        load_columns()
    )
}

/// An [`AgentLoad`] as SQL aggregates.
fn load_columns() -> String {
    let holding = |column: &str| format!("CASE WHEN {HOLDS_COMPUTE} THEN {column} ELSE 0 END");
    format!(
        "{}, {}, {}, {}",
        sum(&holding("1"), "sessions"),
        sum(&holding("cpu_millis"), "cpu_millis"),
        sum(&holding("memory_bytes"), "memory_bytes"),
        sum("gpus", "gpus")
    )
}

/// The 32-bit halves [`sum`] splits values into.
const HALF: i64 = 1 << 32;

/// SQL selecting the sum of the non-negative BIGINT expression `expr` as the
/// columns `{name}_high` and `{name}_low`, for [`read_sum`]. Summed in
/// halves because a plain SUM of large values overflows: SQLite fails the
/// query ("integer overflow"), PostgreSQL fails the CAST to the BIGINT that
/// the `Any` driver decodes, so one user asking absurd amounts would break
/// placement for everyone. Each half's sum fits for two billion rows.
/// PostgreSQL sums BIGINTs as NUMERIC, hence the casts.
pub(super) fn sum(expr: &str, name: &str) -> String {
    format!(
        "CAST(COALESCE(SUM(({expr}) / {HALF}), 0) AS BIGINT) AS {name}_high, \
         CAST(COALESCE(SUM(({expr}) % {HALF}), 0) AS BIGINT) AS {name}_low"
    )
}

/// The sum [`sum`] selected as `name`, saturated to `u64`.
pub(super) fn read_sum(row: &AnyRow, name: &str) -> StoreResult<u64> {
    let high: i64 = row.try_get(format!("{name}_high").as_str())?;
    let low: i64 = row.try_get(format!("{name}_low").as_str())?;
    let total = i128::from(high) * i128::from(HALF) + i128::from(low);
    Ok(u64::try_from(total.max(0)).unwrap_or(u64::MAX))
}

/// A `COUNT(*)` (BIGINT on both engines) as `u64`.
pub(super) fn read_count(row: &AnyRow, name: &str) -> StoreResult<u64> {
    Ok(u64::try_from(row.try_get::<i64, _>(name)?).unwrap_or_default())
}

/// The columns a session's resources are stored in, 0 for "not set".
pub(super) fn cpu_millis(resources: &Resources) -> i64 {
    resources
        .cpu
        .map_or(0, |c| i64::try_from(c.millicores()).unwrap_or(i64::MAX))
}

pub(super) fn gpus(resources: &Resources) -> i64 {
    i64::from(resources.gpus())
}

pub(super) fn memory_bytes(resources: &Resources) -> i64 {
    resources
        .memory
        .map_or(0, |m| i64::try_from(m.bytes()).unwrap_or(i64::MAX))
}

impl AgentLoad {
    fn from_row(row: &AnyRow) -> StoreResult<Self> {
        Ok(AgentLoad {
            sessions: u32::try_from(read_sum(row, "sessions")?).unwrap_or(u32::MAX),
            cpu_millis: read_sum(row, "cpu_millis")?,
            memory_bytes: read_sum(row, "memory_bytes")?,
            gpus: read_sum(row, "gpus")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Limits, NewSession, Role, Usage};
    use streamspace_protocol::{Cpu, DesiredState, Memory, Phase, UserId};

    const GIB: u64 = 1 << 30;

    /// A session of `user` on `agent` in the given state and phase, asking
    /// for `cpu` millicores and `memory` GiB (0: not set).
    async fn session(
        store: &Store,
        user: &UserId,
        agent: &str,
        state: DesiredState,
        phase: Phase,
        cpu: u64,
        memory: u64,
    ) {
        let resources = Resources {
            cpu: (cpu > 0).then_some(Cpu(cpu)),
            memory: (memory > 0).then_some(Memory(memory * GIB)),
            gpu: None,
        };
        session_asking(store, (user, agent), (state, phase), resources).await;
    }

    fn spec_asking(resources: Resources) -> SessionSpec {
        SessionSpec::fixture(SessionId::new())
            .with_owner("someone", "desktop")
            .with_image("desktop:1")
            .without_ports()
            .with_resources(resources)
    }

    async fn session_asking(
        store: &Store,
        (user, agent): (&UserId, &str),
        (state, phase): (DesiredState, Phase),
        resources: Resources,
    ) {
        let spec = spec_asking(resources);
        let new = NewSession {
            user_id: user.clone(),
            template_id: "t".into(),
            template_name: "desktop".into(),
            agent_id: agent.into(),
            platform: "docker".into(),
            spec,
            idle_timeout_ms: None,
        };
        store
            .adopt_session(&new, state, phase, "test")
            .await
            .expect("session");
    }

    async fn new_user(store: &Store, name: &str) -> UserId {
        let user = store.create_user(name, "x", Role::User).await;
        user.expect("user").id
    }

    fn load(sessions: u32, cpu_millis: u64, memory_gib: u64) -> AgentLoad {
        AgentLoad {
            sessions,
            cpu_millis,
            memory_bytes: memory_gib * GIB,
            gpus: 0,
        }
    }

    /// Agent loads count sessions that hold their agent (not terminated nor
    /// failed, hibernated included); usage counts the user's sessions that
    /// are not terminated, and compute only for those meant to run.
    async fn check_figures(store: &Store, user: &UserId) {
        let loads = store.agent_loads().await.expect("loads");
        assert_eq!(loads.get("a1"), Some(&load(3, 1600, 3)));
        assert_eq!(loads.get("a2"), Some(&load(1, 0, 0)));
        assert_eq!(loads.len(), 2, "{loads:?}");
        assert_eq!(
            store.agent_load(&"a1".into()).await.expect("a1"),
            load(3, 1600, 3)
        );
        assert_eq!(
            store.agent_load(&"nobody".into()).await.expect("none"),
            AgentLoad::default()
        );
        let usage = store.usage(user).await.expect("usage");
        let expected = Usage {
            sessions: 4,
            cpu_millis: 2500,
            memory_bytes: 5 * GIB,
        };
        assert_eq!(usage, expected);
        let limits = Limits {
            max_sessions: Some(9),
            cpu_millis: None,
            memory_bytes: Some(GIB),
        };
        store
            .set_quota_override(user, &limits)
            .await
            .expect("override");
        let both = store.override_and_usage(user).await.expect("both");
        assert_eq!(both, (limits, expected), "one query reads what two do");
        assert_eq!(store.quota_override(user).await.expect("override"), limits);
        let nobody = store.override_and_usage(&"nobody".into()).await;
        assert_eq!(nobody.expect("none"), (Limits::default(), Usage::default()));
    }

    async fn loads_and_usage_are_summed_by_the_database(url: &str) {
        let store = Store::connect(url).await.expect("store");
        let user = new_user(&store, "u1").await;
        let other = new_user(&store, "u2").await;
        session(
            &store,
            &user,
            "a1",
            DesiredState::Running,
            Phase::Running,
            500,
            1,
        )
        .await;
        session(
            &store,
            &user,
            "a1",
            DesiredState::Hibernated,
            Phase::Hibernated,
            1000,
            2,
        )
        .await;
        session(
            &store,
            &user,
            "a1",
            DesiredState::Running,
            Phase::Failed,
            2000,
            4,
        )
        .await;
        session(
            &store,
            &user,
            "a2",
            DesiredState::Terminated,
            Phase::Terminated,
            4000,
            8,
        )
        .await;
        session(
            &store,
            &user,
            "a2",
            DesiredState::Running,
            Phase::Pending,
            0,
            0,
        )
        .await;
        session(
            &store,
            &other,
            "a1",
            DesiredState::Running,
            Phase::Running,
            100,
            0,
        )
        .await;
        check_figures(&store, &user).await;

        // A database from before the resource columns: the next start
        // fills them from the specs.
        sqlx::query("UPDATE sessions SET cpu_millis = NULL, memory_bytes = NULL")
            .execute(store.pool())
            .await
            .expect("forget");
        store.close().await;
        let store = Store::connect(url).await.expect("restart");
        check_figures(&store, &user).await;
    }

    /// Sums past BIGINT saturate instead of failing the query.
    async fn huge_amounts_saturate(url: &str) {
        let store = Store::connect(url).await.expect("store");
        let user = new_user(&store, "u1").await;
        let huge = Resources {
            cpu: Some(Cpu(u64::MAX)),
            memory: Some(Memory(u64::MAX)),
            gpu: None,
        };
        let running = (DesiredState::Running, Phase::Running);
        for _ in 0..2 {
            session_asking(&store, (&user, "a1"), running, huge).await;
        }
        // Each is stored as i64::MAX; two of them still fit in a u64.
        let exact = 2 * i64::MAX as u64;
        let usage = store.usage(&user).await.expect("usage");
        assert_eq!((usage.cpu_millis, usage.memory_bytes), (exact, exact));
        session_asking(&store, (&user, "a1"), running, huge).await;
        let load = store.agent_load(&"a1".into()).await.expect("load");
        assert_eq!((load.cpu_millis, load.memory_bytes), (u64::MAX, u64::MAX));
        let loads = store.agent_loads().await.expect("loads");
        assert_eq!(loads.get("a1"), Some(&load));
    }

    /// A database from before the resource columns, with sessions written
    /// by that version, opened by this one (twice: the fill-in is idempotent).
    async fn sessions_of_an_older_version_are_filled_in(url: &str) {
        sqlx::any::install_default_drivers();
        let pool = sqlx::AnyPool::connect(url).await.expect("pool");
        super::super::migrator()
            .run_to(2, &pool)
            .await
            .expect("0002");
        sqlx::query(
            "INSERT INTO users (id, username, password_hash, role, created_at) \
             VALUES ('u', 'alice', 'x', 'user', 0)",
        )
        .execute(&pool)
        .await
        .expect("user");
        let resources = |cpu: Option<u64>, memory: Option<u64>| Resources {
            cpu: cpu.map(Cpu),
            memory: memory.map(Memory),
            gpu: None,
        };
        let old = [
            (
                Some("a1"),
                "running",
                "Running",
                resources(Some(1500), Some(GIB)),
            ),
            (
                Some("a1"),
                "hibernated",
                "Hibernated",
                resources(None, Some(GIB)),
            ),
            (
                Some("a1"),
                "terminated",
                "Terminated",
                resources(Some(8000), None),
            ),
            (None, "running", "Pending", resources(Some(100), None)),
        ];
        for (agent, state, phase, resources) in old {
            insert_older_session(&pool, agent, (state, phase), resources).await;
        }
        pool.close().await;
        for _ in 0..2 {
            let store = Store::connect(url).await.expect("store");
            let usage = store.usage(&"u".into()).await.expect("usage");
            let expected = Usage {
                sessions: 3,
                cpu_millis: 1600,
                memory_bytes: GIB,
            };
            assert_eq!(usage, expected);
            let load = store.agent_load(&"a1".into()).await.expect("load");
            assert_eq!(
                load,
                AgentLoad {
                    sessions: 2,
                    cpu_millis: 1500,
                    memory_bytes: 2 * GIB,
                    gpus: 0,
                }
            );
            store.close().await;
        }
    }

    /// A session row as versions before migration 0003 wrote it.
    async fn insert_older_session(
        pool: &sqlx::AnyPool,
        agent: Option<&str>,
        (state, phase): (&str, &str),
        resources: Resources,
    ) {
        let spec = spec_asking(resources);
        sqlx::query(
            "INSERT INTO sessions (id, user_id, template_id, template_name, agent_id, \
             platform, spec, state, phase, message, created_at, updated_at, last_activity) \
             VALUES ($1, 'u', 't', 'desktop', $2, 'docker', $3, $4, $5, NULL, 0, 0, 0)",
        )
        .bind(&spec.session_id)
        .bind(agent)
        .bind(super::super::to_json(&spec))
        .bind(state)
        .bind(phase)
        .execute(pool)
        .await
        .expect("older session");
    }

    /// The sums read the partial covering indexes, not the table: a query
    /// that stops matching an index's condition word for word (say with
    /// `phase NOT IN (…)`) would silently go back to reading every row.
    #[tokio::test]
    async fn sums_read_only_the_live_indexes_on_sqlite() {
        let dir = tempfile::tempdir().expect("dir");
        let store = Store::connect(&Store::sqlite_url(dir.path()))
            .await
            .expect("store");
        let plans = [
            (super::super::quotas::usage_sql(), "sessions_live_user"),
            (agent_load_sql(), "sessions_live_agent"),
            (agent_loads_sql(), "sessions_live_agent"),
        ];
        for (query, index) in plans {
            let rows = sqlx::query(sql(format!("EXPLAIN QUERY PLAN {query}")))
                .bind("someone")
                .fetch_all(store.pool())
                .await
                .expect("plan");
            let plan: Vec<String> = rows
                .iter()
                .map(|r| r.try_get("detail").expect("detail"))
                .collect();
            let wanted = format!("USING COVERING INDEX {index}");
            assert!(
                plan.iter().any(|d| d.contains(&wanted)),
                "{query}: {plan:?}"
            );
        }
    }

    /// GPUs held on an agent are summed like CPU: hibernated sessions hold
    /// theirs (waking must find them), and so do failed ones (their
    /// container keeps the devices until terminated); ended ones do not.
    async fn gpus_held_are_summed_per_agent(url: &str) {
        let store = Store::connect(url).await.expect("store");
        let user = new_user(&store, "u1").await;
        let gpus = |n: u32| Resources {
            gpu: Some(n),
            ..Resources::default()
        };
        for (agent, state, phase, n) in [
            ("a1", DesiredState::Running, Phase::Running, 2),
            ("a1", DesiredState::Hibernated, Phase::Hibernated, 1),
            ("a1", DesiredState::Running, Phase::Failed, 4),
            ("a1", DesiredState::Terminated, Phase::Terminated, 8),
            ("a2", DesiredState::Running, Phase::Starting, 1),
        ] {
            session_asking(&store, (&user, agent), (state, phase), gpus(n)).await;
        }
        session_asking(
            &store,
            (&user, "a2"),
            (DesiredState::Running, Phase::Running),
            Resources::default(),
        )
        .await;
        let loads = store.agent_loads().await.expect("loads");
        assert_eq!(loads["a1"].gpus, 7);
        assert_eq!(
            loads["a1"].sessions, 2,
            "the failed one holds no session slot"
        );
        assert_eq!(loads["a2"].gpus, 1);
        assert_eq!(store.agent_load(&"a1".into()).await.expect("a1").gpus, 7);
    }

    /// The one query placement on a named agent makes reads the agent and
    /// the same load as [`Store::agent_load`]: none for an idle agent,
    /// nothing at all for an unknown one.
    async fn an_agent_comes_with_its_load(url: &str) {
        let store = Store::connect(url).await.expect("store");
        let busy = crate::store::agents::tests::enroll(&store, "busy").await;
        let idle = crate::store::agents::tests::enroll(&store, "idle").await;
        let user = new_user(&store, "u1").await;
        for (state, phase, cpu) in [
            (DesiredState::Running, Phase::Running, 500),
            (DesiredState::Hibernated, Phase::Hibernated, 1000),
            (DesiredState::Terminated, Phase::Terminated, 4000),
        ] {
            session(&store, &user, busy.as_str(), state, phase, cpu, 1).await;
        }
        let (agent, load) = store
            .agent_with_load(&busy)
            .await
            .expect("read")
            .expect("busy");
        assert_eq!(
            (agent.id.as_str(), agent.name.as_str()),
            (busy.as_str(), "busy")
        );
        assert_eq!(load, store.agent_load(&busy).await.expect("load"));
        assert_eq!(load, self::load(2, 1500, 2));
        let (agent, load) = store
            .agent_with_load(&idle)
            .await
            .expect("read")
            .expect("idle");
        assert_eq!((agent.name.as_str(), load), ("idle", AgentLoad::default()));
        let unknown = store.agent_with_load(&"nobody".into()).await.expect("read");
        assert!(unknown.is_none());
    }

    on_both_engines!(
        an_agent_comes_with_its_load,
        gpus_held_are_summed_per_agent,
        loads_and_usage_are_summed_by_the_database,
        huge_amounts_saturate,
        sessions_of_an_older_version_are_filled_in,
    );
}
