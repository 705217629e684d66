//! `/api/v1/sessions/{id}/files`: the session's files folder (the template's
//! `desktop.files_folder` under the home): list it, download a file, upload
//! one (docs/FILES.md). The owner and admins only, never share guests; the
//! template's `desktop.file_transfer` policy is enforced here, the folder's
//! confinement (no `..`, no symbolic link) here and again by the agent.

use crate::audit_log::files::Transfer;
use crate::auth::client_addr::ClientAddr;
use crate::auth::{CurrentUser, visible_session};
use crate::error::{ApiError, ApiPath, ApiQuery, ApiResult, ErrorBody};
use crate::state::AppState;
use crate::store::SessionRecord;
use crate::tunnel::file_channel::FileChannel;
use crate::validate::FieldError;
use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use http::{HeaderMap, StatusCode, header};
use serde::{Deserialize, Serialize};
use streamspace_protocol::SessionId;
use streamspace_protocol::files::{FileEntry, FileOp, FileReply, FilesFolder, relative_path};

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// A directory relative to the files folder (default: the folder).
    #[serde(default)]
    path: String,
}

/// A directory of the session's files folder.
#[derive(Serialize, utoipa::ToSchema)]
pub struct FileListing {
    /// The files folder, relative to the session's home (`Downloads`).
    pub folder: String,
    /// The directory listed, relative to the folder (`""`: the folder).
    pub path: String,
    /// Sorted by name.
    pub entries: Vec<FileEntry>,
    /// More entries exist than were listed.
    pub truncated: bool,
}

/// A file written by an upload.
#[derive(Serialize, utoipa::ToSchema)]
pub struct UploadedFile {
    pub path: String,
    pub size: u64,
}

/// What the template lets this session's owner move, and where.
struct FilesPolicy {
    upload: bool,
    download: bool,
    folder: FilesFolder,
    max_upload: u64,
}

impl FilesPolicy {
    fn of(session: &SessionRecord) -> Self {
        let desktop = &session.spec.desktop;
        FilesPolicy {
            upload: desktop.file_transfer.upload(),
            download: desktop.file_transfer.download(),
            folder: FilesFolder {
                home: session.spec.home.as_ref().map(|h| h.path.clone()),
                folder: desktop.files_folder.clone(),
            },
            max_upload: desktop.max_upload.bytes(),
        }
    }
}

/// The entries of a directory in the session's files folder
///
/// Allowed unless the template's `desktop.file_transfer` is `none`. A
/// folder not made yet lists as empty. Symbolic links are listed, never
/// followed.
#[utoipa::path(
    get,
    operation_id = "listSessionFiles",
    path = "/api/v1/sessions/{id}/files",
    tag = "files",
    security(("bearer" = []), ("cookie" = [])),
    params(("id" = String, Path, description = "The session's id"), ListQuery),
    responses(
        (status = 200, description = "The directory's entries", body = FileListing),
        (status = 400, description = "`path` leaves the files folder (`..`, an absolute path) or is not valid", body = ErrorBody),
        (status = 403, description = "The template allows no file transfer, or the path goes through a symbolic link", body = ErrorBody),
        (status = 404, description = "No such session (or not yours), or no such directory", body = ErrorBody),
        (status = 409, description = "The path is a file, or the session has no agent", body = ErrorBody),
        (status = 503, description = "The agent is offline or cannot reach the session's files", body = ErrorBody),
        (status = 504, description = "The agent did not answer in time", body = ErrorBody),
    ),
)]
pub async fn list(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiPath(id): ApiPath<SessionId>,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> ApiResult<Json<FileListing>> {
    let session = visible_session(&state, &user, &id).await?;
    let policy = FilesPolicy::of(&session);
    if !policy.upload && !policy.download {
        return Err(ApiError::Forbidden(
            "file transfer is off for this session's template (desktop.file_transfer: none)".into(),
        ));
    }
    check_path(&query.path, true)?;
    let folder = policy.folder.folder.clone();
    let op = FileOp::List {
        path: query.path.clone(),
    };
    let mut channel = FileChannel::open(&state, &session, policy.folder, op).await?;
    match channel.reply().await? {
        FileReply::Listing { entries, truncated } => Ok(Json(FileListing {
            folder,
            path: query.path,
            entries,
            truncated,
        })),
        other => Err(unexpected(&other)),
    }
}

/// Download a file from the session's files folder
///
/// Streamed from the session through its agent; `path` is relative to the
/// files folder, with `/` written `%2F`. Recorded in the audit log as
/// `file.download`.
#[utoipa::path(
    get,
    operation_id = "downloadSessionFile",
    path = "/api/v1/sessions/{id}/files/{path}",
    tag = "files",
    security(("bearer" = []), ("cookie" = [])),
    params(
        ("id" = String, Path, description = "The session's id"),
        ("path" = String, Path, description = "The file, relative to the files folder (`/` as `%2F`)"),
    ),
    responses(
        (status = 200, description = "The file's bytes", content_type = "application/octet-stream", body = Vec<u8>),
        (status = 400, description = "`path` leaves the files folder (`..`, an absolute path) or is not valid", body = ErrorBody),
        (status = 403, description = "The template allows no downloads, or the path goes through a symbolic link or names something that is not a regular file", body = ErrorBody),
        (status = 404, description = "No such session (or not yours), or no such file", body = ErrorBody),
        (status = 409, description = "The path is a directory, or the session has no agent", body = ErrorBody),
        (status = 429, description = "You have too many streams open; `Retry-After` says when to try again", body = ErrorBody,
            headers(("retry-after" = u64, description = "Seconds to wait"))),
        (status = 503, description = "The agent is offline or cannot reach the session's files", body = ErrorBody),
        (status = 504, description = "The agent did not answer in time", body = ErrorBody),
    ),
)]
pub async fn download(
    State(state): State<AppState>,
    user: CurrentUser,
    client: ClientAddr,
    ApiPath((id, path)): ApiPath<(SessionId, String)>,
) -> ApiResult<Response> {
    let session = visible_session(&state, &user, &id).await?;
    let policy = FilesPolicy::of(&session);
    let audit = Transfer::new(user.actor(), client.0, &session.id, "file.download", &path);
    if !policy.download {
        audit.denied(&state).await;
        return Err(ApiError::Forbidden(
            "downloads are off for this session's template (desktop.file_transfer)".into(),
        ));
    }
    check_path(&path, false)?;
    let permit = state.streams.acquire(&user.user.id)?;
    let op = FileOp::Download { path: path.clone() };
    let mut channel = FileChannel::open(&state, &session, policy.folder, op).await?;
    let size = match channel.reply().await? {
        FileReply::Sending { size } => size,
        other => return Err(unexpected(&other)),
    };
    audit.done(&state, size).await;
    let body = Body::from_stream(permit.hold(channel.into_body(size)));
    let name = path.rsplit('/').next().unwrap_or(&path);
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_owned()),
            (header::CONTENT_LENGTH, size.to_string()),
            (header::CONTENT_DISPOSITION, attachment(name)),
            (header::CACHE_CONTROL, "no-store".to_owned()),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_owned()),
        ],
        body,
    )
        .into_response())
}

/// Upload a file into the session's files folder
///
/// The body is the file's bytes, with its `Content-Length` (at most the
/// template's `desktop.max_upload`). It is streamed to the session's agent,
/// which keeps it aside until it has arrived whole, then writes it (owned
/// by the session's user, replacing a file of that name; missing
/// directories are made). Recorded in the audit log as `file.upload`.
#[utoipa::path(
    put,
    operation_id = "uploadSessionFile",
    path = "/api/v1/sessions/{id}/files/{path}",
    tag = "files",
    security(("bearer" = []), ("cookie" = [])),
    params(
        ("id" = String, Path, description = "The session's id"),
        ("path" = String, Path, description = "Where to write, relative to the files folder (`/` as `%2F`)"),
    ),
    request_body(content = Vec<u8>, content_type = "application/octet-stream", description = "The file's bytes"),
    responses(
        (status = 201, description = "The file is in the session, whole", body = UploadedFile),
        (status = 400, description = "`path` leaves the files folder or is not valid, or the body ended early (nothing was written)", body = ErrorBody),
        (status = 403, description = "The template allows no uploads, or the path goes through a symbolic link", body = ErrorBody),
        (status = 404, description = "No such session, or not yours", body = ErrorBody),
        (status = 408, description = "The body stalled (nothing was written)", body = ErrorBody),
        (status = 409, description = "The path is a directory, or the session has no agent", body = ErrorBody),
        (status = 411, description = "No `Content-Length`", body = ErrorBody),
        (status = 413, description = "Larger than the template's `desktop.max_upload`", body = ErrorBody),
        (status = 429, description = "You have too many streams open; `Retry-After` says when to try again", body = ErrorBody,
            headers(("retry-after" = u64, description = "Seconds to wait"))),
        (status = 503, description = "The agent is offline or cannot reach the session's files", body = ErrorBody),
        (status = 504, description = "The agent did not answer in time", body = ErrorBody),
    ),
)]
pub async fn upload(
    State(state): State<AppState>,
    user: CurrentUser,
    client: ClientAddr,
    ApiPath((id, path)): ApiPath<(SessionId, String)>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<(StatusCode, Json<UploadedFile>)> {
    let session = visible_session(&state, &user, &id).await?;
    let policy = FilesPolicy::of(&session);
    let audit = Transfer::new(user.actor(), client.0, &session.id, "file.upload", &path);
    if !policy.upload {
        audit.denied(&state).await;
        return Err(ApiError::Forbidden(
            "uploads are off for this session's template (desktop.file_transfer)".into(),
        ));
    }
    check_path(&path, false)?;
    let size = content_length(&headers)?;
    if size > policy.max_upload {
        audit.denied(&state).await;
        return Err(ApiError::PayloadTooLarge(format!(
            "the file has {size} bytes; this session's template allows uploads of at most {} bytes (desktop.max_upload)",
            policy.max_upload
        )));
    }
    let _permit = state.streams.acquire(&user.user.id)?;
    let op = FileOp::Upload {
        path: path.clone(),
        size,
    };
    let mut channel = FileChannel::open(&state, &session, policy.folder, op).await?;
    match channel.reply().await? {
        FileReply::Ready => {}
        other => return Err(unexpected(&other)),
    }
    let body = body
        .into_data_stream()
        .map(|chunk| chunk.map_err(broken_body));
    channel.send(body, size).await?;
    match channel.reply().await? {
        FileReply::Written { size } => {
            audit.done(&state, size).await;
            Ok((StatusCode::CREATED, Json(UploadedFile { path, size })))
        }
        other => Err(unexpected(&other)),
    }
}

/// A path as the API takes it: relative to the files folder, no `..`.
fn check_path(path: &str, may_be_empty: bool) -> ApiResult<()> {
    if path.is_empty() && !may_be_empty {
        return Err(FieldError::new("path", "name a file in the files folder").into());
    }
    relative_path(path)
        .map(drop)
        .map_err(|why| FieldError::new("path", format!("{path:?} {why}")).into())
}

/// The upload's size, which the agent must know before the bytes come.
fn content_length(headers: &HeaderMap) -> ApiResult<u64> {
    let value = headers.get(header::CONTENT_LENGTH).ok_or_else(|| {
        ApiError::LengthRequired("send the file with a Content-Length header (not chunked)".into())
    })?;
    value
        .to_str()
        .ok()
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| FieldError::new("Content-Length", "is not a number of bytes").into())
}

/// `attachment; filename*=UTF-8''…`, so any name survives (RFC 6266).
fn attachment(name: &str) -> String {
    let mut encoded = String::new();
    for byte in name.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'.' | b'-' | b'_' => {
                encoded.push(byte as char)
            }
            _ => encoded.push_str(&format!("%{byte:02X}")),
        }
    }
    format!("attachment; filename*=UTF-8''{encoded}")
}

/// Why the upload's body did not arrive whole: it stalled past the
/// server's gap limit (408), or the client broke off (400).
fn broken_body(err: axum::Error) -> ApiError {
    match crate::error::caused_by::<crate::serve::BodyTimedOut>(&err) {
        Some(timed_out) => ApiError::RequestTimeout(format!("{timed_out}: nothing was written")),
        None => ApiError::BadRequest(format!("the upload broke off ({err}): nothing was written")),
    }
}

fn unexpected(reply: &FileReply) -> ApiError {
    ApiError::BadGateway(format!("the agent answered out of turn: {reply:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_survive_content_disposition() {
        assert_eq!(
            attachment("a b.txt"),
            "attachment; filename*=UTF-8''a%20b.txt"
        );
        assert_eq!(
            attachment("ü\";x"),
            "attachment; filename*=UTF-8''%C3%BC%22%3Bx"
        );
    }

    #[test]
    fn paths_are_checked_before_any_agent_is_asked() {
        assert!(check_path("", true).is_ok());
        assert!(check_path("", false).is_err());
        assert!(check_path("../x", false).is_err());
        assert!(check_path("a/b", false).is_ok());
        let mut headers = HeaderMap::new();
        assert!(matches!(
            content_length(&headers),
            Err(ApiError::LengthRequired(_))
        ));
        headers.insert(header::CONTENT_LENGTH, "12".parse().expect("header"));
        assert_eq!(content_length(&headers).expect("parses"), 12);
    }
}
