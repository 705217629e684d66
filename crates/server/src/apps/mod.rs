//! Web apps: a session's `http` and `https` ports, served by the control
//! plane to the session's owner (and admins) through the same outbound data
//! channels as VNC, so nothing dials into an agent.
//!
//! - `address.rs`: where an app is (path mode `/apps/{session}/{port}/…`,
//!   subdomain mode `{session}--{port}.{apps domain}`);
//! - `grant.rs`: how a browser gets in (a ticket from the control plane's
//!   origin, a cookie of the app's own);
//! - `proxy.rs`: forwarding requests, responses and WebSocket upgrades;
//! - `connector.rs`: pooled data channels as the HTTP client's connections;
//! - `shared.rs`: what the proxy keeps between requests (the application
//!   state holds it).
//!
//! Design and limits: `docs/APPS.md`.

pub(crate) mod address;
mod connector;
pub(crate) mod grant;
mod proxy;
pub(crate) mod shared;

use crate::auth::client_addr::client_address;
use crate::auth::revoke;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use address::{AUTH_PATH, AppAddress, Mode, PATH_PREFIX, safe_return_path};
use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::any;
use connector::Target;
use http::{HeaderMap, header};
use proxy::{Forward, WebSocketHold};
use std::net::SocketAddr;
use streamspace_protocol::PortProtocol;

/// Path mode's routes, on the control plane's own origin.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/apps/{*rest}", any(by_path))
        .route("/apps", any(no_app))
}

async fn no_app() -> ApiError {
    ApiError::NotFound("no app here: web apps are at /apps/{session}/{port}/".into())
}

/// `/apps/{session}/{port}/…`.
async fn by_path(State(state): State<AppState>, request: Request) -> Response {
    let path = request.uri().path().to_owned();
    let rest = path.strip_prefix(PATH_PREFIX).unwrap_or_default();
    let mut parts = rest.splitn(3, '/');
    let (Some(session), Some(port)) = (parts.next(), parts.next()) else {
        return no_app().await.into_response();
    };
    let Ok(port) = port.parse::<u16>() else {
        return ApiError::BadRequest(format!("invalid path: {port:?} is not a port"))
            .into_response();
    };
    let address = AppAddress {
        session_id: session.into(),
        port,
        mode: Mode::Path,
    };
    if parts.next().is_none() {
        // Relative URLs in the app resolve against its directory.
        let query = request
            .uri()
            .query()
            .map(|q| format!("?{q}"))
            .unwrap_or_default();
        return Redirect::permanent(&format!("{}/{query}", address.base())).into_response();
    }
    serve(&state, &address, request).await
}

/// Subdomain mode: a request to `{session}--{port}.{apps domain}` is the
/// app's, whatever its path; any other host goes on to the control plane.
pub async fn by_host(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let domain = state.config.apps_domain.as_deref();
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok());
    match domain
        .zip(host)
        .and_then(|(d, h)| AppAddress::from_host(h, d))
    {
        Some(address) => serve(&state, &address, request).await,
        None => next.run(request).await,
    }
}

async fn serve(state: &AppState, address: &AppAddress, request: Request) -> Response {
    match serve_checked(state, address, request).await {
        Ok(response) => response,
        Err(err) => err.into_response(),
    }
}

async fn serve_checked(
    state: &AppState,
    address: &AppAddress,
    request: Request,
) -> ApiResult<Response> {
    let within = request
        .uri()
        .path()
        .strip_prefix(address.base().as_str())
        .unwrap_or_default();
    if within == AUTH_PATH {
        let exchange = axum::extract::Query::<grant::Exchange>::try_from_uri(request.uri())
            .map_err(|e| ApiError::BadRequest(format!("invalid ticket link: {e}")))?;
        return Ok(grant::exchange(state, address, exchange.0).await);
    }
    check_origin(state, address, request.headers())?;
    let Some(grant) = grant::check(state, address, request.headers()).await? else {
        return Ok(not_signed_in(state, address, &request));
    };
    let session = state
        .store
        .get_session(&address.session_id)
        .await?
        .filter(|s| grant.user.is_admin() || grant.user.id == s.user_id)
        .ok_or_else(|| ApiError::not_found("session"))?;
    if address.mode == Mode::Path && grant.user.id != session.user_id {
        return Err(grant::path_mode_is_for_owners());
    }
    let port = grant::web_port(&session, address.port)?.clone();
    let session = crate::tunnel::wake_if_needed(state, &grant.user, session).await?;
    let agent_id = session
        .agent_id
        .clone()
        .ok_or_else(|| ApiError::Conflict("session has no agent".into()))?;
    let websocket = proxy::is_websocket(&request);
    // An app's WebSocket lasts like a VNC viewer and counts like one.
    let permit = match websocket {
        true => Some(state.streams.acquire(&grant.user.id)?),
        false => None,
    };
    if state.apps.due(&session.id) {
        state.store.touch_session(&session.id).await?;
    }
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    let forward = Forward {
        client: &state.apps.client,
        address,
        target: Target {
            session_id: session.id.clone(),
            port: port.port,
            agent_id,
            tls: port.protocol == PortProtocol::Https,
        },
        peer,
        scheme: state.public_url.scheme(),
    };
    let hold = permit.map(|permit| WebSocketHold {
        state: state.clone(),
        session_id: session.id.clone(),
        permit,
        revoked: Box::pin(revoke::ended(state, &grant.login())),
        actor: format!("user:{}", grant.user.username),
        port: port.port,
        client: peer
            .map(|p| client_address(p.ip(), request.headers(), &state.config.trusted_proxies)),
    });
    Ok(forward.send(request.map(Body::new), hold).await)
}

/// No cookie for this app: a browser finding its way is sent to the
/// control plane to get one (which asks it to log in if need be); anything
/// else is told.
fn not_signed_in(state: &AppState, address: &AppAddress, request: &Request) -> Response {
    let navigating = request
        .headers()
        .get("sec-fetch-mode")
        .is_some_and(|m| m == "navigate")
        || request
            .headers()
            .get(header::ACCEPT)
            .and_then(|a| a.to_str().ok())
            .is_some_and(|a| a.contains("text/html"));
    if !navigating || request.method() != http::Method::GET {
        return ApiError::Unauthorized(format!(
            "open the app from StreamSpace first: GET /api/v1/sessions/{}/apps/{} with your login",
            address.session_id, address.port
        ))
        .into_response();
    }
    let within = request
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .strip_prefix(address.base().as_str())
        .unwrap_or("/");
    let to = safe_return_path(Some(within));
    let mode = match address.mode {
        Mode::Path => "path",
        Mode::Subdomain => "subdomain",
    };
    let public = state.public_url.origin().ascii_serialization();
    let origin = match address.mode {
        Mode::Path => String::new(),
        Mode::Subdomain => public,
    };
    let to = url::form_urlencoded::byte_serialize(to.as_bytes()).collect::<String>();
    Redirect::to(&format!(
        "{origin}/api/v1/sessions/{}/apps/{}?mode={mode}&to={to}",
        address.session_id, address.port
    ))
    .into_response()
}

/// Browsers send `Origin` on WebSockets and on every request that changes
/// something: it must be the app's own. Another app (same site in
/// subdomain mode) must not drive this one with the user's cookie.
fn check_origin(state: &AppState, address: &AppAddress, headers: &HeaderMap) -> ApiResult<()> {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return Ok(());
    };
    let own = match address.mode {
        Mode::Subdomain => {
            let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
            host.map(|h| format!("{}://{h}", state.public_url.scheme()))
        }
        Mode::Path => Some(address.origin(&state.public_url, None)),
    };
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    let same_host =
        host.is_some_and(|h| origin == format!("http://{h}") || origin == format!("https://{h}"));
    if own.as_deref() == Some(origin) || same_host {
        Ok(())
    } else {
        Err(ApiError::Forbidden(format!(
            "a request from {origin} to this app was refused: apps accept requests from their own pages only"
        )))
    }
}
