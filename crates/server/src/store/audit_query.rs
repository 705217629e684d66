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
        self.purge_in_batches(cutoff, PURGE_BATCH).await
    }

    async fn purge_in_batches(&self, cutoff: i64, batch: i64) -> StoreResult<u64> {
        let mut deleted = 0;
        loop {
            let _turn = self.write_turn().await;
            let done = sqlx::query(
                "DELETE FROM audit_log WHERE id IN \
                 (SELECT id FROM audit_log WHERE at < $1 ORDER BY at LIMIT $2)",
            )
            .bind(cutoff)
            .bind(batch)
            .execute(&self.pool)
            .await?;
            deleted += done.rows_affected();
            if done.rows_affected() < batch as u64 {
                return Ok(deleted);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{AuditEvent, Outcome};
    use super::*;

    /// Records `kind` by `actor` at `at`; its id.
    async fn at(store: &Store, at: i64, actor: &str, kind: &str) -> String {
        let mut event = AuditEvent::new(actor, kind)
            .target(format!("user:{actor}"))
            .outcome(Outcome::Success);
        event.at = at;
        store.record_event(&event).await.expect("write")
    }

    fn ids(events: &[LoggedEvent]) -> Vec<&str> {
        events.iter().map(|e| e.id.as_str()).collect()
    }

    /// Pages are newest first, continue strictly below the cursor, and do
    /// not move when events arrive between them; filters combine.
    async fn pages_are_stable_and_filters_combine(url: &str) {
        let store = Store::connect(url).await.expect("store");
        let mut recorded = Vec::new();
        for i in 0..5 {
            recorded.push(at(&store, 1_000 + i, "alice", "auth.login").await);
            recorded.push(at(&store, 1_000 + i, "bob", "session.create").await);
        }
        recorded.reverse();
        let all = AuditFilter::default();
        let first = store.audit_events(&all, 4).await.expect("read");
        assert_eq!(ids(&first), recorded[..4].to_vec());
        // New events meanwhile change nothing below the cursor.
        at(&store, 2_000, "carol", "auth.login").await;
        let next = AuditFilter {
            before_id: Some(first[3].id.clone()),
            ..all.clone()
        };
        let second = store.audit_events(&next, 4).await.expect("read");
        assert_eq!(ids(&second), recorded[4..8].to_vec());

        let alice_logins = AuditFilter {
            actor: Some("alice".into()),
            kind: Some("auth.".into()),
            since: Some(1_001),
            until: Some(1_004),
            ..all.clone()
        };
        let found = store.audit_events(&alice_logins, 100).await.expect("read");
        let times: Vec<i64> = found.iter().map(|e| e.at).collect();
        assert_eq!(times, [1_003, 1_002, 1_001]);
        assert!(
            found
                .iter()
                .all(|e| e.actor == "alice" && e.kind == "auth.login")
        );
        // A prefix is a prefix of whole words, and `_` is no wildcard.
        for (kind, expected) in [
            ("session.", 5),
            ("session.create", 5),
            ("auth.", 6),
            ("auth.l", 0),
        ] {
            let filter = AuditFilter {
                kind: Some(kind.into()),
                ..all.clone()
            };
            let found = store.audit_events(&filter, 100).await.expect("read");
            assert_eq!(found.len(), expected, "{kind}");
        }
        let by_target = AuditFilter {
            target: Some("user:bob".into()),
            ..all
        };
        assert_eq!(
            store
                .audit_events(&by_target, 100)
                .await
                .expect("read")
                .len(),
            5
        );
    }

    /// The purge deletes what is older than the cutoff, in batches, and
    /// nothing newer.
    async fn the_purge_deletes_only_what_is_older(url: &str) {
        let store = Store::connect(url).await.expect("store");
        for i in 0..7 {
            at(&store, i, "system:test", "old.event").await;
        }
        let kept = at(&store, 100, "alice", "auth.login").await;
        // Batches of 3: 3, 3, then 1 (fewer than a batch ends it).
        assert_eq!(store.purge_in_batches(100, 3).await.expect("purge"), 7);
        let left = store
            .audit_events(&AuditFilter::default(), 10)
            .await
            .expect("read");
        assert_eq!(ids(&left), [kept.as_str()]);
        assert_eq!(store.purge_audit_log(100).await.expect("again"), 0);
    }

    on_both_engines!(
        pages_are_stable_and_filters_combine,
        the_purge_deletes_only_what_is_older
    );
}
