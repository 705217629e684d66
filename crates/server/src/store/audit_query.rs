//! Reading and trimming the system audit log (`audit_log`): filtered pages
//! newest first, with the last id as the cursor; a user's recent logins;
//! deleting what is older than the retention.
//!
//! Ids are UUIDv7, so their order is time order and a page that ends at id
//! X continues strictly below X: events recorded while someone pages get
//! larger ids and never shift what the next page holds.

use super::{Store, StoreResult};
use serde::Serialize;
use sqlx::Row;
use sqlx::any::AnyRow;
use streamspace_protocol::UserId;

/// Most rows one statement of the retention purge deletes: a long purge
/// after retention was shortened takes many short statements, not one
/// that holds locks for minutes.
const PURGE_BATCH: i64 = 5_000;

/// One recorded event as the store holds it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LoggedEvent {
    pub id: String,
    /// Unix milliseconds.
    pub at: i64,
    pub actor: String,
    pub kind: String,
    pub target: Option<String>,
    pub outcome: String,
    pub client: Option<String>,
    /// The JSON object recorded with it, as text.
    pub detail: Option<String>,
}

/// Which events to read; every field that is set must match.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub actor: Option<String>,
    /// A kind (`auth.login`), or a prefix of kinds ending in a dot
    /// (`auth.` matches every `auth.*` kind).
    pub kind: Option<String>,
    pub target: Option<String>,
    /// At or after (unix ms).
    pub since: Option<i64>,
    /// Before (unix ms).
    pub until: Option<i64>,
    /// Only events older than this id (the previous page's last).
    pub before_id: Option<String>,
}

/// A filter as SQL: the `WHERE` clause and its values in order.
struct Conditions {
    clauses: Vec<String>,
    texts: Vec<String>,
    numbers: Vec<i64>,
}

impl Conditions {
    /// Text values are bound first ($1…), then numbers, so each clause
    /// knows its placeholder when it is written.
    fn of(filter: &AuditFilter) -> Self {
        let mut texts = Vec::new();
        let mut clauses = Vec::new();
        let mut text = |clause: &dyn Fn(usize) -> String, value: &str| {
            texts.push(value.to_owned());
            clauses.push(clause(texts.len()));
        };
        if let Some(actor) = &filter.actor {
            text(&|n| format!("actor = ${n}"), actor);
        }
        match filter.kind.as_deref() {
            Some(prefix) if prefix.ends_with('.') => {
                // substr, not LIKE: `_` in a kind is a LIKE wildcard.
                let len = prefix.len();
                text(&|n| format!("substr(kind, 1, {len}) = ${n}"), prefix);
            }
            Some(kind) => text(&|n| format!("kind = ${n}"), kind),
            None => {}
        }
        if let Some(target) = &filter.target {
            text(&|n| format!("target = ${n}"), target);
        }
        if let Some(id) = &filter.before_id {
            text(&|n| format!("id < ${n}"), id);
        }
        let mut numbers = Vec::new();
        let first = texts.len();
        for (bound, op) in [(filter.since, ">="), (filter.until, "<")] {
            if let Some(ms) = bound {
                numbers.push(ms);
                clauses.push(format!("at {op} ${}", first + numbers.len()));
            }
        }
        Conditions {
            clauses,
            texts,
            numbers,
        }
    }

    fn sql(&self) -> String {
        match self.clauses.is_empty() {
            true => String::new(),
            false => format!("WHERE {}", self.clauses.join(" AND ")),
        }
    }
}

fn event(row: &AnyRow) -> StoreResult<LoggedEvent> {
    Ok(LoggedEvent {
        id: row.try_get("id")?,
        at: row.try_get("at")?,
        actor: row.try_get("actor")?,
        kind: row.try_get("kind")?,
        target: row.try_get("target")?,
        outcome: row.try_get("outcome")?,
        client: row.try_get("client")?,
        detail: row.try_get("detail")?,
    })
}

impl Store {
    /// Up to `limit` events matching `filter`, newest first.
    pub async fn audit_events(
        &self,
        filter: &AuditFilter,
        limit: u32,
    ) -> StoreResult<Vec<LoggedEvent>> {
        let conditions = Conditions::of(filter);
        let sql = format!(
            "SELECT id, at, actor, kind, target, outcome, client, detail FROM audit_log {} \
             ORDER BY id DESC LIMIT {limit}",
            conditions.sql()
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for text in &conditions.texts {
            query = query.bind(text);
        }
        for number in &conditions.numbers {
            query = query.bind(number);
        }
        let rows = query.fetch_all(&self.pool).await?;
        rows.iter().map(event).collect()
    }

    /// When the user's account was made (unix ms), if it exists.
    pub async fn user_created_at(&self, id: &UserId) -> StoreResult<Option<i64>> {
        let row = sqlx::query("SELECT created_at FROM users WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| r.try_get("created_at")).transpose()?)
    }

    /// Deletes events recorded before `cutoff` (unix ms), in batches; how
    /// many went. Safe on every replica at once: each statement deletes
    /// whatever is still there, and a row two replicas both pick is
    /// deleted once.
    pub async fn purge_audit_log(&self, cutoff: i64) -> StoreResult<u64> {
        let mut deleted = 0;
        loop {
            let _turn = self.write_turn().await;
            let done = sqlx::query(
                "DELETE FROM audit_log WHERE id IN \
                 (SELECT id FROM audit_log WHERE at < $1 ORDER BY at LIMIT $2)",
            )
            .bind(cutoff)
            .bind(PURGE_BATCH)
            .execute(&self.pool)
            .await?;
            deleted += done.rows_affected();
            if done.rows_affected() < PURGE_BATCH as u64 {
                return Ok(deleted);
            }
        }
    }
}
