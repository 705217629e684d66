//! When a viewer is recorded (the template requires it, or the admin
//! setting records every session), and starting its recording: refused
//! with 503 when it cannot start, audited when it does.

use super::{Recorder, start};
use crate::audit_log::{AuditEvent, Outcome};
use crate::auth::CurrentUser;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use crate::store::SessionRecord;
use streamspace_protocol::desktop::RecordingPolicy;

/// Whether `session`'s viewers are recorded: the admin setting records
/// every session; a template can require it (`desktop.recording`).
pub async fn required(state: &AppState, session: &SessionRecord) -> ApiResult<bool> {
    if session.spec.desktop.recording == RecordingPolicy::Required {
        return Ok(true);
    }
    Ok(state.settings.get().await?.record_all_sessions)
}

/// The recorder for a viewer of `session` if it must be recorded, the
/// start audited (`recording.start`). A recording that cannot start
/// refuses the viewer (503): a required recording is never skipped.
pub async fn for_viewer(
    state: &AppState,
    session: &SessionRecord,
    user: &CurrentUser,
    client: Option<std::net::IpAddr>,
) -> ApiResult<Option<Recorder>> {
    if !required(state, session).await? {
        return Ok(None);
    }
    let recordings = state.recordings.clone();
    let (id, actor) = (session.id.clone(), user.actor());
    let started = tokio::task::spawn_blocking(move || start(&recordings, &id, &actor))
        .await
        .map_err(|err| ApiError::Internal(format!("recording start failed: {err}")))?;
    let (recorder, info) = started
        .map_err(|err| ApiError::Unavailable(format!("this session is recorded, and {err}")))?;
    let event = AuditEvent::new(user.actor(), "recording.start")
        .target(format!("session:{}", session.id))
        .outcome(Outcome::Success)
        .client(client)
        .detail(serde_json::json!({ "recording": info.id }));
    crate::audit_log::record(state, event).await;
    Ok(Some(recorder))
}
