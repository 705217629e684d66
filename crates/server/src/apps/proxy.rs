//! Forwarding one request to a web app and its answer back: over a pooled
//! data channel (`connector.rs`), with what must not cross removed on the
//! way (the control plane's cookies, hop-by-hop headers) and, for path
//! mode, the prefix taken off the request and put back on redirects and
//! cookies. A WebSocket upgrade becomes a byte stream between the browser
//! and the app, like a VNC tunnel.

use super::address::{AppAddress, Mode};
use super::connector::{AppClient, Target};
use super::grant::APP_COOKIE;
use crate::audit_log::viewers::{ViewerBytes, ViewerKind, ViewerOpen, ViewerRecord};
use crate::auth::COOKIE;
use crate::error::ApiError;
use crate::state::AppState;
use crate::streams::StreamPermit;
use crate::tunnel::activity::Activity;
use axum::body::Body;
use axum::response::{IntoResponse, Response};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use streamspace_protocol::SessionId;

/// Everything about the request that the forwarding needs besides itself.
pub struct Forward<'a> {
    pub client: &'a AppClient,
    pub address: &'a AppAddress,
    pub target: Target,
    pub peer: Option<SocketAddr>,
    /// `http` or `https`, as the browser reached us.
    pub scheme: &'a str,
}

/// Whether the request asks to become a WebSocket.
pub fn is_websocket<B>(request: &Request<B>) -> bool {
    let has = |name: HeaderName, token: &str| {
        request
            .headers()
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    };
    has(header::CONNECTION, "upgrade") && has(header::UPGRADE, "websocket")
}

impl Forward<'_> {
    /// Sends `request` to the app; a WebSocket it becomes is kept by `hold`.
    pub async fn send(self, mut request: Request<Body>, hold: Option<WebSocketHold>) -> Response {
        let websocket = is_websocket(&request);
        let browser_side = websocket.then(|| hyper::upgrade::on(&mut request));
        let (mut parts, body) = request.into_parts();
        let base = self.address.base();
        let path = parts
            .uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .strip_prefix(base.as_str())
            .unwrap_or("/")
            .to_owned();
        let path = if path.starts_with('/') {
            path
        } else {
            format!("/{path}")
        };
        parts.uri = match self.target.uri(&path) {
            Ok(uri) => uri,
            Err(err) => {
                return ApiError::BadRequest(format!("invalid path: {err}")).into_response();
            }
        };
        self.request_headers(&mut parts.headers, websocket, &base);
        let answer = self.client.request(Request::from_parts(parts, body)).await;
        let mut response = match answer {
            Ok(response) => response,
            Err(err) => return upstream_error(err).into_response(),
        };
        let upgraded = response.status() == StatusCode::SWITCHING_PROTOCOLS;
        if let (true, Some(browser_side), Some(hold)) = (upgraded, browser_side, hold) {
            let app_side = hyper::upgrade::on(&mut response);
            let tasks = hold.state.tasks.clone();
            tasks.spawn(async move {
                let (Ok(browser), Ok(app)) = (browser_side.await, app_side.await) else {
                    return;
                };
                hold.run(TokioIo::new(browser), TokioIo::new(app)).await;
            });
        }
        let (mut parts, body) = response.into_parts();
        response_headers(&mut parts.headers, upgraded);
        if self.address.mode == Mode::Path {
            rewrite_for_prefix(&mut parts.headers, &base);
        }
        Response::from_parts(parts, Body::new(body))
    }

    fn request_headers(&self, headers: &mut HeaderMap, websocket: bool, base: &str) {
        let upgrade = headers.get(header::UPGRADE).cloned();
        remove_hop_by_hop(headers);
        if websocket {
            headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
            if let Some(upgrade) = upgrade {
                headers.insert(header::UPGRADE, upgrade);
            }
        }
        strip_our_cookies(headers);
        if let Some(peer) = self.peer {
            let chain = match headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
                Some(before) => format!("{before}, {}", peer.ip()),
                None => peer.ip().to_string(),
            };
            set(headers, "x-forwarded-for", &chain);
        }
        set(headers, "x-forwarded-proto", self.scheme);
        if let Some(host) = headers.get(header::HOST).cloned() {
            headers.insert("x-forwarded-host", host);
        }
        if !base.is_empty() {
            set(headers, "x-forwarded-prefix", base);
        }
    }
}

fn set(headers: &mut HeaderMap, name: &'static str, value: &str) {
    if let Ok(value) = HeaderValue::from_str(value) {
        headers.insert(name, value);
    }
}

/// A client error, in the API's terms: the agent's refusal or timeout as
/// it was, anything else the app's fault (502).
fn upstream_error(err: hyper_util::client::legacy::Error) -> ApiError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&err);
    while let Some(cause) = source {
        if let Some(api) = cause.downcast_ref::<ApiError>() {
            return match api {
                ApiError::GatewayTimeout(m) => ApiError::GatewayTimeout(m.clone()),
                other => ApiError::Unavailable(other.to_string()),
            };
        }
        source = cause.source();
    }
    ApiError::BadGateway(format!("the app did not answer: {err}"))
}

/// Headers that describe one connection, not the message (RFC 9110 7.6.1).
fn remove_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::try_from(t.trim()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in [
        header::CONNECTION,
        header::PROXY_AUTHENTICATE,
        header::PROXY_AUTHORIZATION,
        header::TE,
        header::TRAILER,
        header::TRANSFER_ENCODING,
        header::UPGRADE,
    ] {
        headers.remove(name);
    }
    headers.remove("keep-alive");
    headers.remove("proxy-connection");
}

/// The app never sees the control plane's login, nor its own grant cookie.
fn strip_our_cookies(headers: &mut HeaderMap) {
    let kept: Vec<String> = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .map(str::trim)
        .filter(|pair| {
            let name = pair.split_once('=').map_or(*pair, |(n, _)| n);
            !pair.is_empty() && name != COOKIE && name != APP_COOKIE
        })
        .map(str::to_owned)
        .collect();
    headers.remove(header::COOKIE);
    if !kept.is_empty() {
        set(headers, "cookie", &kept.join("; "));
    }
}

fn response_headers(headers: &mut HeaderMap, upgraded: bool) {
    let upgrade = headers.get(header::UPGRADE).cloned();
    remove_hop_by_hop(headers);
    if upgraded {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        if let Some(upgrade) = upgrade {
            headers.insert(header::UPGRADE, upgrade);
        }
    }
    // An app may only set cookies for its own host: one with a `Domain`
    // would reach other apps (or the control plane) under that domain, and
    // ours are not its to set.
    let cookies: Vec<HeaderValue> = headers
        .get_all(header::SET_COOKIE)
        .iter()
        .filter(|v| v.to_str().is_ok_and(acceptable_cookie))
        .cloned()
        .collect();
    headers.remove(header::SET_COOKIE);
    for cookie in cookies {
        headers.append(header::SET_COOKIE, cookie);
    }
}

fn acceptable_cookie(set_cookie: &str) -> bool {
    let mut parts = set_cookie.split(';');
    let name = parts
        .next()
        .and_then(|p| p.split_once('='))
        .map_or("", |(n, _)| n.trim());
    let has_domain = parts.any(|attr| {
        attr.split_once('=')
            .map_or(attr, |(n, _)| n)
            .trim()
            .eq_ignore_ascii_case("domain")
    });
    !name.is_empty() && name != COOKIE && name != APP_COOKIE && !has_domain
}

/// Path mode: the app thinks it is at `/`, the browser knows it at
/// `base/`. Root-relative redirects and cookie paths get the prefix back.
fn rewrite_for_prefix(headers: &mut HeaderMap, base: &str) {
    if let Some(location) = headers.get(header::LOCATION).and_then(|v| v.to_str().ok())
        && location.starts_with('/')
        && !location.starts_with("//")
    {
        let prefixed = format!("{base}{location}");
        set(headers, "location", &prefixed);
    }
    let cookies: Vec<String> = headers
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(|c| prefix_cookie_path(c, base))
        .collect();
    headers.remove(header::SET_COOKIE);
    for cookie in cookies {
        if let Ok(value) = HeaderValue::from_str(&cookie) {
            headers.append(header::SET_COOKIE, value);
        }
    }
}

/// `Path=/x` → `Path={base}/x`; a cookie without a path already defaults
/// to the request's directory, which is under the prefix.
fn prefix_cookie_path(cookie: &str, base: &str) -> String {
    cookie
        .split(';')
        .map(|attr| match attr.split_once('=') {
            Some((name, value)) if name.trim().eq_ignore_ascii_case("path") => {
                format!(" Path={base}{}", value.trim())
            }
            _ => attr.to_owned(),
        })
        .collect::<Vec<_>>()
        .join(";")
}

/// What keeps an app's WebSocket: the user's place among their streams,
/// and what ends it early (their login ending, shutdown). Bytes from the
/// browser count as activity, for idle hibernation.
pub struct WebSocketHold {
    pub state: AppState,
    pub session_id: SessionId,
    pub permit: StreamPermit,
    pub revoked: Pin<Box<dyn Future<Output = ()> + Send>>,
    /// Who opened it, to which port, from where: for the audit log, which
    /// records the connection once both sides are upgraded.
    pub actor: String,
    pub port: u16,
    pub client: Option<IpAddr>,
}

impl WebSocketHold {
    async fn run<B, A>(self, browser: B, app: A)
    where
        B: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
        A: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        let WebSocketHold {
            state,
            session_id,
            permit,
            revoked,
            actor,
            port,
            client,
        } = self;
        let open = ViewerOpen {
            actor,
            session_id: &session_id,
            kind: ViewerKind::App,
            port: Some(port),
            client,
        };
        // Dropped as this ends, which records the close.
        let record = ViewerRecord::open(&state, open).await;
        let activity = Activity::default();
        tokio::select! {
            () = relay(browser, app, (&activity, &record.bytes)) => {}
            () = activity.record(&state, &session_id) => {}
            () = revoked => {}
            () = state.shutdown.cancelled() => {}
        }
        activity.flush(&state, &session_id).await;
        drop(permit);
    }
}

/// Copies both ways until either side closes, counting the bytes; bytes
/// from the browser are activity.
async fn relay<B, A>(browser: B, app: A, (activity, bytes): (&Activity, &ViewerBytes))
where
    B: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    A: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use streamspace_protocol::tunnel::read_chunk;
    use tokio::io::AsyncWriteExt;
    let (mut browser_rx, mut browser_tx) = tokio::io::split(browser);
    let (mut app_rx, mut app_tx) = tokio::io::split(app);
    let upstream = async {
        while let Ok(Some(chunk)) = read_chunk(&mut browser_rx, 64 * 1024).await {
            activity.mark();
            bytes.add_from_viewer(chunk.len());
            if app_tx.write_all(&chunk).await.is_err() {
                break;
            }
        }
    };
    let downstream = async {
        while let Ok(Some(chunk)) = read_chunk(&mut app_rx, 64 * 1024).await {
            bytes.add_to_viewer(chunk.len());
            if browser_tx.write_all(&chunk).await.is_err() {
                break;
            }
        }
    };
    tokio::select! {
        () = upstream => {}
        () = downstream => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_app_never_gets_our_cookies() {
        let mut headers = HeaderMap::new();
        headers.append(
            header::COOKIE,
            HeaderValue::from_static("a=1; streamspace_token=sst_x; streamspace_app=ssc_y"),
        );
        headers.append(header::COOKIE, HeaderValue::from_static("b=2"));
        strip_our_cookies(&mut headers);
        assert_eq!(headers.get_all(header::COOKIE).iter().count(), 1);
        assert_eq!(headers.get(header::COOKIE).expect("kept"), "a=1; b=2");
        let mut only_ours = HeaderMap::new();
        only_ours.insert(
            header::COOKIE,
            HeaderValue::from_static("streamspace_token=x"),
        );
        strip_our_cookies(&mut only_ours);
        assert!(only_ours.get(header::COOKIE).is_none());
    }

    #[test]
    fn apps_set_cookies_for_their_own_host_only() {
        assert!(acceptable_cookie("session=abc; Path=/; HttpOnly"));
        assert!(!acceptable_cookie("session=abc; Domain=example.com"));
        assert!(!acceptable_cookie(
            "session=abc; path=/; domain=.apps.example.com"
        ));
        assert!(!acceptable_cookie("streamspace_token=evil; Path=/"));
        assert!(!acceptable_cookie("streamspace_app=evil"));
    }

    #[test]
    fn path_mode_puts_the_prefix_back() {
        let mut headers = HeaderMap::new();
        headers.insert(header::LOCATION, HeaderValue::from_static("/login?x=1"));
        headers.append(header::SET_COOKIE, HeaderValue::from_static("a=1; Path=/"));
        headers.append(
            header::SET_COOKIE,
            HeaderValue::from_static("b=2; HttpOnly"),
        );
        rewrite_for_prefix(&mut headers, "/apps/s1/6080");
        assert_eq!(
            headers.get(header::LOCATION).expect("loc"),
            "/apps/s1/6080/login?x=1"
        );
        let cookies: Vec<_> = headers.get_all(header::SET_COOKIE).iter().collect();
        assert_eq!(cookies[0], "a=1; Path=/apps/s1/6080/");
        assert_eq!(cookies[1], "b=2; HttpOnly");
        let mut elsewhere = HeaderMap::new();
        elsewhere.insert(
            header::LOCATION,
            HeaderValue::from_static("//evil.example/"),
        );
        rewrite_for_prefix(&mut elsewhere, "/apps/s1/6080");
        assert_eq!(
            elsewhere.get(header::LOCATION).expect("loc"),
            "//evil.example/"
        );
    }

    #[test]
    fn hop_by_hop_headers_stay_behind() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, x-secret"),
        );
        headers.insert("x-secret", HeaderValue::from_static("1"));
        headers.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        headers.insert(header::ACCEPT, HeaderValue::from_static("text/html"));
        remove_hop_by_hop(&mut headers);
        assert_eq!(headers.len(), 1);
    }
}
