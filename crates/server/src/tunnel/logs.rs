//! `GET /api/v1/sessions/{id}/logs?tail=N&follow=true`: the session's
//! console output, streamed from its agent over a data channel.

use super::open_data_channel;
use crate::audit_log::viewers::{ViewerKind, ViewerOpen, ViewerRecord};
use crate::auth::CurrentUser;
use crate::auth::client_addr::ClientAddr;
use crate::auth::revoke;
use crate::auth::visible_session;
use crate::error::{ApiError, ApiPath, ApiQuery, ApiResult, ErrorBody};
use crate::state::AppState;
use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use http::header;
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use streamspace_protocol::{ServerMessage, SessionId};
use tokio_util::io::ReaderStream;

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct LogsQuery {
    /// Only the last N lines (default: all).
    #[serde(default)]
    tail: Option<u32>,
    /// Keep streaming new output until the client disconnects.
    #[serde(default)]
    follow: bool,
}

/// A session's console output
///
/// Streamed from its agent over a data channel; with `follow=true` it
/// continues until the client disconnects.
#[utoipa::path(
    get,
    operation_id = "getSessionLogs",
    path = "/api/v1/sessions/{id}/logs",
    tag = "sessions",
    security(("bearer" = []), ("cookie" = [])),
    params(("id" = String, Path, description = "The session's id"), LogsQuery),
    responses(
        (status = 200, description = "The console output", content_type = "text/plain", body = String),
        (status = 400, description = "A query parameter is not valid", body = ErrorBody),
        (status = 404, description = "No such session, or not yours", body = ErrorBody),
        (status = 409, description = "The session has no agent", body = ErrorBody),
        (status = 429, description = "You have too many event, log and VNC streams open; `Retry-After` says when to try again", body = ErrorBody,
            headers(("retry-after" = u64, description = "Seconds to wait"))),
        (status = 503, description = "The agent is offline or cannot reach the session", body = ErrorBody),
        (status = 504, description = "The agent did not open the data channel in time", body = ErrorBody),
    ),
)]
pub async fn logs(
    State(state): State<AppState>,
    user: CurrentUser,
    client: ClientAddr,
    ApiPath(id): ApiPath<SessionId>,
    ApiQuery(query): ApiQuery<LogsQuery>,
) -> ApiResult<Response> {
    let session = visible_session(&state, &user, &id).await?;
    let permit = state.streams.acquire(&user.user.id)?;
    let agent_id = session
        .agent_id
        .ok_or_else(|| ApiError::Conflict("the session has no agent".into()))?;
    let stream = open_data_channel(&state, &agent_id, |tunnel_id| ServerMessage::OpenLogs {
        tunnel_id,
        session_id: session.id.clone(),
        tail: query.tail,
        follow: query.follow,
    })
    .await?;
    let open = ViewerOpen {
        actor: user.actor(),
        session_id: &session.id,
        kind: ViewerKind::Logs,
        port: None,
        client: client.0,
    };
    // Held by the body: dropped (and the close recorded) when it ends.
    let record = ViewerRecord::open(&state, open).await;
    // Logout, a new password, demotion or deletion end a followed log.
    let revoked = revoke::ended(&state, &user);
    let output = ReaderStream::new(TokioIo::new(stream))
        .take_until(revoked)
        .inspect(move |chunk| {
            if let Ok(chunk) = chunk {
                record.bytes.add_to_viewer(chunk.len());
            }
        });
    let output = permit.hold(output);
    let body = Body::from_stream(output);
    Ok((
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
        .into_response())
}
