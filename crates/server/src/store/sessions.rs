//! Sessions in the store: specs, desired state and observed phase, and the
//! conditional writes that keep an agent's report from undoing a newer change.
//! A spec's secrets are sealed in the `secrets` column (`secrets.rs`).

use super::audit::{bind_audit, insert_audit, insert_audit_sql};
use super::commands::{
    Announcement, announce_sql, bind_announcement, bind_command, enqueue, insert_command,
    insert_command_sql, supersede_open,
};
use super::resources::{cpu_millis, gpus, memory_bytes};
use super::secrets::Sealed;
use super::users::POOL_USER;
use super::{AnyQuery, AuditEntry, placeholders};
use super::{Store, StoreError, StoreResult, now_ms, sql};
use sqlx::Row;
use sqlx::any::AnyRow;
use std::collections::HashMap;
use streamspace_protocol::{
    AgentId, Command, DesiredState, Phase, SessionId, SessionSpec, TemplateId, UserId,
};

#[derive(Debug, Clone)]
pub struct SessionRecord {
    pub id: SessionId,
    pub user_id: UserId,
    pub username: String,
    pub template_id: TemplateId,
    pub template_name: String,
    pub agent_id: Option<AgentId>,
    pub platform: String,
    pub spec: SessionSpec,
    pub state: DesiredState,
    pub phase: Phase,
    pub message: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    pub last_activity: i64,
    /// Hibernate after this long without activity; `None` means never.
    pub idle_timeout_ms: Option<i64>,
    /// When the desired state last changed.
    pub state_changed_at: i64,
}

#[derive(Debug, Clone)]
pub struct NewSession {
    pub user_id: UserId,
    pub template_id: TemplateId,
    pub template_name: String,
    pub agent_id: AgentId,
    pub platform: String,
    pub spec: SessionSpec,
    pub idle_timeout_ms: Option<i64>,
}

pub(super) const SELECT: &str = "SELECT s.id, s.user_id, u.username, s.template_id, s.template_name, \
     s.agent_id, s.platform, s.spec, s.secrets, s.state, s.phase, s.message, s.created_at, s.updated_at, \
     s.last_activity, s.idle_timeout_ms, s.state_changed_at \
     FROM sessions s JOIN users u ON u.id = s.user_id";

impl Store {
    pub(super) fn session_from_row(&self, row: &AnyRow) -> StoreResult<SessionRecord> {
        let state: String = row.try_get("state")?;
        let phase: String = row.try_get("phase")?;
        let id: SessionId = row.try_get("id")?;
        let spec = row.try_get::<String, _>("spec")?;
        let secrets: Option<String> = row.try_get("secrets")?;
        Ok(SessionRecord {
            spec: self.open_session_spec(&id, &spec, secrets.as_deref())?,
            id,
            user_id: row.try_get("user_id")?,
            username: row.try_get("username")?,
            template_id: row.try_get("template_id")?,
            template_name: row.try_get("template_name")?,
            agent_id: row.try_get("agent_id")?,
            platform: row.try_get("platform")?,
            state: DesiredState::parse(&state)
                .ok_or_else(|| StoreError::Corrupt(format!("unknown state {state:?}")))?,
            phase: Phase::parse(&phase)
                .ok_or_else(|| StoreError::Corrupt(format!("unknown phase {phase:?}")))?,
            message: row.try_get("message")?,
            created_at: row.try_get("created_at")?,
            updated_at: row.try_get("updated_at")?,
            last_activity: row.try_get("last_activity")?,
            idle_timeout_ms: row.try_get("idle_timeout_ms")?,
            state_changed_at: row.try_get("state_changed_at")?,
        })
    }
}

/// The `INSERT` of a new session (desired running, phase Pending), its
/// parameters numbered from `first` (thirteen of them, bound by
/// [`bind_session`]).
fn insert_session_sql(first: usize) -> String {
    let p = |n: usize| format!("${}", first + n - 1);
    format!(
        "INSERT INTO sessions (id, user_id, template_id, template_name, agent_id, platform, \
         spec, state, phase, message, created_at, updated_at, last_activity, \
         idle_timeout_ms, state_changed_at, cpu_millis, memory_bytes, gpus, secrets) \
         VALUES ({}, 'running', 'Pending', NULL, {now}, {now}, {now}, {}, {now}, {})",
        placeholders(first, 7),
        p(9),
        placeholders(first + 9, 4),
        now = p(8),
    )
}

/// Binds `new` with its spec as `sealed` (`Store::seal_session_spec`).
fn bind_session<'q>(
    query: AnyQuery<'q>,
    new: &NewSession,
    sealed: &Sealed,
    now: i64,
) -> AnyQuery<'q> {
    query
        .bind(&new.spec.session_id)
        .bind(&new.user_id)
        .bind(&new.template_id)
        .bind(&new.template_name)
        .bind(&new.agent_id)
        .bind(&new.platform)
        .bind(&sealed.json)
        .bind(now)
        .bind(new.idle_timeout_ms)
        .bind(cpu_millis(&new.spec.resources))
        .bind(memory_bytes(&new.spec.resources))
        .bind(gpus(&new.spec.resources))
        .bind(&sealed.secrets)
}

#[cfg(test)]
impl NewSession {
    /// A session of template `t` for `user_id` on agent `a1`, for tests.
    pub(super) fn fixture(user_id: streamspace_protocol::UserId) -> Self {
        Self {
            user_id,
            template_id: "t".into(),
            template_name: "desktop".into(),
            agent_id: "a1".into(),
            platform: "docker".into(),
            spec: streamspace_protocol::SessionSpec::fixture(SessionId::new()),
            idle_timeout_ms: None,
        }
    }
}

impl Store {
    /// Creates the session, its start command and its first event in one
    /// step, so a session never exists without the command that brings it
    /// up, and its trail starts before the agent can report. `announce`
    /// hands the command to another replica at commit.
    pub async fn create_session(
        &self,
        new: &NewSession,
        start: &Command,
        created: &AuditEntry,
        announce: Option<&Announcement>,
    ) -> StoreResult<SessionRecord> {
        let spec = self.seal_session_spec(&new.spec)?;
        let command = self.seal_command(start)?;
        let now = now_ms();
        let id = &new.spec.session_id;
        if self.is_postgres() {
            // One statement, one round trip, atomic by itself: under load
            // each round trip waits for a core, and a transaction of five
            // (BEGIN, three INSERTs, COMMIT) was a third of a dispatch.
            let text = format!(
                "WITH s AS ({}), c AS ({}), e AS ({}) SELECT {}",
                insert_session_sql(1),
                insert_command_sql(14),
                insert_audit_sql(21),
                announce.map_or("1".to_owned(), |_| announce_sql(29)),
            );
            let query = bind_session(sqlx::query(sql(text)), new, &spec, now);
            let query = bind_command(query, &new.agent_id, start, &command, now);
            let query = bind_audit(query, id, created);
            let query = match announce {
                Some(announcement) => bind_announcement(query, announcement),
                None => query,
            };
            query.execute(&self.pool).await?;
        } else {
            let _turn = self.write_turn().await;
            let mut tx = self.pool.begin().await?;
            bind_session(sqlx::query(sql(insert_session_sql(1))), new, &spec, now)
                .execute(&mut *tx)
                .await?;
            insert_command(&mut tx, &new.agent_id, start, &command).await?;
            insert_audit(&mut tx, id, created).await?;
            tx.commit().await?;
        }
        self.get_session(id)
            .await?
            .ok_or_else(|| StoreError::Corrupt("session vanished after insert".into()))
    }

    /// Records a session found running on an agent without a record (after
    /// a database restore): no command, since it already exists.
    pub async fn adopt_session(
        &self,
        new: &NewSession,
        state: DesiredState,
        phase: Phase,
        message: &str,
    ) -> StoreResult<SessionRecord> {
        let sealed = self.seal_session_spec(&new.spec)?;
        let _turn = self.write_turn().await;
        let now = now_ms();
        sqlx::query(
            "INSERT INTO sessions (id, user_id, template_id, template_name, agent_id, platform, \
             spec, state, phase, message, created_at, updated_at, last_activity, \
             idle_timeout_ms, state_changed_at, cpu_millis, memory_bytes, gpus, secrets) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11, $11, $12, $11, $13, $14, \
             $15, $16)",
        )
        .bind(&new.spec.session_id)
        .bind(&new.user_id)
        .bind(&new.template_id)
        .bind(&new.template_name)
        .bind(&new.agent_id)
        .bind(&new.platform)
        .bind(&sealed.json)
        .bind(state.as_str())
        .bind(phase.as_str())
        .bind(message)
        .bind(now)
        .bind(new.idle_timeout_ms)
        .bind(cpu_millis(&new.spec.resources))
        .bind(memory_bytes(&new.spec.resources))
        .bind(gpus(&new.spec.resources))
        .bind(&sealed.secrets)
        .execute(&self.pool)
        .await?;
        self.get_session(&new.spec.session_id)
            .await?
            .ok_or_else(|| StoreError::Corrupt("session vanished after insert".into()))
    }

    pub async fn get_session(&self, id: &SessionId) -> StoreResult<Option<SessionRecord>> {
        let row = sqlx::query(sql(format!("{SELECT} WHERE s.id = $1")))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(|r| self.session_from_row(r)).transpose()
    }

    /// Sessions newest first; of one user, or of everyone when `user_id` is
    /// `None`. Terminated sessions are history and only listed on request.
    pub async fn list_sessions(
        &self,
        user_id: Option<&UserId>,
        include_terminated: bool,
    ) -> StoreResult<Vec<SessionRecord>> {
        // The pool's sessions are nobody's until taken.
        let mut query_text =
            format!("{SELECT} WHERE ($1 = '' OR s.user_id = $1) AND s.user_id <> '{POOL_USER}'");
        if !include_terminated {
            query_text.push_str(" AND s.phase <> 'Terminated'");
        }
        query_text.push_str(" ORDER BY s.id DESC");
        let rows = sqlx::query(sql(query_text))
            .bind(user_id.map_or("", UserId::as_str))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(|r| self.session_from_row(r)).collect()
    }

    pub async fn agent_sessions(&self, agent_id: &AgentId) -> StoreResult<Vec<SessionRecord>> {
        let rows = sqlx::query(sql(format!(
            "{SELECT} WHERE s.agent_id = $1 AND s.phase <> 'Terminated' ORDER BY s.id"
        )))
        .bind(agent_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| self.session_from_row(r)).collect()
    }

    /// Sets what the session should be, shows the transition it starts, and
    /// queues the command that makes it happen, atomically, but only if the
    /// session is still as the caller saw it (`seen`: its state and phase):
    /// an agent's report or another request may have moved it meanwhile.
    /// `None` when it had moved (or is gone); the caller reads it again.
    ///
    /// Terminated is final in SQL, not only in the caller's logic: a session
    /// terminated (or being terminated) never gets another desired state.
    /// Asking for a session to run counts as activity, so it does not idle
    /// out at once.
    pub async fn set_desired_state(
        &self,
        id: &SessionId,
        seen: (DesiredState, Phase),
        state: DesiredState,
        phase: Phase,
        command: Option<(&AgentId, &Command)>,
    ) -> StoreResult<Option<SessionRecord>> {
        let sealed = command.map(|(_, c)| self.seal_command(c)).transpose()?;
        let _turn = self.write_turn().await;
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(
            "UPDATE sessions SET state = $1, phase = $2, message = NULL, updated_at = $3, \
             state_changed_at = $3, \
             last_activity = CASE WHEN $1 = 'running' THEN $3 ELSE last_activity END \
             WHERE id = $4 AND state = $5 AND phase = $6 AND phase <> 'Terminated' \
             AND (state <> 'terminated' OR $1 = 'terminated')",
        )
        .bind(state.as_str())
        .bind(phase.as_str())
        .bind(now_ms())
        .bind(id)
        .bind(seen.0.as_str())
        .bind(seen.1.as_str())
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Ok(None);
        }
        if let (Some((agent_id, command)), Some(sealed)) = (command, &sealed) {
            enqueue(&mut tx, agent_id, command, sealed).await?;
        }
        tx.commit().await?;
        self.get_session(id).await
    }

    /// Records the phase an agent observed. Only the session's own agent may
    /// report on it; a report from any other agent changes nothing, and
    /// nothing moves a session out of `Terminated` (late events can arrive).
    /// An agent cannot end a session nobody asked to end: `Terminated` for a
    /// session meant to run or hibernate is recorded as `Failed`, which a
    /// person can still recover.
    pub async fn report_phase(
        &self,
        id: &SessionId,
        agent_id: &AgentId,
        phase: Phase,
        message: Option<&str>,
    ) -> StoreResult<Option<SessionRecord>> {
        let _turn = self.write_turn().await;
        // What is recorded: the report, unless it ends a session nobody
        // asked to end. Repeated reports change nothing (and audit nothing).
        const PHASE: &str =
            "CASE WHEN $1 = 'Terminated' AND state <> 'terminated' THEN 'Failed' ELSE $1 END";
        const MESSAGE: &str =
            "CASE WHEN $1 = 'Terminated' AND state <> 'terminated' THEN $6 ELSE $2 END";
        let done = sqlx::query(sql(format!(
            "UPDATE sessions SET phase = {PHASE}, message = {MESSAGE}, updated_at = $3 \
             WHERE id = $4 AND agent_id = $5 AND phase <> 'Terminated' \
             AND (phase <> {PHASE} OR COALESCE(message, '') <> COALESCE({MESSAGE}, ''))"
        )))
        .bind(phase.as_str())
        .bind(message)
        .bind(now_ms())
        .bind(id)
        .bind(agent_id)
        .bind("the agent reported that the session ended, but nobody asked for that")
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 {
            return Ok(None);
        }
        self.get_session(id).await
    }

    /// Sessions the reconciler must look at: the observed phase does not
    /// match the desired state, or the session has been idle longer than
    /// its timeout at `now` (not every session that has a timeout: every
    /// replica reads this every pass, and most desktops are busy).
    pub async fn sessions_to_reconcile(&self, now: i64) -> StoreResult<Vec<SessionRecord>> {
        let rows = sqlx::query(sql(format!(
            "{SELECT} WHERE s.phase NOT IN ('Terminated', 'Failed') AND NOT \
             (s.state = 'hibernated' AND s.phase = 'Hibernated') AND NOT \
             (s.state = 'running' AND s.phase = 'Running' AND \
              (s.idle_timeout_ms IS NULL OR s.last_activity + s.idle_timeout_ms >= $1)) \
             ORDER BY s.id"
        )))
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| self.session_from_row(r)).collect()
    }

    /// Ends a session at once, without its agent: an admin's way out when
    /// the agent is gone for good (or away too long). Its open commands are
    /// superseded; should the agent come back with the session, the
    /// inventory it sends has the leftovers removed.
    pub async fn force_terminate(
        &self,
        id: &SessionId,
        message: &str,
    ) -> StoreResult<Option<SessionRecord>> {
        let _turn = self.write_turn().await;
        let now = now_ms();
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(
            "UPDATE sessions SET state = 'terminated', phase = 'Terminated', message = $1, \
             updated_at = $2, state_changed_at = $2 WHERE id = $3 AND phase <> 'Terminated'",
        )
        .bind(message)
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Ok(None);
        }
        supersede_open(&mut tx, id, now).await?;
        tx.commit().await?;
        self.get_session(id).await
    }

    /// Marks a session failed, unless it has reached `Terminated`.
    pub async fn fail_session(
        &self,
        id: &SessionId,
        message: &str,
    ) -> StoreResult<Option<SessionRecord>> {
        let _turn = self.write_turn().await;
        let done = sqlx::query(
            "UPDATE sessions SET phase = 'Failed', message = $1, updated_at = $2 \
             WHERE id = $3 AND phase <> 'Terminated'",
        )
        .bind(message)
        .bind(now_ms())
        .bind(id)
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 {
            return Ok(None);
        }
        self.get_session(id).await
    }

    /// How many sessions are in each phase.
    pub async fn count_sessions_by_phase(&self) -> StoreResult<HashMap<String, i64>> {
        let rows = sqlx::query("SELECT phase, COUNT(*) AS n FROM sessions GROUP BY phase")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("phase")?, r.try_get("n")?)))
            .collect()
    }

    pub async fn touch_session(&self, id: &SessionId) -> StoreResult<()> {
        let _turn = self.write_turn().await;
        sqlx::query("UPDATE sessions SET last_activity = $1 WHERE id = $2")
            .bind(now_ms())
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
