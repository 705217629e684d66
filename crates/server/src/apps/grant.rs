//! Letting a browser into a web app without showing the app the control
//! plane's login (the pattern Coder uses for subdomain apps):
//!
//! 1. `GET /api/v1/sessions/{id}/apps/{port}` on the control plane's origin,
//!    with the login (cookie or bearer), issues a one-time ticket (60 s) and
//!    redirects to the app's `/.streamspace/auth?ticket=…&to=…`;
//! 2. there, on the app's origin, the ticket is spent for a cookie of the
//!    app's own (`streamspace_app`: HttpOnly, SameSite=Lax, host-only, in
//!    path mode limited to the app's prefix), and the browser is sent on;
//! 3. every request to the app is checked against that cookie.
//!
//! Tickets and cookies are random 256-bit secrets stored as SHA-256. A grant
//! lasts as long as its login, at most [`GRANT_TTL`], and only for one port
//! of one session.

use super::address::{AUTH_PATH, AppAddress, Mode, safe_return_path};
use crate::audit_log::{self, AuditEvent, Outcome};
use crate::auth::client_addr::ClientAddr;
use crate::auth::{CurrentUser, secrets};
use crate::error::{ApiError, ApiPath, ApiResult, ErrorBody};
use crate::state::AppState;
use crate::store::{Grant, NewGrant, SessionRecord, now_ms};
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use http::{HeaderMap, HeaderValue, header};
use serde::Deserialize;
use std::time::Duration;
use streamspace_protocol::{PortSpec, SessionId};

/// The app's own cookie.
pub const APP_COOKIE: &str = "streamspace_app";
/// How long a ticket may wait to be spent: one redirect.
const TICKET_TTL: Duration = Duration::from_secs(60);
/// The longest a grant lasts; its login may end it sooner.
const GRANT_TTL: Duration = Duration::from_secs(12 * 3600);

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct OpenQuery {
    /// Where in the app to go (a path such as `/index.html?x=1`), default `/`.
    #[serde(default)]
    to: Option<String>,
    /// `path` (`/apps/{id}/{port}/` on this origin) or `subdomain` (its own
    /// host under `--apps-domain`); default `subdomain` when that is set.
    #[serde(default)]
    mode: Option<String>,
}

/// Open a session's web app
///
/// Redirects the browser to the app with a one-time ticket, which the app's
/// origin exchanges for a cookie of its own (the control plane's login
/// never reaches the app). Path mode is for the session's owner only: the
/// app then shares the control plane's origin, and an admin's browser must
/// not run a user's scripts there.
#[utoipa::path(
    get,
    operation_id = "openSessionApp",
    path = "/api/v1/sessions/{id}/apps/{port}",
    tag = "sessions",
    security(("bearer" = []), ("cookie" = [])),
    params(
        ("id" = String, Path, description = "The session's id"),
        ("port" = u16, Path, description = "A web (`http`/`https`) port of the session's template"),
        OpenQuery,
    ),
    responses(
        (status = 302, description = "To the app, with a ticket",
            headers(("location" = String, description = "The app's ticket exchange"))),
        (status = 400, description = "Not a web port, or an unknown mode", body = ErrorBody),
        (status = 403, description = "Path mode for someone else's session", body = ErrorBody),
        (status = 404, description = "No such session, or not yours", body = ErrorBody),
        (status = 409, description = "The session is terminated or stopping", body = ErrorBody),
    ),
)]
pub async fn open(
    State(state): State<AppState>,
    ApiPath((session_id, port)): ApiPath<(SessionId, u16)>,
    Query(query): Query<OpenQuery>,
    user: CurrentUser,
    client: ClientAddr,
) -> ApiResult<Response> {
    let session = state
        .store
        .get_session(&session_id)
        .await?
        .filter(|s| user.may_access(&s.user_id))
        .ok_or_else(|| ApiError::not_found("session"))?;
    web_port(&session, port)?;
    let address = AppAddress {
        session_id,
        port,
        mode: choose_mode(&state, query.mode.as_deref())?,
    };
    if address.mode == Mode::Path && user.user.id != session.user_id {
        return Err(path_mode_is_for_owners());
    }
    let ticket = secrets::generate(secrets::SecretKind::AppTicket);
    let now = now_ms();
    let grant = NewGrant {
        ticket_hash: &secrets::hash(&ticket),
        token_hash: &user.token_hash,
        user_id: &user.user.id,
        session_id: &address.session_id,
        port,
        ticket_expires_at: now + millis(TICKET_TTL),
        expires_at: now + millis(GRANT_TTL),
    };
    state.store.create_app_grant(grant).await?;
    granted(&state, &user, client, &address).await;
    let to = safe_return_path(query.to.as_deref());
    let origin = match address.mode {
        // Relative: the browser stays on whichever name it reached us by.
        Mode::Path => String::new(),
        Mode::Subdomain => address.origin(&state.public_url, apps_domain(&state)),
    };
    let location = format!(
        "{origin}{}{AUTH_PATH}?ticket={ticket}&to={}",
        address.base(),
        url::form_urlencoded::byte_serialize(to.as_bytes()).collect::<String>()
    );
    Ok(Redirect::to(&location).into_response())
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

pub fn apps_domain(state: &AppState) -> Option<&str> {
    state.config.apps_domain.as_deref()
}

fn choose_mode(state: &AppState, asked: Option<&str>) -> ApiResult<Mode> {
    match (asked, apps_domain(state)) {
        (Some("path"), _) | (None, None) => Ok(Mode::Path),
        (Some("subdomain") | None, Some(_)) => Ok(Mode::Subdomain),
        (Some("subdomain"), None) => Err(ApiError::BadRequest(
            "subdomain mode needs the control plane started with --apps-domain".into(),
        )),
        (Some(other), _) => Err(ApiError::BadRequest(format!(
            "unknown mode {other:?}: use \"path\" or \"subdomain\""
        ))),
    }
}

pub fn path_mode_is_for_owners() -> ApiError {
    ApiError::Forbidden(
        "in path mode an app shares the control plane's origin, so only its owner may open it: \
         open it through the apps domain (--apps-domain)"
            .into(),
    )
}

/// The session's web port `port`, or why there is none.
pub fn web_port(session: &SessionRecord, port: u16) -> ApiResult<&PortSpec> {
    match session.spec.port(port) {
        Some(spec) if spec.protocol.is_web() => Ok(spec),
        Some(_) => Err(ApiError::BadRequest(format!(
            "port {port} is not a web port: open it with the VNC viewer"
        ))),
        None => Err(ApiError::NotFound(format!(
            "the session's template has no port {port}"
        ))),
    }
}

/// `viewer.grant`: a browser was let into one port of a session's web app
/// (its plain requests are not recorded one by one; its WebSockets are, as
/// `viewer.open` and `viewer.close`).
async fn granted(state: &AppState, user: &CurrentUser, client: ClientAddr, address: &AppAddress) {
    let mode = match address.mode {
        Mode::Path => "path",
        Mode::Subdomain => "subdomain",
    };
    let event = AuditEvent::new(user.actor(), "viewer.grant")
        .target(format!("session:{}", address.session_id))
        .outcome(Outcome::Success)
        .client(client.0)
        .detail(serde_json::json!({"kind": "app", "port": address.port, "mode": mode}));
    audit_log::record(state, event).await;
}

#[derive(Debug, Deserialize)]
pub struct Exchange {
    ticket: String,
    #[serde(default)]
    to: Option<String>,
}

/// Step 2, on the app's origin: the ticket for the app's cookie, then on to
/// where the user was going.
pub async fn exchange(state: &AppState, address: &AppAddress, query: Exchange) -> Response {
    if !secrets::well_formed(secrets::SecretKind::AppTicket, &query.ticket) {
        return ApiError::BadRequest("not a ticket: open the app again from StreamSpace".into())
            .into_response();
    }
    let cookie = secrets::generate(secrets::SecretKind::AppCookie);
    let redeemed = state
        .store
        .redeem_app_ticket(
            &secrets::hash(&query.ticket),
            &address.session_id,
            address.port,
            &secrets::hash(&cookie),
        )
        .await;
    match redeemed {
        Ok(true) => {}
        Ok(false) => {
            return ApiError::Unauthorized(
                "this link to the app has expired or was used: open the app again from StreamSpace"
                    .into(),
            )
            .into_response();
        }
        Err(err) => return ApiError::from(err).into_response(),
    }
    let to = format!(
        "{}{}",
        address.base(),
        safe_return_path(query.to.as_deref())
    );
    let mut response = Redirect::to(&to).into_response();
    if let Ok(value) = HeaderValue::try_from(app_cookie(state, address, &cookie)) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

/// HttpOnly (the app's scripts cannot read it), host-only (no `Domain`, so
/// no other app's host receives it), Lax so that following a link into the
/// app works, and in path mode only for the app's own prefix.
fn app_cookie(state: &AppState, address: &AppAddress, value: &str) -> String {
    let secure = if state.public_url.scheme() == "https" {
        "; Secure"
    } else {
        ""
    };
    let path = match address.mode {
        Mode::Path => format!("{}/", address.base()),
        Mode::Subdomain => "/".to_owned(),
    };
    let age = GRANT_TTL.as_secs();
    format!("{APP_COOKIE}={value}; Path={path}; HttpOnly; SameSite=Lax; Max-Age={age}{secure}")
}

/// The grant one of the request's app cookies holds for this app. Several
/// may be sent (a cookie another app tossed at a parent domain): any that
/// grants this very port of this very session will do.
pub async fn check(
    state: &AppState,
    address: &AppAddress,
    headers: &HeaderMap,
) -> ApiResult<Option<Grant>> {
    let ours = |v: &&str| secrets::well_formed(secrets::SecretKind::AppCookie, v);
    // At most a few: a request cannot make us look up hundreds.
    for value in cookie_values(headers, APP_COOKIE).filter(ours).take(4) {
        let Some(grant) = state.store.app_grant(&secrets::hash(value)).await? else {
            continue;
        };
        if grant.session_id == address.session_id && grant.port == address.port {
            return Ok(Some(grant));
        }
    }
    Ok(None)
}

/// Every value of cookie `name` in the request.
pub fn cookie_values<'a>(headers: &'a HeaderMap, name: &'a str) -> impl Iterator<Item = &'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .filter(move |(n, _)| *n == name)
        .map(|(_, v)| v)
}

impl Grant {
    /// The login behind the grant, as long-lived streams watch logins.
    pub fn login(&self) -> CurrentUser {
        CurrentUser {
            user: self.user.clone(),
            token_hash: self.token_hash.clone(),
            via_cookie: true,
        }
    }
}
