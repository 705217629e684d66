//! `/api/v1/audit`: the system audit log for admins (filtered pages, newest
//! first, and a JSON-lines export), and `/api/v1/users/me/logins`, a user's
//! own recent logins. What is recorded is `audit_log.rs` and docs/AUDIT.md.

use crate::audit_log::{self, AuditEvent, Outcome};
use crate::auth::client_addr::ClientAddr;
use crate::auth::{AdminUser, CurrentUser};
use crate::error::{ApiError, ApiQuery, ApiResult, ErrorBody};
use crate::state::AppState;
use crate::store::{AuditFilter, LoggedEvent};
use crate::validate::FieldError;
use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use futures::stream::{self, Stream};
use http::header;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::time::UNIX_EPOCH;
use utoipa::{IntoParams, ToSchema};

/// A page holds this many events unless `limit` says otherwise.
const DEFAULT_PAGE: u32 = 50;
/// The most events one page holds.
const MAX_PAGE: u32 = 500;
/// The most events one export holds (about 30 MB of JSON lines).
const MAX_EXPORT: u32 = 100_000;
/// Events read from the store per query while an export streams.
const EXPORT_BATCH: u32 = 1_000;
/// How many of your own logins `GET /users/me/logins` shows.
const MY_LOGINS: u32 = 20;
/// The longest actor, target or kind a filter may name.
const MAX_FILTER: usize = 256;

/// Which events; every parameter given must match.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Who acted: `user:alice`, `anonymous`, `agent:host-b`, `system:idle`.
    #[serde(default)]
    actor: Option<String>,
    /// A kind (`auth.login`), or every kind under a prefix ending in a dot
    /// (`session.`).
    #[serde(default)]
    kind: Option<String>,
    /// What it was done to: `user:alice`, `session:{id}`, `template:desktop`.
    #[serde(default)]
    target: Option<String>,
    /// At or after this time (RFC 3339, UTC: `2026-12-01T00:00:00Z`).
    #[serde(default)]
    since: Option<String>,
    /// Before this time (RFC 3339, UTC).
    #[serde(default)]
    until: Option<String>,
    /// The `next_cursor` of the previous page: events older than it.
    #[serde(default)]
    cursor: Option<String>,
    /// Events per page (1–500, default 50); for an export, at most this
    /// many (1–100000, default 100000).
    #[serde(default)]
    #[param(value_type = Option<u32>)]
    // Read as text, so a bad one is a 400 naming the field.
    limit: Option<String>,
}

/// One event of the audit log.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditEventView {
    /// UUIDv7: ids sort in the order the events were recorded.
    id: String,
    #[schema(format = DateTime)]
    at: String,
    /// `user:alice`, `anonymous`, `agent:host-b`, `system:idle`…
    actor: String,
    /// What happened: `auth.login`, `session.state`… (docs/AUDIT.md).
    kind: String,
    target: Option<String>,
    /// `success`, `failure` or `denied`.
    outcome: String,
    /// The client's address, when a request caused it.
    client: Option<String>,
    /// What else the kind records (docs/AUDIT.md).
    #[schema(value_type = Option<Object>)]
    detail: Option<serde_json::Value>,
}

impl From<LoggedEvent> for AuditEventView {
    fn from(event: LoggedEvent) -> Self {
        let detail = event
            .detail
            .as_deref()
            .and_then(|text| serde_json::from_str(text).ok());
        AuditEventView {
            id: event.id,
            at: super::views::time(event.at),
            actor: event.actor,
            kind: event.kind,
            target: event.target,
            outcome: event.outcome,
            client: event.client,
            detail,
        }
    }
}

/// A page of events, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditPage {
    events: Vec<AuditEventView>,
    /// Pass as `cursor` for the next (older) page; absent on the last.
    next_cursor: Option<String>,
}

/// Your recent logins, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct MyLogins {
    logins: Vec<AuditEventView>,
}

/// The audit log (admin)
///
/// Newest first, filtered by actor, kind, target and time. Page with
/// `cursor`: each page continues strictly below the last one's oldest
/// event, so events recorded meanwhile never repeat or shift a page.
#[utoipa::path(
    get,
    operation_id = "listAuditEvents",
    path = "/api/v1/audit",
    tag = "audit",
    security(("bearer" = []), ("cookie" = [])),
    params(AuditQuery),
    responses(
        (status = 200, description = "A page of events", body = AuditPage),
        (status = 400, description = "A parameter is not valid; `field` names it", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
    ),
)]
pub async fn list(
    State(state): State<AppState>,
    _: AdminUser,
    ApiQuery(query): ApiQuery<AuditQuery>,
) -> ApiResult<Json<AuditPage>> {
    let limit = page_limit(query.limit.as_deref(), DEFAULT_PAGE, MAX_PAGE)?;
    let filter = filter_of(&query)?;
    // One more than asked says whether there is a next page.
    let mut events = state.store.audit_events(&filter, limit + 1).await?;
    let more = events.len() > limit as usize;
    events.truncate(limit as usize);
    let next_cursor = more.then(|| events.last().map(|e| e.id.clone())).flatten();
    let events = events.into_iter().map(AuditEventView::from).collect();
    Ok(Json(AuditPage {
        events,
        next_cursor,
    }))
}

/// Export the audit log (admin)
///
/// The same filters as `GET /api/v1/audit`, as JSON lines (one event per
/// line, newest first), streamed. At most `limit` events (100000 at most):
/// for more, export again with `until` set to the oldest `at` you got.
/// The export itself is recorded (`audit.export`).
#[utoipa::path(
    get,
    operation_id = "exportAuditEvents",
    path = "/api/v1/audit/export",
    tag = "audit",
    security(("bearer" = []), ("cookie" = [])),
    params(AuditQuery),
    responses(
        (status = 200, description = "One `AuditEventView` per line", content_type = "application/x-ndjson", body = String),
        (status = 400, description = "A parameter is not valid; `field` names it", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
    ),
)]
pub async fn export(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
    client: ClientAddr,
    ApiQuery(query): ApiQuery<AuditQuery>,
) -> ApiResult<Response> {
    let limit = page_limit(query.limit.as_deref(), MAX_EXPORT, MAX_EXPORT)?;
    let filter = filter_of(&query)?;
    let event = AuditEvent::new(admin.actor(), "audit.export")
        .outcome(Outcome::Success)
        .client(client.0)
        .detail(json!({
            "actor": query.actor, "kind": query.kind, "target": query.target,
            "since": query.since, "until": query.until, "limit": limit,
        }));
    audit_log::record(&state, event).await;
    let body = Body::from_stream(json_lines(state, filter, limit));
    Ok((
        [
            (header::CONTENT_TYPE, "application/x-ndjson"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"streamspace-audit.jsonl\"",
            ),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response())
}

/// Where an export stands: what it still may send, and from where.
struct Exporting {
    state: AppState,
    filter: AuditFilter,
    left: u32,
}

/// Batches of events as JSON lines, each batch read when the client has
/// taken the last, until `limit` events or the filter's end.
fn json_lines(
    state: AppState,
    filter: AuditFilter,
    limit: u32,
) -> impl Stream<Item = Result<String, std::io::Error>> {
    let start = Exporting {
        state,
        filter,
        left: limit,
    };
    stream::unfold(Some(start), |at| async move {
        let mut at = at?;
        if at.left == 0 {
            return None;
        }
        let batch = EXPORT_BATCH.min(at.left);
        let events = match at.state.store.audit_events(&at.filter, batch).await {
            Ok(events) => events,
            Err(err) => {
                // The status went out with the first byte: end the body
                // short, which the client sees as a broken transfer.
                tracing::error!(error = %err, "audit export failed");
                return Some((Err(std::io::Error::other("the database failed")), None));
            }
        };
        let last = events.last()?.id.clone();
        let full = events.len() as u32 == batch;
        at.left -= events.len() as u32;
        at.filter.before_id = Some(last);
        let lines = lines_of(events);
        Some((Ok(lines), full.then_some(at)))
    })
}

fn lines_of(events: Vec<LoggedEvent>) -> String {
    let mut text = String::new();
    for event in events {
        let view = AuditEventView::from(event);
        if let Ok(line) = serde_json::to_string(&view) {
            text.push_str(&line);
            text.push('\n');
        }
    }
    text
}

/// Your recent logins
///
/// Your last 20 logins, failed ones included, newest first, with the
/// address and method of each: a login you do not recognise is a reason to
/// change your password and sign out everywhere.
#[utoipa::path(
    get,
    operation_id = "listMyLogins",
    path = "/api/v1/users/me/logins",
    tag = "users",
    security(("bearer" = []), ("cookie" = [])),
    responses((status = 200, description = "Your recent logins", body = MyLogins)),
)]
pub async fn my_logins(
    State(state): State<AppState>,
    user: CurrentUser,
) -> ApiResult<Json<MyLogins>> {
    // Only since the account exists: a deleted user's logins stay theirs
    // even if someone gets the name later.
    let since = state.store.user_created_at(&user.user.id).await?;
    let filter = AuditFilter {
        kind: Some("auth.login".into()),
        target: Some(format!("user:{}", user.user.username)),
        since,
        ..AuditFilter::default()
    };
    let events = state.store.audit_events(&filter, MY_LOGINS).await?;
    let logins = events.into_iter().map(AuditEventView::from).collect();
    Ok(Json(MyLogins { logins }))
}

fn page_limit(asked: Option<&str>, default: u32, max: u32) -> ApiResult<u32> {
    let Some(text) = asked else {
        return Ok(default);
    };
    match text.parse::<u32>() {
        Ok(n) if (1..=max).contains(&n) => Ok(n),
        _ => Err(
            FieldError::new("limit", format!("{text:?} is not a number from 1 to {max}")).into(),
        ),
    }
}

/// The store's filter for a query, every parameter checked.
fn filter_of(query: &AuditQuery) -> ApiResult<AuditFilter> {
    let text = |field: &str, value: &Option<String>| -> ApiResult<Option<String>> {
        match value {
            Some(v) if v.is_empty() || v.len() > MAX_FILTER => {
                Err(FieldError::new(field, format!("must be 1 to {MAX_FILTER} bytes long")).into())
            }
            other => Ok(other.clone()),
        }
    };
    let filter = AuditFilter {
        actor: text("actor", &query.actor)?,
        kind: text("kind", &query.kind)?.map(check_kind).transpose()?,
        target: text("target", &query.target)?,
        since: query
            .since
            .as_deref()
            .map(|t| time("since", t))
            .transpose()?,
        until: query
            .until
            .as_deref()
            .map(|t| time("until", t))
            .transpose()?,
        before_id: query.cursor.as_deref().map(check_cursor).transpose()?,
    };
    if let (Some(since), Some(until)) = (filter.since, filter.until)
        && since >= until
    {
        return Err(FieldError::new("until", "must be later than since").into());
    }
    Ok(filter)
}

/// Kinds are dotted lowercase words (`auth.login`); a prefix ends in a dot.
fn check_kind(kind: String) -> ApiResult<String> {
    let valid = kind
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'.')
        && !kind.starts_with('.');
    match valid {
        true => Ok(kind),
        false => Err(FieldError::new(
            "kind",
            format!(
                "{kind:?} is not a kind: use one such as auth.login, or a prefix such as session."
            ),
        )
        .into()),
    }
}

/// A cursor is an event's id, which is a UUID.
fn check_cursor(cursor: &str) -> ApiResult<String> {
    match uuid::Uuid::parse_str(cursor) {
        Ok(id) => Ok(id.to_string()),
        Err(_) => Err(FieldError::new(
            "cursor",
            "not a cursor: pass the next_cursor of the previous page",
        )
        .into()),
    }
}

/// An RFC 3339 time in UTC as unix milliseconds.
fn time(field: &str, text: &str) -> Result<i64, ApiError> {
    let at = humantime::parse_rfc3339(text).map_err(|err| {
        FieldError::new(
            field,
            format!("{text:?} is not a time ({err}): write it as 2026-12-01T00:00:00Z, in UTC"),
        )
    })?;
    let ms = at
        .duration_since(UNIX_EPOCH)
        .map_err(|_| FieldError::new(field, "must be after 1970"))?
        .as_millis();
    i64::try_from(ms).map_err(|_| FieldError::new(field, "is too far in the future").into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(set: impl FnOnce(&mut AuditQuery)) -> AuditQuery {
        let mut query = AuditQuery::default();
        set(&mut query);
        query
    }

    fn field_of(result: ApiResult<AuditFilter>) -> String {
        match result {
            Err(ApiError::Field(err)) => err.field,
            other => panic!("expected a field error, got {other:?}"),
        }
    }

    #[test]
    fn every_bad_parameter_is_named() {
        let long = "x".repeat(MAX_FILTER + 1);
        let cases: Vec<(&str, AuditQuery)> = vec![
            ("actor", query(|q| q.actor = Some(long.clone()))),
            ("target", query(|q| q.target = Some(String::new()))),
            ("kind", query(|q| q.kind = Some("Auth Login".into()))),
            ("since", query(|q| q.since = Some("yesterday".into()))),
            ("cursor", query(|q| q.cursor = Some("page-2".into()))),
            (
                "until",
                query(|q| {
                    q.since = Some("2026-12-01T00:00:00Z".into());
                    q.until = Some("2026-11-30T00:00:00Z".into());
                }),
            ),
        ];
        for (field, query) in cases {
            assert_eq!(field_of(filter_of(&query)), field);
        }
        for bad in ["0", "501", "ten", "-1"] {
            assert!(
                page_limit(Some(bad), DEFAULT_PAGE, MAX_PAGE).is_err(),
                "{bad}"
            );
        }
        assert_eq!(
            page_limit(Some("500"), DEFAULT_PAGE, MAX_PAGE).ok(),
            Some(500)
        );
        assert_eq!(page_limit(None, DEFAULT_PAGE, MAX_PAGE).ok(), Some(50));
    }

    #[test]
    fn times_are_read_as_utc_milliseconds() {
        let filter = filter_of(&query(|q| {
            q.since = Some("1970-01-01T00:00:01Z".into());
            q.kind = Some("session.".into());
        }));
        let filter = filter.expect("valid");
        assert_eq!(filter.since, Some(1000));
        assert_eq!(filter.kind.as_deref(), Some("session."));
    }
}
