//! `/api/v1/recordings`: admins list session recordings, download one
//! (the UI's player replays it), and delete them (docs/RECORDING.md).

use super::views::time;
use crate::audit_log::{self, AuditEvent, Outcome};
use crate::auth::AdminUser;
use crate::auth::client_addr::ClientAddr;
use crate::error::{ApiError, ApiPath, ApiQuery, ApiResult, ErrorBody};
use crate::recording::{DeleteError, Listed};
use crate::state::AppState;
use crate::validate::FieldError;
use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::{StatusCode, header};
use serde::{Deserialize, Serialize};
use serde_json::json;
use streamspace_protocol::SessionId;
use tokio_util::io::ReaderStream;
use utoipa::{IntoParams, ToSchema};

/// The most recordings one listing returns (the newest).
const MAX_LISTED: usize = 1000;
/// Session ids are short; a longer filter cannot match one.
const MAX_SESSION_ID: usize = 128;

/// A recording of one viewer's tunnel.
#[derive(Debug, Serialize, ToSchema)]
pub struct RecordingView {
    pub id: String,
    #[schema(value_type = String)]
    pub session_id: SessionId,
    /// Whose viewer was recorded (`user:NAME`).
    pub viewer: String,
    pub started_at: String,
    /// Unset while it runs (or if the server stopped during it).
    pub ended_at: Option<String>,
    /// From the start to the last chunk recorded.
    pub duration_ms: u64,
    /// The file's size.
    pub bytes: u64,
    /// Whether it is being written now.
    pub recording: bool,
    /// Why it ended before its viewer did (a size cap, a disk error).
    pub stopped: Option<String>,
}

impl From<Listed> for RecordingView {
    fn from(listed: Listed) -> Self {
        let info = listed.info;
        RecordingView {
            id: info.id,
            session_id: info.session_id,
            viewer: info.viewer,
            started_at: time(info.started_ms),
            ended_at: info.ended_ms.map(time),
            duration_ms: info.duration_ms,
            bytes: listed.bytes,
            recording: listed.active,
            stopped: info.stopped,
        }
    }
}

/// Which recordings.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct RecordingQuery {
    /// Only this session's.
    #[serde(default)]
    session_id: Option<String>,
}

/// List recordings (admin)
///
/// Newest first, at most 1000; `session_id` limits them to one session's.
#[utoipa::path(
    get,
    operation_id = "listRecordings",
    path = "/api/v1/recordings",
    tag = "recordings",
    security(("bearer" = []), ("cookie" = [])),
    params(RecordingQuery),
    responses(
        (status = 200, description = "The recordings", body = Vec<RecordingView>),
        (status = 400, description = "A parameter is not valid; `field` names it", body = ErrorBody),
        (status = 403, description = "Admins only", body = ErrorBody),
    ),
)]
pub async fn list(
    State(state): State<AppState>,
    _: AdminUser,
    ApiQuery(query): ApiQuery<RecordingQuery>,
) -> ApiResult<Json<Vec<RecordingView>>> {
    let session = match query.session_id {
        Some(id) if id.is_empty() || id.len() > MAX_SESSION_ID => {
            let message = format!("give a session id of 1 to {MAX_SESSION_ID} characters");
            return Err(FieldError::new("session_id", message).into());
        }
        other => other.map(SessionId::from),
    };
    let recordings = state.recordings.clone();
    let listed = tokio::task::spawn_blocking(move || recordings.list(session.as_ref()))
        .await
        .map_err(|err| ApiError::Internal(format!("listing recordings failed: {err}")))?
        .map_err(|err| ApiError::Internal(format!("cannot read the recordings: {err}")))?;
    let views = listed.into_iter().take(MAX_LISTED).map(RecordingView::from);
    Ok(Json(views.collect()))
}

/// Download a recording (admin)
///
/// The file (format: docs/RECORDING.md), streamed; a running recording as
/// far as it got. Every download (the player's too) is recorded in the
/// audit log (`recording.download`): who replayed whose desktop.
#[utoipa::path(
    get,
    operation_id = "getRecording",
    path = "/api/v1/recordings/{id}",
    tag = "recordings",
    security(("bearer" = []), ("cookie" = [])),
    params(("id" = String, Path, description = "The recording's id")),
    responses(
        (status = 200, description = "The recording", content_type = "application/octet-stream", body = Vec<u8>),
        (status = 403, description = "Admins only", body = ErrorBody),
        (status = 404, description = "No such recording", body = ErrorBody),
    ),
)]
pub async fn get(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
    client: ClientAddr,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Response> {
    let path = state
        .recordings
        .file(&id)
        .ok_or_else(|| ApiError::not_found("recording"))?;
    let file = tokio::fs::File::open(&path)
        .await
        .map_err(|_| ApiError::not_found("recording"))?;
    if let Some(info) = state.recordings.info(&id) {
        let event = AuditEvent::new(admin.actor(), "recording.download")
            .target(format!("session:{}", info.session_id))
            .outcome(Outcome::Success)
            .client(client.0)
            .detail(json!({ "recording": info.id, "viewer": info.viewer }));
        audit_log::record(&state, event).await;
    }
    let disposition = format!("attachment; filename=\"{id}.ssrec\"");
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_owned()),
            (header::CONTENT_DISPOSITION, disposition),
            (header::CACHE_CONTROL, "no-store".to_owned()),
        ],
        Body::from_stream(ReaderStream::new(file)),
    )
        .into_response())
}

/// Delete a recording (admin)
///
/// Its file goes at once; a running recording cannot be deleted (409).
/// Recorded in the audit log (`recording.delete`).
#[utoipa::path(
    delete,
    operation_id = "deleteRecording",
    path = "/api/v1/recordings/{id}",
    tag = "recordings",
    security(("bearer" = []), ("cookie" = [])),
    params(("id" = String, Path, description = "The recording's id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 403, description = "Admins only", body = ErrorBody),
        (status = 404, description = "No such recording", body = ErrorBody),
        (status = 409, description = "It is still being recorded: close its viewer first", body = ErrorBody),
    ),
)]
pub async fn delete(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
    client: ClientAddr,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<StatusCode> {
    let recordings = state.recordings.clone();
    let target = id.clone();
    let deleted = tokio::task::spawn_blocking(move || recordings.delete(&target))
        .await
        .map_err(|err| ApiError::Internal(format!("deleting a recording failed: {err}")))?;
    let info = deleted.map_err(|err| match err {
        DeleteError::NotFound => ApiError::not_found("recording"),
        DeleteError::Active => ApiError::Conflict(err.to_string()),
        DeleteError::Io(_) => ApiError::Internal(err.to_string()),
    })?;
    let event = AuditEvent::new(admin.actor(), "recording.delete")
        .target(format!("session:{}", info.session_id))
        .outcome(Outcome::Success)
        .client(client.0)
        .detail(json!({ "recording": info.id, "viewer": info.viewer }));
    audit_log::record(&state, event).await;
    Ok(StatusCode::NO_CONTENT)
}
