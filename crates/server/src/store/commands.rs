//! The durable command queue: every command is written here before it is
//! sent, and re-sent on every agent (re)connect until its result arrives.
//! A start command's secrets are sealed in the `secrets` column
//! (`secrets.rs`) and opened when it is read to be sent.

use super::secrets::Sealed;
use super::{AnyQuery, Store, StoreError, StoreResult, now_ms, placeholders, sql};
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};
use streamspace_protocol::{AgentId, Command, CommandId, SessionId};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommandStatus {
    /// Stored, not yet handed to a connected agent.
    Pending,
    /// Written to the agent's connection.
    Sent,
    /// The agent confirmed it has it.
    Acked,
    Completed,
    Failed,
    /// Replaced by a newer command for the same session before delivery.
    Superseded,
}

impl CommandStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CommandStatus::Pending => "pending",
            CommandStatus::Sent => "sent",
            CommandStatus::Acked => "acked",
            CommandStatus::Completed => "completed",
            CommandStatus::Failed => "failed",
            CommandStatus::Superseded => "superseded",
        }
    }
}

/// Statuses of commands that still need to reach or finish on the agent.
const OPEN: &str = "('pending', 'sent', 'acked')";

#[derive(Debug, Clone)]
pub struct CommandRecord {
    pub agent_id: AgentId,
    pub command: Command,
    pub status: String,
}

impl Store {
    fn command_from_row(&self, row: &AnyRow) -> StoreResult<CommandRecord> {
        Ok(CommandRecord {
            agent_id: row.try_get("agent_id")?,
            command: self.command_in_row(row)?,
            status: row.try_get("status")?,
        })
    }

    /// The command in a row's `payload` and `secrets`.
    fn command_in_row(&self, row: &AnyRow) -> StoreResult<Command> {
        let secrets: Option<String> = row.try_get("secrets")?;
        self.open_command(&row.try_get::<String, _>("payload")?, secrets.as_deref())
    }
}

/// Inserts `command` (as `sealed`: `Store::seal_command`) for `agent_id`
/// inside a caller's transaction, after superseding the session's commands
/// that were not delivered yet: a newer wish for a session makes older
/// undelivered ones moot.
pub(super) async fn enqueue(
    conn: &mut AnyConnection,
    agent_id: &AgentId,
    command: &Command,
    sealed: &Sealed,
) -> StoreResult<()> {
    sqlx::query(
        "UPDATE commands SET status = 'superseded', updated_at = $1 \
         WHERE session_id = $2 AND status IN ('pending', 'sent')",
    )
    .bind(now_ms())
    .bind(&command.session_id)
    .execute(&mut *conn)
    .await?;
    insert_command(conn, agent_id, command, sealed).await
}

/// Inserts `command` (as `sealed`) for `agent_id` inside a caller's
/// transaction; a new session's first command has nothing to supersede.
pub(super) async fn insert_command(
    conn: &mut AnyConnection,
    agent_id: &AgentId,
    command: &Command,
    sealed: &Sealed,
) -> StoreResult<()> {
    let text = insert_command_sql(1);
    bind_command(sqlx::query(sql(text)), agent_id, command, sealed, now_ms())
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// The `INSERT` of a pending command, its parameters numbered from `first`
/// (seven of them, bound by [`bind_command`]).
pub(super) fn insert_command_sql(first: usize) -> String {
    format!(
        "INSERT INTO commands (id, agent_id, session_id, action, payload, secrets, status, \
         created_at, updated_at) VALUES ({}, 'pending', ${n}, ${n})",
        placeholders(first, 6),
        n = first + 6
    )
}

/// Binds `command` as `sealed` (`Store::seal_command`): its payload
/// without its secrets, and the secrets sealed.
pub(super) fn bind_command<'q>(
    query: AnyQuery<'q>,
    agent_id: &AgentId,
    command: &Command,
    sealed: &Sealed,
    now: i64,
) -> AnyQuery<'q> {
    query
        .bind(&command.id)
        .bind(agent_id)
        .bind(&command.session_id)
        .bind(command.action.name())
        .bind(&sealed.json)
        .bind(&sealed.secrets)
        .bind(now)
}

/// A PostgreSQL `NOTIFY` sent by the statement that stores what it
/// announces: listeners hear it exactly when the write is visible, and it
/// costs no round trip of its own. (SQLite has no other replica to tell.)
#[derive(Debug, Clone)]
pub struct Announcement {
    pub channel: &'static str,
    pub payload: String,
}

/// The call that sends an announcement, its two parameters numbered from
/// `first`.
pub(super) fn announce_sql(first: usize) -> String {
    format!("pg_notify(${}, ${})", first, first + 1)
}

pub(super) fn bind_announcement<'q>(
    query: AnyQuery<'q>,
    announcement: &Announcement,
) -> AnyQuery<'q> {
    query.bind(announcement.channel).bind(&announcement.payload)
}

/// Marks every command of a session that has no result yet as superseded,
/// inside a caller's transaction: the session ended without them.
pub(super) async fn supersede_open(
    conn: &mut AnyConnection,
    session_id: &SessionId,
    now: i64,
) -> StoreResult<()> {
    sqlx::query(sql(format!(
        "UPDATE commands SET status = 'superseded', updated_at = $1 \
         WHERE session_id = $2 AND status IN {OPEN}"
    )))
    .bind(now)
    .bind(session_id)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// A command a report moved forward: what its latency is measured from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Advanced {
    /// `start`, `hibernate`, `wake` or `terminate`.
    pub action: String,
    /// When it was stored (unix milliseconds, by the issuing replica's clock).
    pub issued_at: i64,
}

/// The newest command of a session, for the reconciler.
#[derive(Debug, Clone)]
pub struct LatestCommand {
    pub agent_id: AgentId,
    pub command: Command,
    pub status: String,
    pub created_at: i64,
    pub updated_at: i64,
}

impl LatestCommand {
    pub fn is_open(&self) -> bool {
        matches!(self.status.as_str(), "pending" | "sent" | "acked")
    }
}

impl Store {
    /// Stores a command on its own (the reconciler's retries).
    pub async fn enqueue_command(&self, agent_id: &AgentId, command: &Command) -> StoreResult<()> {
        let sealed = self.seal_command(command)?;
        let _turn = self.write_turn().await;
        let mut tx = self.pool.begin().await?;
        enqueue(&mut tx, agent_id, command, &sealed).await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn latest_command(
        &self,
        session_id: &SessionId,
    ) -> StoreResult<Option<LatestCommand>> {
        let row = sqlx::query(
            "SELECT agent_id, payload, secrets, status, created_at, updated_at FROM commands \
             WHERE session_id = $1 AND status <> 'superseded' ORDER BY id DESC LIMIT 1",
        )
        .bind(session_id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok(LatestCommand {
                agent_id: r.try_get("agent_id")?,
                command: self.command_in_row(&r)?,
                status: r.try_get("status")?,
                created_at: r.try_get("created_at")?,
                updated_at: r.try_get("updated_at")?,
            })
        })
        .transpose()
    }

    /// How many of the session's commands failed since `since`, and the last
    /// error.
    pub async fn failures_since(
        &self,
        session_id: &SessionId,
        since: i64,
    ) -> StoreResult<(u32, Option<String>)> {
        let rows = sqlx::query(
            "SELECT error FROM commands WHERE session_id = $1 AND status = 'failed' \
             AND created_at >= $2 ORDER BY id",
        )
        .bind(session_id)
        .bind(since)
        .fetch_all(&self.pool)
        .await?;
        let last = rows
            .last()
            .map(|r| r.try_get("error"))
            .transpose()?
            .flatten();
        Ok((u32::try_from(rows.len()).unwrap_or(u32::MAX), last))
    }

    /// Commands not yet completed for this agent, in issue order.
    pub async fn open_commands(&self, agent_id: &AgentId) -> StoreResult<Vec<CommandRecord>> {
        let rows = sqlx::query(sql(format!(
            "SELECT agent_id, payload, secrets, status FROM commands \
             WHERE agent_id = $1 AND status IN {OPEN} ORDER BY id"
        )))
        .bind(agent_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| self.command_from_row(r)).collect()
    }

    pub async fn session_has_open_commands(&self, session_id: &SessionId) -> StoreResult<bool> {
        let row = sqlx::query(sql(format!(
            "SELECT COUNT(*) AS n FROM commands WHERE session_id = $1 AND status IN {OPEN}"
        )))
        .bind(session_id)
        .fetch_one(&self.pool)
        .await?;
        Ok(row.try_get::<i64, _>("n")? > 0)
    }

    /// Moves a command forward. Only the agent it was issued to can do so,
    /// and a finished or superseded command never moves again. Returns the
    /// command's action and issue time when this report is the one that
    /// moved it to `status` (for the latency metrics); a repeated ack (the
    /// agent answering a re-send) returns `None` but still refreshes the
    /// command's `updated_at`, which the reconciler reads as a sign of life.
    pub async fn advance_command(
        &self,
        command_id: &CommandId,
        agent_id: &AgentId,
        status: CommandStatus,
        error: Option<&str>,
    ) -> StoreResult<Option<Advanced>> {
        let _turn = self.write_turn().await;
        let from = match status {
            CommandStatus::Acked => "('pending', 'sent')",
            _ => OPEN,
        };
        let now = now_ms();
        let row = sqlx::query(sql(format!(
            "UPDATE commands SET status = $1, error = $2, updated_at = $3 \
             WHERE id = $4 AND agent_id = $5 AND status IN {from} \
             RETURNING action, created_at"
        )))
        .bind(status.as_str())
        .bind(error)
        .bind(now)
        .bind(command_id)
        .bind(agent_id)
        .fetch_optional(&self.pool)
        .await?;
        if row.is_none() && status == CommandStatus::Acked {
            sqlx::query(
                "UPDATE commands SET updated_at = $1 \
                 WHERE id = $2 AND agent_id = $3 AND status = 'acked'",
            )
            .bind(now)
            .bind(command_id)
            .bind(agent_id)
            .execute(&self.pool)
            .await?;
        }
        row.map(|r| {
            Ok(Advanced {
                action: r.try_get("action")?,
                issued_at: r.try_get("created_at")?,
            })
        })
        .transpose()
    }

    /// Marks a command as written to the agent's connection, unless the agent
    /// already acknowledged it (acks can overtake this write).
    pub async fn mark_command_sent(&self, command_id: &CommandId) -> StoreResult<()> {
        let _turn = self.write_turn().await;
        sqlx::query(
            "UPDATE commands SET status = 'sent', updated_at = $1 \
             WHERE id = $2 AND status = 'pending'",
        )
        .bind(now_ms())
        .bind(command_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// A command not yet handed to any agent connection, for the replica
    /// that holds its agent (told by another replica, `cluster/`); `None`
    /// once sent, finished or superseded.
    pub async fn pending_command(
        &self,
        command_id: &CommandId,
    ) -> StoreResult<Option<CommandRecord>> {
        let row = sqlx::query(
            "SELECT agent_id, payload, secrets, status FROM commands \
             WHERE id = $1 AND status = 'pending'",
        )
        .bind(command_id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(|r| self.command_from_row(r)).transpose()
    }

    pub async fn command_status(&self, command_id: &CommandId) -> StoreResult<Option<String>> {
        let row = sqlx::query("SELECT status FROM commands WHERE id = $1")
            .bind(command_id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| r.try_get("status").map_err(StoreError::from))
            .transpose()
    }
}

#[cfg(test)]
#[path = "commands_tests.rs"]
mod tests;
