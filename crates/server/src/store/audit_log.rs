//! The system audit log: who did what, when, from where, across the whole
//! control plane (a session's own trail is `audit.rs`).

use super::{Store, StoreResult, new_id, to_json};
use serde::Serialize;

/// How an audited action ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Success,
    /// Tried and failed: a wrong password, a refused token.
    Failure,
    /// Not allowed: a role or ownership check said no.
    Denied,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
            Outcome::Denied => "denied",
        }
    }
}

/// One entry of the system audit log, built with [`AuditEvent::new`] and
/// the setters, recorded with `crate::audit_log::record`.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEvent {
    /// Unix milliseconds.
    pub at: i64,
    /// `user:alice`, `anonymous`, `agent:host-b`, `system:idle`…
    pub actor: String,
    /// Dotted, from the list in docs/AUDIT.md: `auth.login`, `token.create`…
    pub kind: String,
    /// What it was done to: `user:bob`, `session:<id>`, `template:<name>`…
    pub target: Option<String>,
    pub outcome: Outcome,
    /// The client's address, for requests.
    pub client: Option<String>,
    /// Anything else worth keeping, as a JSON object.
    pub detail: Option<serde_json::Value>,
}

impl AuditEvent {
    pub fn new(actor: impl Into<String>, kind: &str) -> Self {
        Self {
            at: super::now_ms(),
            actor: actor.into(),
            kind: kind.to_owned(),
            target: None,
            outcome: Outcome::Success,
            client: None,
            detail: None,
        }
    }

    pub fn target(mut self, target: impl Into<String>) -> Self {
        self.target = Some(target.into());
        self
    }

    pub fn outcome(mut self, outcome: Outcome) -> Self {
        self.outcome = outcome;
        self
    }

    pub fn client(mut self, client: Option<std::net::IpAddr>) -> Self {
        self.client = client.map(|addr| addr.to_string());
        self
    }

    pub fn detail(mut self, detail: serde_json::Value) -> Self {
        self.detail = Some(detail);
        self
    }
}

impl Store {
    /// Appends `event`; returns its id (a UUIDv7, the paging cursor).
    pub async fn record_event(&self, event: &AuditEvent) -> StoreResult<String> {
        let id = new_id();
        let _turn = self.write_turn().await;
        sqlx::query(
            "INSERT INTO audit_log (id, at, actor, kind, target, outcome, client, detail) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&id)
        .bind(event.at)
        .bind(&event.actor)
        .bind(&event.kind)
        .bind(&event.target)
        .bind(event.outcome.as_str())
        .bind(&event.client)
        .bind(event.detail.as_ref().map(to_json))
        .execute(&self.pool)
        .await?;
        Ok(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlx::Row;

    async fn an_event_is_stored_whole(url: &str) {
        let store = Store::connect(url).await.expect("store");
        let event = AuditEvent::new("user:alice", "token.create")
            .target("token:t1")
            .outcome(Outcome::Failure)
            .client(Some("192.0.2.7".parse().expect("addr")))
            .detail(serde_json::json!({"name": "ci"}));
        let id = store.record_event(&event).await.expect("write");
        let row = sqlx::query("SELECT * FROM audit_log WHERE id = $1")
            .bind(&id)
            .fetch_one(store.pool())
            .await
            .expect("read");
        let text = |name: &str| row.try_get::<Option<String>, _>(name).expect(name);
        assert_eq!(text("actor").as_deref(), Some("user:alice"));
        assert_eq!(text("kind").as_deref(), Some("token.create"));
        assert_eq!(text("target").as_deref(), Some("token:t1"));
        assert_eq!(text("outcome").as_deref(), Some("failure"));
        assert_eq!(text("client").as_deref(), Some("192.0.2.7"));
        assert_eq!(text("detail").as_deref(), Some(r#"{"name":"ci"}"#));
    }

    on_both_engines!(an_event_is_stored_whole);
}
