//! `/api/v1/auth/oidc` and `/api/v1/auth/providers`: signing in with the
//! configured OpenID Connect provider. `login` sends the browser to the
//! provider with a fresh state, nonce and PKCE challenge; `callback` takes
//! it back, checks everything (see `auth::oidc`), makes or updates the
//! account from the token's claims (just in time: role from the admin
//! group, groups from the groups claim) and logs the browser in.

use super::auth::session_cookie;
use crate::audit_log::{self, AuditEvent, Outcome};
use crate::auth::client_addr::ClientAddr;
use crate::auth::oidc::claims::{Identity, identity};
use crate::auth::oidc::pending::{COOKIE, COOKIE_PATH, Pending};
use crate::auth::oidc::{LOGIN_WINDOW, Oidc, id_token, not_configured};
use crate::auth::secrets;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::state::AppState;
use crate::store::{AdminChange, StoreError, User, now_ms};
use axum::Json;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::sync::Arc;
use url::Url;
use utoipa::{IntoParams, ToSchema};

/// The path the provider sends the browser back to.
pub const CALLBACK_PATH: &str = "/api/v1/auth/oidc/callback";
/// Query parameters longer than this are not from a provider.
const MAX_PARAM: usize = 4096;

#[derive(Serialize, ToSchema)]
pub struct Providers {
    /// Whether usernames and passwords are accepted (the `password_login`
    /// setting; a break-glass admin may still use one when it is off).
    password: bool,
    /// The single sign-on provider, when one is configured.
    oidc: Option<OidcProvider>,
}

#[derive(Serialize, ToSchema)]
pub struct OidcProvider {
    /// For the button: "Sign in with <name>".
    name: String,
    /// Where the button goes.
    login_url: String,
}

/// How one can sign in
///
/// Public: the login page asks it which buttons and fields to show.
#[utoipa::path(
    get,
    operation_id = "authProviders",
    path = "/api/v1/auth/providers",
    tag = "auth",
    responses((status = 200, description = "The ways to sign in", body = Providers)),
)]
pub async fn providers(State(state): State<AppState>) -> ApiResult<Json<Providers>> {
    let password = crate::auth::login::password_login_on(&state).await?;
    let oidc = state.oidc.as_ref().map(|oidc| OidcProvider {
        name: oidc.config.provider_name.clone(),
        login_url: "/api/v1/auth/oidc/login".into(),
    });
    Ok(Json(Providers { password, oidc }))
}

/// Sign in with single sign-on
///
/// Redirects the browser to the identity provider (authorization code flow
/// with PKCE) and sets a short-lived `streamspace_oidc` cookie that holds
/// the state, nonce and PKCE verifier of this login, signed by the server.
#[utoipa::path(
    get,
    operation_id = "oidcLogin",
    path = "/api/v1/auth/oidc/login",
    tag = "auth",
    responses(
        (status = 303, description = "To the identity provider",
            headers(("location" = String, description = "The provider's authorization URL"),
                    ("set-cookie" = String, description = "`streamspace_oidc=…; HttpOnly; SameSite=Lax`"))),
        (status = 404, description = "Single sign-on is not configured", body = ErrorBody),
        (status = 502, description = "The identity provider cannot be reached or is misconfigured", body = ErrorBody),
    ),
)]
pub async fn login(State(state): State<AppState>) -> ApiResult<Response> {
    let oidc = configured(&state)?;
    let discovery = oidc.provider().discovery().await?;
    let pending = Pending::start(LOGIN_WINDOW);
    let mut to = discovery.authorization_endpoint.clone();
    to.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", &oidc.config.client_id)
        .append_pair("redirect_uri", redirect_uri(&state).as_str())
        .append_pair("scope", &oidc.config.scopes.join(" "))
        .append_pair("state", &pending.state)
        .append_pair("nonce", &pending.nonce)
        .append_pair("code_challenge", &pending.challenge())
        .append_pair("code_challenge_method", "S256");
    let cookie = pending_cookie(
        &state,
        &pending.seal(oidc.cookie_key()),
        LOGIN_WINDOW.as_secs(),
    );
    Ok(see_other(to.as_str(), vec![cookie]))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Callback {
    /// The authorization code.
    code: Option<String>,
    /// Must be the state the login sent.
    state: Option<String>,
    /// The issuer (RFC 9207); when present it must be ours.
    iss: Option<String>,
    /// Set by the provider when it refused the login.
    error: Option<String>,
    error_description: Option<String>,
}

/// Back from single sign-on
///
/// Where the identity provider sends the browser. Checks the state against
/// this browser's login, trades the code for an ID token (with the PKCE
/// verifier), verifies its signature against the provider's keys and its
/// iss, aud, exp and nonce, then makes or updates the account from its
/// claims and logs in: a redirect to `/` with the `streamspace_token`
/// cookie. Refusals are a 4xx/5xx JSON error; a browser (`Accept:
/// text/html`) is sent to `/?login_error=…` instead, so the login page
/// shows the message.
#[utoipa::path(
    get,
    operation_id = "oidcCallback",
    path = "/api/v1/auth/oidc/callback",
    tag = "auth",
    params(Callback),
    responses(
        (status = 303, description = "Logged in (to `/`, with the login cookie), or, for a browser, refused (to `/?login_error=…`)",
            headers(("location" = String, description = "Where to go next"),
                    ("set-cookie" = String, description = "`streamspace_token=…` when logged in; the `streamspace_oidc` cookie cleared"))),
        (status = 400, description = "No login in progress in this browser, or the state does not match", body = ErrorBody),
        (status = 401, description = "The provider refused, or the ID token failed a check", body = ErrorBody),
        (status = 403, description = "The claims cannot make an account (no username, too many groups)", body = ErrorBody),
        (status = 404, description = "Single sign-on is not configured", body = ErrorBody),
        (status = 409, description = "The username belongs to another account", body = ErrorBody),
        (status = 502, description = "The identity provider cannot be reached or answered nonsense", body = ErrorBody),
    ),
)]
pub async fn callback(
    State(state): State<AppState>,
    client: ClientAddr,
    headers: HeaderMap,
    Query(query): Query<Callback>,
) -> Response {
    let browser = wants_html(&headers);
    let clear = pending_cookie(&state, "", 0);
    match finish(&state, &headers, query).await {
        Ok((user, token)) => {
            state.metrics.logins.inc();
            tracing::info!(user = %user.username, "single sign-on login");
            record(&state, client, Some(&user.username), Ok(())).await;
            let login = session_cookie(&state, &token, state.config.token_ttl.as_secs());
            see_other("/", vec![clear, login])
        }
        Err((username, err)) => {
            state.metrics.login_failed("sso_refused");
            tracing::info!(error = %err, client = ?client.0, "single sign-on login refused");
            record(&state, client, username.as_deref(), Err(&err)).await;
            refusal(err, browser, clear)
        }
    }
}

/// The failure of a step, with the username when the token named one.
type Failed = (Option<String>, ApiError);

async fn finish(
    state: &AppState,
    headers: &HeaderMap,
    query: Callback,
) -> Result<(User, String), Failed> {
    let anonymous = |err: ApiError| (None, err);
    let oidc = configured(state).map_err(anonymous)?;
    let claims = verified_claims(state, oidc, headers, query)
        .await
        .map_err(anonymous)?;
    let identity = identity(&oidc.config, &claims).map_err(anonymous)?;
    let named = |err: ApiError| (Some(identity.username.clone()), err);
    let (user, password_hash) = account(state, &identity).await.map_err(named)?;
    let token = secrets::generate(secrets::SecretKind::Login);
    let expires_at = now_ms() + state.config.token_ttl.as_millis() as i64;
    let store = &state.store;
    let issued = store
        .create_api_token(&secrets::hash(&token), &user.id, &password_hash, expires_at)
        .await
        .map_err(|e| named(e.into()))?;
    if !issued {
        return Err(named(ApiError::Conflict(
            "the account changed while signing in: sign in again".into(),
        )));
    }
    Ok((user, token))
}

/// The claims of the ID token the provider gives for this callback's code,
/// once the callback and the token have passed every check.
async fn verified_claims(
    state: &AppState,
    oidc: &Oidc,
    headers: &HeaderMap,
    query: Callback,
) -> ApiResult<id_token::Claims> {
    check_lengths(&query)?;
    if let Some(error) = &query.error {
        let detail = query
            .error_description
            .as_deref()
            .unwrap_or("no description");
        return Err(ApiError::Unauthorized(format!(
            "the identity provider refused the login: {error}: {detail}"
        )));
    }
    let cookie = crate::auth::cookie(headers, COOKIE).ok_or_else(|| {
        ApiError::BadRequest(format!(
            "no single sign-on login is in progress in this browser (no {COOKIE} cookie, \
             or it expired): start again from the login page"
        ))
    })?;
    let pending = Pending::open(oidc.cookie_key(), &cookie)?;
    pending.check_state(query.state.as_deref().unwrap_or_default())?;
    check_issuer(oidc, query.iss.as_deref())?;
    let code = query
        .code
        .as_deref()
        .filter(|c| !c.is_empty())
        .ok_or_else(|| {
            ApiError::BadRequest("code: the callback carries no authorization code".into())
        })?;
    let token = id_token::exchange(oidc, code, &pending.verifier, &redirect_uri(state)).await?;
    id_token::verify(oidc, &token, &pending.nonce).await
}

fn check_lengths(query: &Callback) -> ApiResult<()> {
    let fields = [
        ("code", &query.code),
        ("state", &query.state),
        ("iss", &query.iss),
        ("error", &query.error),
        ("error_description", &query.error_description),
    ];
    for (name, value) in fields {
        if value.as_ref().is_some_and(|v| v.len() > MAX_PARAM) {
            return Err(ApiError::BadRequest(format!(
                "{name}: longer than {MAX_PARAM} bytes, so not from an identity provider"
            )));
        }
    }
    Ok(())
}

/// RFC 9207: a provider that names itself in the callback must be ours,
/// so a login cannot be finished with another provider's code.
fn check_issuer(oidc: &Oidc, iss: Option<&str>) -> ApiResult<()> {
    let ours = oidc.config.issuer.as_str();
    match iss {
        Some(iss) if iss != ours && iss != ours.trim_end_matches('/') => Err(ApiError::BadRequest(
            format!("iss: the callback comes from the issuer {iss:?}, not {ours:?}"),
        )),
        _ => Ok(()),
    }
}

/// The account of this identity: found by subject and brought in step
/// with the claims, or made now. Answers it with its password hash.
async fn account(state: &AppState, identity: &Identity) -> ApiResult<(User, String)> {
    let store = &state.store;
    let (mut user, hash) = match store.oidc_account(&identity.subject).await? {
        Some(found) => found,
        None => {
            let role = identity.role.unwrap_or(crate::store::Role::User);
            match store
                .create_oidc_user(&identity.username, &identity.subject, role)
                .await
            {
                Ok(made) => {
                    tracing::info!(user = %identity.username, "single sign-on account made");
                    made
                }
                Err(StoreError::Conflict(_)) => return Err(taken(&identity.username)),
                Err(err) => return Err(err.into()),
            }
        }
    };
    sync_role(state, &mut user, identity).await?;
    store
        .replace_claimed_groups(&user.id, &identity.groups)
        .await?;
    Ok((user, hash))
}

fn taken(username: &str) -> ApiError {
    ApiError::Conflict(format!(
        "the username {username:?} belongs to another account (a local one, or another \
         identity at the provider): an admin must rename or delete that account first"
    ))
}

/// Gives the user the role their groups say, unless no admin group is
/// configured, or it would take away the last admin (kept, and logged).
async fn sync_role(state: &AppState, user: &mut User, identity: &Identity) -> ApiResult<()> {
    let Some(role) = identity.role.filter(|r| *r != user.role) else {
        return Ok(());
    };
    match state.store.set_user_role(&user.id, role).await? {
        AdminChange::Done => {
            tracing::info!(user = %user.username, role = role.as_str(), "role from the groups claim");
            user.role = role;
            state.revocations.user_changed(&user.id);
        }
        AdminChange::LastAdmin => {
            tracing::warn!(user = %user.username, "kept as admin: the last admin, though the groups claim no longer says so");
        }
        AdminChange::NoSuchUser => {
            return Err(ApiError::Conflict(
                "the account was deleted while signing in: sign in again".into(),
            ));
        }
    }
    Ok(())
}

fn configured(state: &AppState) -> ApiResult<&Arc<Oidc>> {
    state.oidc.as_ref().ok_or_else(not_configured)
}

fn redirect_uri(state: &AppState) -> Url {
    state
        .public_url
        .join(CALLBACK_PATH)
        .expect("a path joins any base URL")
}

/// The pending-login cookie: Lax, because the provider's redirect back is
/// a cross-site navigation, which does not carry Strict cookies; scoped to
/// the OIDC routes and HttpOnly.
fn pending_cookie(state: &AppState, value: &str, max_age: u64) -> String {
    let secure = match state.public_url.scheme() {
        "https" => "; Secure",
        _ => "",
    };
    format!(
        "{COOKIE}={value}; Path={COOKIE_PATH}; HttpOnly; SameSite=Lax; Max-Age={max_age}{secure}"
    )
}

fn see_other(location: &str, cookies: Vec<String>) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(location) {
        headers.insert(header::LOCATION, value);
    }
    for cookie in cookies {
        if let Ok(value) = HeaderValue::from_str(&cookie) {
            headers.append(header::SET_COOKIE, value);
        }
    }
    response
}

fn wants_html(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/html"))
}

/// A refusal: JSON for programs; for a browser, the login page with the
/// message.
fn refusal(err: ApiError, browser: bool, clear: String) -> Response {
    if !browser {
        let mut response = err.into_response();
        if let Ok(value) = HeaderValue::from_str(&clear) {
            response.headers_mut().append(header::SET_COOKIE, value);
        }
        return response;
    }
    let mut to = Url::parse("http://x/").expect("a URL");
    to.query_pairs_mut()
        .append_pair("login_error", &err.to_string());
    let location = format!("/?{}", to.query().unwrap_or_default());
    see_other(&location, vec![clear])
}

/// The `auth.login` audit event (method oidc) of a callback.
async fn record(
    state: &AppState,
    client: ClientAddr,
    username: Option<&str>,
    outcome: Result<(), &ApiError>,
) {
    let actor = username.map_or_else(|| "anonymous".to_owned(), |u| format!("user:{u}"));
    let mut event = AuditEvent::new(actor, "auth.login").client(client.0);
    if let Some(username) = username {
        event = event.target(format!("user:{username}"));
    }
    event = match outcome {
        Ok(()) => event
            .outcome(Outcome::Success)
            .detail(json!({"method": "oidc"})),
        Err(err) => event
            .outcome(Outcome::Failure)
            .detail(json!({"method": "oidc", "reason": err.to_string()})),
    };
    audit_log::record(state, event).await;
}
