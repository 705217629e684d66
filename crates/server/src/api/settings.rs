//! `/api/v1/settings`: what admins change at run time (MFA policy, password
//! logins, audit retention), shared by every replica through the store.

use crate::audit_log::{self, AuditEvent, Outcome};
use crate::auth::AdminUser;
use crate::auth::client_addr::ClientAddr;
use crate::error::{ApiError, ApiJson, ApiResult, ErrorBody};
use crate::state::AppState;
use crate::store::Settings;
use axum::Json;
use axum::extract::State;

/// Audit events are kept at least a day and at most ten years.
const RETENTION_DAYS: std::ops::RangeInclusive<u32> = 1..=3650;

/// Recordings are kept by size from 1 MiB to 1 PiB.
const RECORDING_RETENTION_MIB: std::ops::RangeInclusive<u64> = 1..=(1 << 30);

/// The settings
#[utoipa::path(
    get,
    operation_id = "getSettings",
    path = "/api/v1/settings",
    tag = "settings",
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 200, description = "The settings", body = Settings),
        (status = 403, description = "Admins only", body = ErrorBody),
    ),
)]
pub async fn get(State(state): State<AppState>, _: AdminUser) -> ApiResult<Json<Settings>> {
    Ok(Json(state.store.settings().await?))
}

/// Change the settings
///
/// Replaces every setting at once (send what `GET` answered, changed).
#[utoipa::path(
    put,
    operation_id = "putSettings",
    path = "/api/v1/settings",
    tag = "settings",
    security(("bearer" = []), ("cookie" = [])),
    request_body = Settings,
    responses(
        (status = 200, description = "The settings as saved", body = Settings),
        (status = 400, description = "A setting is invalid; the message says which", body = ErrorBody),
        (status = 403, description = "Admins only", body = ErrorBody),
    ),
)]
pub async fn put(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
    client: ClientAddr,
    ApiJson(settings): ApiJson<Settings>,
) -> ApiResult<Json<Settings>> {
    check(&state, &settings).await?;
    let before = state.store.settings().await?;
    state.settings.save(&settings).await?;
    let event = AuditEvent::new(admin.actor(), "settings.update")
        .target("settings")
        .outcome(Outcome::Success)
        .client(client.0)
        .detail(serde_json::json!({ "before": before, "after": settings }));
    audit_log::record(&state, event).await;
    Ok(Json(settings))
}

async fn check(state: &AppState, settings: &Settings) -> ApiResult<()> {
    if !RETENTION_DAYS.contains(&settings.audit_retention_days) {
        return Err(ApiError::BadRequest(format!(
            "audit_retention_days must be from {} to {}",
            RETENTION_DAYS.start(),
            RETENTION_DAYS.end()
        )));
    }
    if !RETENTION_DAYS.contains(&settings.recording_retention_days) {
        return Err(ApiError::BadRequest(format!(
            "recording_retention_days must be from {} to {}",
            RETENTION_DAYS.start(),
            RETENTION_DAYS.end()
        )));
    }
    if !RECORDING_RETENTION_MIB.contains(&settings.recording_retention_mib) {
        return Err(ApiError::BadRequest(format!(
            "recording_retention_mib must be from {} to {} (MiB kept of all recordings together)",
            RECORDING_RETENTION_MIB.start(),
            RECORDING_RETENTION_MIB.end()
        )));
    }
    if let Some(name) = &settings.break_glass_admin {
        let user = state.store.user_credentials(name).await?;
        if !user.is_some_and(|(u, _)| u.is_admin()) {
            return Err(ApiError::BadRequest(format!(
                "break_glass_admin: {name:?} is not an admin: name an existing admin account"
            )));
        }
    }
    crate::auth::login::check_password_settings(state, settings).await
}
