//! `/api/v1/auth`: logging in (a token and the browser's cookie) and out.

use crate::audit_log::Outcome;
use crate::audit_log::logins::{self, PASSWORD};
use crate::auth::client_addr::ClientAddr;
use crate::auth::login::{Denied, Verified, authenticate, check_password_login};
use crate::auth::{COOKIE, CurrentUser, secrets};
use crate::error::{ApiError, ApiJson, ApiResult, ErrorBody};
use crate::state::AppState;
use crate::store::{User, now_ms};
use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::{StatusCode, header};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Login {
    username: String,
    password: String,
}

#[derive(Serialize, ToSchema)]
pub(super) struct LoginAnswer {
    /// Send as `Authorization: Bearer <token>`.
    token: String,
    user: User,
    #[schema(format = DateTime)]
    expires_at: String,
}

/// Log in
///
/// Answers a bearer token, and sets the same token as the HttpOnly
/// `streamspace_token` cookie for browsers. For a user with MFA on it
/// answers `{"mfa_required": true, "challenge", "expires_at"}` instead (no
/// token, no cookie): the second step is `POST /api/v1/auth/login/mfa`.
/// Failed attempts are counted per username and per client address: past a
/// few, each locks them out for twice as long as the last (429 with
/// `Retry-After`).
#[utoipa::path(
    post,
    operation_id = "login",
    path = "/api/v1/auth/login",
    tag = "auth",
    request_body = Login,
    responses(
        (status = 200, description = "Logged in; or, for a user with MFA on, no token yet but a challenge for `POST /api/v1/auth/login/mfa`", body = LoginOutcome,
            headers(("set-cookie" = String, description = "`streamspace_token=…; HttpOnly; SameSite=Strict`"))),
        (status = 401, description = "Wrong username or password", body = ErrorBody),
        (status = 403, description = "Password login is turned off (the `password_login` setting) and this is not the break-glass admin", body = ErrorBody),
        (status = 429, description = "Too many failed logins for this username or from this address; `Retry-After` says when to try again", body = ErrorBody,
            headers(("retry-after" = u64, description = "Seconds to wait"))),
        (status = 503, description = "Too many passwords are being checked; `Retry-After` says when to try again", body = ErrorBody,
            headers(("retry-after" = u64, description = "Seconds to wait"))),
    ),
)]
pub async fn login(
    State(state): State<AppState>,
    client: ClientAddr,
    ApiJson(input): ApiJson<Login>,
) -> ApiResult<Response> {
    check_password_login(&state, &input.username).await?;
    let verified = match authenticate(&state, &input.username, input.password, client).await {
        Ok(verified) => verified,
        Err(Denied::Wrong) => {
            logins::login(&state, &input.username, Outcome::Failure, client, PASSWORD).await;
            return Err(wrong());
        }
        Err(Denied::Refused(err)) => return Err(err),
    };
    if state.store.has_totp(&verified.user.id).await? {
        let opened = crate::auth::mfa::challenge::open(&state, &verified).await?;
        return Ok(Json(MfaPending::new(opened)).into_response());
    }
    logged_in(&state, verified, client, PASSWORD).await
}

/// A password that was right for a user with MFA on.
#[derive(Serialize, ToSchema)]
pub(super) struct MfaPending {
    /// Always true: send `challenge` and a code to `POST /api/v1/auth/login/mfa`.
    mfa_required: bool,
    challenge: String,
    #[schema(format = DateTime)]
    expires_at: String,
}

impl MfaPending {
    fn new(opened: crate::auth::mfa::challenge::Opened) -> Self {
        MfaPending {
            mfa_required: true,
            challenge: opened.challenge,
            expires_at: super::views::time(opened.expires_at),
        }
    }
}

/// What a right password answers: a login, or the MFA step still to do.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
#[allow(dead_code)] // only the schema: the handler answers either part itself
enum LoginOutcome {
    LoggedIn(LoginAnswer),
    MfaRequired(MfaPending),
}

/// Issues the login token and cookie of a user whose password (and code,
/// with MFA on) was right, and records the login with its `method`.
pub(super) async fn logged_in(
    state: &AppState,
    verified: Verified,
    client: ClientAddr,
    method: &str,
) -> ApiResult<Response> {
    let Some((token, expires_at)) = issue_token(state, &verified).await? else {
        // The password changed, or the user was deleted, while it was
        // being checked: it is not right any more.
        state.metrics.login_failed("bad_credentials");
        let user = &verified.user.username;
        tracing::info!(%user, "login refused: the password changed meanwhile");
        logins::login(state, user, Outcome::Failure, client, method).await;
        return Err(wrong());
    };
    state.metrics.logins.inc();
    let user = verified.user;
    logins::login(state, &user.username, Outcome::Success, client, method).await;
    tracing::info!(user = %user.username, "login");
    let ttl = state.config.token_ttl;
    let cookie = session_cookie(state, &token, ttl.as_secs());
    let answer = LoginAnswer {
        token,
        user,
        expires_at: super::views::time(expires_at),
    };
    Ok(([(header::SET_COOKIE, cookie)], Json(answer)).into_response())
}

fn wrong() -> ApiError {
    ApiError::Unauthorized("wrong username or password".into())
}

/// A new login token and when it expires, stored only while the password
/// hash that was checked is still the user's (`None` otherwise).
async fn issue_token(state: &AppState, verified: &Verified) -> ApiResult<Option<(String, i64)>> {
    let token = secrets::generate(secrets::SecretKind::Login);
    let expires_at = now_ms() + state.config.token_ttl.as_millis() as i64;
    let issued = state
        .store
        .create_api_token(
            &secrets::hash(&token),
            &verified.user.id,
            &verified.password_hash,
            expires_at,
        )
        .await?;
    Ok(issued.then_some((token, expires_at)))
}

/// Log out
///
/// The token (or cookie) stops working, and the event, VNC and log streams
/// opened with it close.
#[utoipa::path(
    post,
    operation_id = "logout",
    path = "/api/v1/auth/logout",
    tag = "auth",
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 204, description = "Logged out; the cookie is cleared",
            headers(("set-cookie" = String, description = "An expired `streamspace_token` cookie"))),
    ),
)]
pub async fn logout(
    State(state): State<AppState>,
    user: CurrentUser,
    client: ClientAddr,
) -> ApiResult<Response> {
    state.store.delete_api_token(&user.token_hash).await?;
    state.revocations.user_changed(&user.user.id);
    logins::logout(&state, &user, client, None).await;
    Ok(logged_out(&state))
}

/// Log out everywhere
///
/// Every login of yours stops working (other browsers, scripts, this one),
/// and the event, VNC and log streams opened with them close.
#[utoipa::path(
    post,
    operation_id = "logoutAll",
    path = "/api/v1/auth/logout-all",
    tag = "auth",
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 204, description = "Every login ended; the cookie is cleared",
            headers(("set-cookie" = String, description = "An expired `streamspace_token` cookie"))),
    ),
)]
pub async fn logout_all(
    State(state): State<AppState>,
    user: CurrentUser,
    client: ClientAddr,
) -> ApiResult<Response> {
    let ended = state.store.delete_user_tokens(&user.user.id, None).await?;
    state.revocations.user_changed(&user.user.id);
    logins::logout(&state, &user, client, Some(ended)).await;
    tracing::info!(user = %user.user.username, ended, "logged out everywhere");
    Ok(logged_out(&state))
}

/// 204 with an expired cookie, so the browser forgets the token.
fn logged_out(state: &AppState) -> Response {
    let cookie = session_cookie(state, "", 0);
    (StatusCode::NO_CONTENT, [(header::SET_COOKIE, cookie)]).into_response()
}

/// The browser's login cookie: HttpOnly so scripts cannot read it, and
/// SameSite=Strict so other sites cannot make requests with it.
pub(super) fn session_cookie(state: &AppState, token: &str, max_age: u64) -> String {
    let secure = if state.public_url.scheme() == "https" {
        "; Secure"
    } else {
        ""
    };
    format!("{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}")
}
