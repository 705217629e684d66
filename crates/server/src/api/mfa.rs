//! `/api/v1/users/me/mfa` and `/api/v1/auth/login/mfa`: enrolling in TOTP,
//! recovery codes, turning MFA off, and the second step of a login.

use super::auth::{LoginAnswer, logged_in};
use crate::audit_log::{self, AuditEvent, Outcome};
use crate::auth::client_addr::ClientAddr;
use crate::auth::login::{Denied, authenticate};
use crate::auth::mfa::challenge::{self, Failed, Passed};
use crate::auth::mfa::codes::{self, open_secret};
use crate::auth::mfa::{enforce, recovery, totp};
use crate::auth::{AdminUser, CurrentUser};
use crate::error::{ApiError, ApiJson, ApiPath, ApiResult, ErrorBody};
use crate::state::AppState;
use crate::store::User;
use crate::validate::FieldError;
use axum::Json;
use axum::extract::State;
use axum::response::Response;
use http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::json;
use streamspace_protocol::UserId;
use utoipa::ToSchema;

/// Longest challenge or code worth reading (both are far shorter).
const MAX_FIELD: usize = 128;

#[derive(Serialize, ToSchema)]
pub struct MfaStatus {
    /// TOTP is on: logins ask for a code.
    totp: bool,
    /// An enrolment was started and waits for its first code.
    pending: bool,
    /// Unused recovery codes.
    recovery_codes_left: i64,
    /// The `mfa_required` setting applies to you.
    required: bool,
}

/// Your MFA
#[utoipa::path(
    get,
    operation_id = "getMyMfa",
    path = "/api/v1/users/me/mfa",
    tag = "mfa",
    security(("bearer" = []), ("cookie" = [])),
    responses((status = 200, description = "Whether MFA is on", body = MfaStatus)),
)]
pub async fn status(State(state): State<AppState>, me: CurrentUser) -> ApiResult<Json<MfaStatus>> {
    let record = state.store.totp(&me.user.id).await?;
    let totp = record.as_ref().is_some_and(|r| r.enabled);
    Ok(Json(MfaStatus {
        totp,
        pending: record.is_some_and(|r| !r.enabled),
        recovery_codes_left: state.store.recovery_codes_left(&me.user.id).await?,
        required: enforce::applies_to(&state, &me.user).await?,
    }))
}

#[derive(Serialize, ToSchema)]
pub struct TotpEnrolment {
    /// The secret in base32, to type into an app by hand.
    secret: String,
    /// The `otpauth://totp/…` URI the QR code holds.
    otpauth_uri: String,
    /// The QR code of `otpauth_uri`, a standalone SVG document.
    qr_svg: String,
}

/// Start a TOTP enrolment
///
/// A new secret, its otpauth URI and QR code. TOTP turns on only once a
/// code from it is confirmed (`POST /api/v1/users/me/mfa/totp/confirm`);
/// starting again replaces a secret not yet confirmed.
#[utoipa::path(
    post,
    operation_id = "startTotp",
    path = "/api/v1/users/me/mfa/totp",
    tag = "mfa",
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 200, description = "The secret to add to an authenticator app", body = TotpEnrolment),
        (status = 409, description = "TOTP is on already, or the account has no password (single sign-on)", body = ErrorBody),
    ),
)]
pub async fn start(
    State(state): State<AppState>,
    me: CurrentUser,
) -> ApiResult<Json<TotpEnrolment>> {
    if !enforce::has_password(&state, &me.user).await? {
        return Err(ApiError::Conflict(
            "your account signs in through single sign-on, without a StreamSpace password: \
             your identity provider's own two-step verification protects it"
                .into(),
        ));
    }
    let secret = totp::new_secret();
    let sealed = state
        .mfa
        .vault
        .seal(&crate::auth::mfa::totp_binding(&me.user.id), &secret);
    if !state.store.start_totp(&me.user.id, &sealed).await? {
        return Err(ApiError::Conflict(
            "TOTP is on already: turn it off first (DELETE /api/v1/users/me/mfa) \
             to enrol another authenticator"
                .into(),
        ));
    }
    let otpauth_uri = totp::otpauth_uri(&secret, &me.user.username);
    Ok(Json(TotpEnrolment {
        secret: totp::base32(&secret),
        qr_svg: totp::qr_svg(&otpauth_uri),
        otpauth_uri,
    }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CodeInput {
    /// The 6 digits the authenticator app shows.
    code: String,
}

#[derive(Serialize, ToSchema)]
pub struct RecoveryCodes {
    /// Each works once, in place of a TOTP code. Shown only now: keep them
    /// somewhere safe.
    recovery_codes: Vec<String>,
}

/// Confirm a TOTP enrolment
///
/// The first code from the app turns TOTP on, and answers ten one-time
/// recovery codes, shown only this once.
#[utoipa::path(
    post,
    operation_id = "confirmTotp",
    path = "/api/v1/users/me/mfa/totp/confirm",
    tag = "mfa",
    security(("bearer" = []), ("cookie" = [])),
    request_body = CodeInput,
    responses(
        (status = 200, description = "TOTP is on", body = RecoveryCodes),
        (status = 400, description = "`code` is not 6 digits", body = ErrorBody),
        (status = 403, description = "The code is wrong", body = ErrorBody),
        (status = 409, description = "No enrolment was started, or TOTP is on already", body = ErrorBody),
        (status = 429, description = "Too many wrong codes; `Retry-After` says when to try again", body = ErrorBody,
            headers(("retry-after" = u64, description = "Seconds to wait"))),
    ),
)]
pub async fn confirm(
    State(state): State<AppState>,
    me: CurrentUser,
    client: ClientAddr,
    ApiJson(input): ApiJson<CodeInput>,
) -> ApiResult<Json<RecoveryCodes>> {
    let not_started = || {
        ApiError::Conflict(
            "no enrolment waits for a code: start one with POST /api/v1/users/me/mfa/totp".into(),
        )
    };
    let record = state.store.totp(&me.user.id).await?;
    let Some(record) = record.filter(|r| !r.enabled) else {
        return Err(not_started());
    };
    let secret = open_secret(&state, &me.user, &record.sealed_secret)?;
    let step = match codes::verify_first(&state, &me.user, &secret, &input.code, client).await {
        Ok(step) => step,
        Err(denied) => {
            let err = forbidden(denied.into_error());
            record_failure(&state, &me, "mfa.enroll", client, &err).await;
            return Err(err);
        }
    };
    let (codes, hashes) = recovery::new_set();
    if !state
        .store
        .enable_totp(&me.user.id, step as i64, &hashes)
        .await?
    {
        return Err(not_started());
    }
    tracing::info!(user = %me.user.username, "TOTP turned on");
    record_event(&state, &me, "mfa.enroll", client, json!({"method": "totp"})).await;
    Ok(Json(RecoveryCodes {
        recovery_codes: codes,
    }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DisableInput {
    /// Your password.
    password: String,
    /// A TOTP code, or a recovery code.
    code: String,
}

/// Turn MFA off
///
/// Needs your password and a current code (or a recovery code), both
/// checked and throttled as at login. The secret and recovery codes are
/// deleted.
#[utoipa::path(
    delete,
    operation_id = "disableMyMfa",
    path = "/api/v1/users/me/mfa",
    tag = "mfa",
    security(("bearer" = []), ("cookie" = [])),
    request_body = DisableInput,
    responses(
        (status = 204, description = "MFA is off"),
        (status = 400, description = "`password` is empty, or `code` malformed", body = ErrorBody),
        (status = 403, description = "The password or the code is wrong", body = ErrorBody),
        (status = 409, description = "MFA is not on", body = ErrorBody),
        (status = 429, description = "Too many wrong passwords or codes; `Retry-After` says when to try again", body = ErrorBody,
            headers(("retry-after" = u64, description = "Seconds to wait"))),
    ),
)]
pub async fn disable(
    State(state): State<AppState>,
    me: CurrentUser,
    client: ClientAddr,
    ApiJson(input): ApiJson<DisableInput>,
) -> ApiResult<StatusCode> {
    if !state.store.has_totp(&me.user.id).await? {
        return Err(ApiError::Conflict("MFA is not on".into()));
    }
    let proven = prove_identity(&state, &me.user, input, client).await;
    if let Err(err) = proven {
        record_failure(&state, &me, "mfa.disable", client, &err).await;
        return Err(err);
    }
    state.store.disable_totp(&me.user.id).await?;
    tracing::info!(user = %me.user.username, "MFA turned off");
    record_event(&state, &me, "mfa.disable", client, json!({})).await;
    Ok(StatusCode::NO_CONTENT)
}

/// The password and then the code, each as a login checks it.
async fn prove_identity(
    state: &AppState,
    user: &User,
    input: DisableInput,
    client: ClientAddr,
) -> ApiResult<()> {
    if input.password.is_empty() {
        return Err(FieldError::new("password", "enter your password").into());
    }
    bounded("code", &input.code)?;
    match authenticate(state, &user.username, input.password, client).await {
        Ok(verified) if verified.user.id == user.id => {}
        Ok(_) | Err(Denied::Wrong) => {
            return Err(ApiError::Forbidden(
                "the password is wrong: enter the one you sign in with".into(),
            ));
        }
        Err(Denied::Refused(err)) => return Err(err),
    }
    codes::verify(state, user, "code", &input.code, client)
        .await
        .map(|_| ())
        .map_err(|denied| forbidden(denied.into_error()))
}

/// New recovery codes
///
/// Replaces your recovery codes with ten new ones, shown only this once.
/// Needs a current TOTP code (or one of the old recovery codes).
#[utoipa::path(
    post,
    operation_id = "newRecoveryCodes",
    path = "/api/v1/users/me/mfa/recovery-codes",
    tag = "mfa",
    security(("bearer" = []), ("cookie" = [])),
    request_body = CodeInput,
    responses(
        (status = 200, description = "The new codes; the old ones no longer work", body = RecoveryCodes),
        (status = 400, description = "`code` is malformed", body = ErrorBody),
        (status = 403, description = "The code is wrong", body = ErrorBody),
        (status = 409, description = "MFA is not on", body = ErrorBody),
        (status = 429, description = "Too many wrong codes; `Retry-After` says when to try again", body = ErrorBody,
            headers(("retry-after" = u64, description = "Seconds to wait"))),
    ),
)]
pub async fn new_recovery_codes(
    State(state): State<AppState>,
    me: CurrentUser,
    client: ClientAddr,
    ApiJson(input): ApiJson<CodeInput>,
) -> ApiResult<Json<RecoveryCodes>> {
    if !state.store.has_totp(&me.user.id).await? {
        return Err(ApiError::Conflict(
            "MFA is not on: enrol first (POST /api/v1/users/me/mfa/totp)".into(),
        ));
    }
    bounded("code", &input.code)?;
    if let Err(denied) = codes::verify(&state, &me.user, "code", &input.code, client).await {
        let err = forbidden(denied.into_error());
        record_failure(&state, &me, "mfa.recovery_codes", client, &err).await;
        return Err(err);
    }
    let (codes, hashes) = recovery::new_set();
    state
        .store
        .replace_recovery_codes(&me.user.id, &hashes)
        .await?;
    record_event(&state, &me, "mfa.recovery_codes", client, json!({})).await;
    Ok(Json(RecoveryCodes {
        recovery_codes: codes,
    }))
}

/// Turn a user's MFA off (admin)
///
/// For a user who lost both their authenticator and their recovery codes:
/// they log in with their password alone again (and must enrol again if
/// the `mfa_required` setting applies to them).
#[utoipa::path(
    delete,
    operation_id = "resetUserMfa",
    path = "/api/v1/users/{id}/mfa",
    tag = "mfa",
    security(("bearer" = []), ("cookie" = [])),
    params(("id" = String, Path, description = "The user's id")),
    responses(
        (status = 204, description = "The user's MFA is off"),
        (status = 403, description = "Not an admin", body = ErrorBody),
        (status = 404, description = "No such user, or MFA is not on for them", body = ErrorBody),
    ),
)]
pub async fn reset(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
    client: ClientAddr,
    ApiPath(id): ApiPath<UserId>,
) -> ApiResult<StatusCode> {
    let user = state.store.get_user(&id).await?;
    let Some(user) = user else {
        return Err(ApiError::not_found("user"));
    };
    if !state.store.disable_totp(&user.id).await? {
        return Err(ApiError::NotFound(format!(
            "MFA is not on for {}",
            user.username
        )));
    }
    tracing::info!(admin = %admin.user.username, user = %user.username, "MFA reset");
    let event = AuditEvent::new(admin.actor(), "mfa.disable")
        .target(format!("user:{}", user.username))
        .outcome(Outcome::Success)
        .client(client.0)
        .detail(json!({"by_admin": true}));
    audit_log::record(&state, event).await;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MfaLogin {
    /// The `challenge` the password step answered.
    challenge: String,
    /// A TOTP code, or a recovery code.
    code: String,
}

/// Log in: the second step
///
/// After `POST /api/v1/auth/login` answered `mfa_required`, send its
/// challenge with a code from the authenticator app (or a recovery code).
/// Answers as a login does. A challenge lives 5 minutes, serves one login,
/// and ends after 5 wrong codes; wrong codes are throttled per username and
/// address like wrong passwords, and each TOTP code works once.
#[utoipa::path(
    post,
    operation_id = "loginMfa",
    path = "/api/v1/auth/login/mfa",
    tag = "auth",
    request_body = MfaLogin,
    responses(
        (status = 200, description = "Logged in", body = LoginAnswer,
            headers(("set-cookie" = String, description = "`streamspace_token=…; HttpOnly; SameSite=Strict`"))),
        (status = 400, description = "`code` is malformed", body = ErrorBody),
        (status = 401, description = "The code is wrong or used, or the challenge expired or was used", body = ErrorBody),
        (status = 429, description = "Too many wrong codes for this username or from this address; `Retry-After` says when to try again", body = ErrorBody,
            headers(("retry-after" = u64, description = "Seconds to wait"))),
    ),
)]
pub async fn login(
    State(state): State<AppState>,
    client: ClientAddr,
    ApiJson(input): ApiJson<MfaLogin>,
) -> ApiResult<Response> {
    bounded("challenge", &input.challenge)?;
    bounded("code", &input.code)?;
    match challenge::complete(&state, &input.challenge, &input.code, client).await {
        Ok(passed) => finish_login(&state, passed, client).await,
        Err(Failed { username, error }) if !checked_nothing(&error) => {
            let target = username.map(|u| format!("user:{u}"));
            let method = match totp::looks_like_code(&input.code) {
                true => "totp",
                false => "recovery",
            };
            let mut event = AuditEvent::new("anonymous", "auth.login")
                .outcome(Outcome::Failure)
                .client(client.0)
                .detail(json!({"method": method, "reason": error.to_string()}));
            if let Some(target) = target {
                event = event.target(target);
            }
            audit_log::record(&state, event).await;
            Err(error)
        }
        Err(Failed { error, .. }) => Err(error),
    }
}

async fn finish_login(state: &AppState, passed: Passed, client: ClientAddr) -> ApiResult<Response> {
    let Passed { verified, proof } = passed;
    logged_in(state, verified, client, proof.method()).await
}

/// 403 for a wrong code from a logged-in user (their login is fine; the
/// code is not), else the error as it is.
fn forbidden(err: ApiError) -> ApiError {
    match err {
        ApiError::Unauthorized(message) => ApiError::Forbidden(message),
        other => other,
    }
}

fn bounded(field: &str, value: &str) -> Result<(), FieldError> {
    if value.len() > MAX_FIELD {
        return Err(FieldError::new(
            field,
            format!("is longer than {MAX_FIELD} bytes, so it cannot be right"),
        ));
    }
    Ok(())
}

async fn record_event(
    state: &AppState,
    me: &CurrentUser,
    kind: &str,
    client: ClientAddr,
    detail: serde_json::Value,
) {
    record(state, me, kind, Outcome::Success, client, detail).await;
}

/// Records a refused attempt: a wrong password or code, or a throttled one.
/// Malformed input (a 400) checked nothing and is not recorded.
async fn record_failure(
    state: &AppState,
    me: &CurrentUser,
    kind: &str,
    client: ClientAddr,
    err: &ApiError,
) {
    if checked_nothing(err) {
        return;
    }
    let detail = json!({"reason": err.to_string()});
    record(state, me, kind, Outcome::Failure, client, detail).await;
}

fn checked_nothing(err: &ApiError) -> bool {
    matches!(err, ApiError::Field(_) | ApiError::BadRequest(_))
}

async fn record(
    state: &AppState,
    me: &CurrentUser,
    kind: &str,
    outcome: Outcome,
    client: ClientAddr,
    detail: serde_json::Value,
) {
    let event = AuditEvent::new(me.actor(), kind)
        .target(format!("user:{}", me.user.username))
        .outcome(outcome)
        .client(client.0)
        .detail(detail);
    audit_log::record(state, event).await;
}
