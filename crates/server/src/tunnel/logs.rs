//! `GET /api/v1/sessions/{id}/logs?tail=N&follow=true`: the session's
//! console output, streamed from its agent over a data channel.

use super::open_data_channel;
use crate::api::visible_session;
use crate::auth::CurrentUser;
use crate::error::{ApiError, ApiQuery, ApiResult};
use crate::state::AppState;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use http::header;
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use streamspace_protocol::ServerMessage;
use tokio_util::io::ReaderStream;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogsQuery {
    /// Only the last N lines (default: all).
    #[serde(default)]
    tail: Option<u32>,
    /// Keep streaming new output until the client disconnects.
    #[serde(default)]
    follow: bool,
}

pub async fn logs(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(id): Path<String>,
    ApiQuery(query): ApiQuery<LogsQuery>,
) -> ApiResult<Response> {
    let session = visible_session(&state, &user, &id).await?;
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
    let body = Body::from_stream(ReaderStream::new(TokioIo::new(stream)));
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
