//! The audit trail of a session's lifecycle.

use super::{AnyQuery, Store, StoreResult, new_id, now_ms, placeholders, sql};
use serde::Serialize;
use sqlx::{AnyConnection, Row};
use streamspace_protocol::SessionId;

/// One entry: who or what (`actor`) did what (`kind`) and what followed.
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
// The API calls the trail a session's events (`GET …/sessions/{id}/events`).
#[schema(as = SessionEvent)]
pub struct AuditEntry {
    // Unix milliseconds; the API shows it as RFC 3339 (`api::sessions::events`).
    #[schema(value_type = String, format = DateTime)]
    pub at: i64,
    /// `user:alice`, `agent:host-b`, `system:idle`, `system:reconciler`…
    pub actor: String,
    /// `created`, `state`, `phase`, `retry`, `gave_up`, `adopted`, `quota`;
    /// `share.create`, `share.end`, `share.join` (docs/SHARING.md).
    pub kind: String,
    /// The desired state, when the event changed or concerns it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// The observed phase, when the event changed it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl AuditEntry {
    pub fn new(actor: impl Into<String>, kind: &str) -> Self {
        Self {
            at: now_ms(),
            actor: actor.into(),
            kind: kind.to_owned(),
            ..Self::default()
        }
    }

    pub fn state(mut self, state: &str) -> Self {
        self.state = Some(state.to_owned());
        self
    }

    pub fn phase(mut self, phase: &str) -> Self {
        self.phase = Some(phase.to_owned());
        self
    }

    pub fn message(mut self, message: Option<&str>) -> Self {
        self.message = message.map(str::to_owned);
        self
    }
}

impl Store {
    pub async fn record_audit(
        &self,
        session_id: &SessionId,
        event: &AuditEntry,
    ) -> StoreResult<()> {
        let _turn = self.write_turn().await;
        let mut conn = self.pool.acquire().await?;
        insert_audit(&mut conn, session_id, event).await
    }

    /// A session's events, oldest first.
    pub async fn audit_trail(&self, session_id: &SessionId) -> StoreResult<Vec<AuditEntry>> {
        let rows = sqlx::query(
            "SELECT at, actor, kind, state, phase, message FROM session_events \
             WHERE session_id = $1 ORDER BY id",
        )
        .bind(session_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(AuditEntry {
                    at: r.try_get("at")?,
                    actor: r.try_get("actor")?,
                    kind: r.try_get("kind")?,
                    state: r.try_get("state")?,
                    phase: r.try_get("phase")?,
                    message: r.try_get("message")?,
                })
            })
            .collect()
    }
}

/// Appends `event` to the session's trail, inside a caller's transaction
/// or on its connection.
pub(super) async fn insert_audit(
    conn: &mut AnyConnection,
    session_id: &SessionId,
    event: &AuditEntry,
) -> StoreResult<()> {
    bind_audit(sqlx::query(sql(insert_audit_sql(1))), session_id, event)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// The `INSERT` of a session event, its parameters numbered from `first`
/// (eight of them, bound by [`bind_audit`]).
pub(super) fn insert_audit_sql(first: usize) -> String {
    format!(
        "INSERT INTO session_events (id, session_id, at, actor, kind, state, phase, message) \
         VALUES ({})",
        placeholders(first, 8)
    )
}

pub(super) fn bind_audit<'q>(
    query: AnyQuery<'q>,
    session_id: &SessionId,
    event: &AuditEntry,
) -> AnyQuery<'q> {
    query
        .bind(new_id())
        .bind(session_id)
        .bind(event.at)
        .bind(&event.actor)
        .bind(&event.kind)
        .bind(&event.state)
        .bind(&event.phase)
        .bind(&event.message)
}
