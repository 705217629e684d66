//! The viewer's WebSocket, driven by the tunnel itself over the upgraded
//! connection.
//!
//! Why not axum's `WebSocket`: tungstenite copies every outgoing payload
//! into its own buffer and, after each partial socket write, moves the
//! unsent rest to the front; under bulk traffic that memmove was a quarter
//! of the control plane's CPU (docs/benchmarks.md). A tunnel needs little of
//! WebSocket: binary frames out (header and payload in one vectored write),
//! data frames in (unmasked and forwarded as they arrive, whatever their
//! size or fragmentation), pong for ping, close for close. Frame headers and
//! the accept key are tungstenite's.

#[cfg(test)]
mod conformance;
mod frames;

pub use frames::{Decoder, Incoming, frame_header, write_frame};

use crate::error::ApiError;
use axum::body::Body;
use axum::extract::FromRequestParts;
use axum::response::Response;
use http::request::Parts;
use http::{HeaderMap, Method, StatusCode, header};
use hyper::upgrade::OnUpgrade;

/// The one subprotocol we speak (noVNC asks for it): raw RFB in binary
/// frames.
const PROTOCOL: &str = "binary";

/// A valid WebSocket handshake (RFC 6455 §4.2.1), not yet answered.
pub struct Handshake {
    accept: String,
    binary: bool,
    on_upgrade: OnUpgrade,
}

impl<S: Send + Sync> FromRequestParts<S> for Handshake {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let bad = |what: &str| ApiError::BadRequest(format!("not a WebSocket handshake: {what}"));
        if parts.method != Method::GET {
            return Err(bad("the method must be GET"));
        }
        let headers = &parts.headers;
        if !has_token(headers, header::CONNECTION, "upgrade") {
            return Err(bad("send Connection: Upgrade"));
        }
        if !has_token(headers, header::UPGRADE, "websocket") {
            return Err(bad("send Upgrade: websocket"));
        }
        if headers
            .get(header::SEC_WEBSOCKET_VERSION)
            .map(|v| v.as_bytes())
            != Some(b"13")
        {
            return Err(bad("send Sec-WebSocket-Version: 13"));
        }
        let key = headers
            .get(header::SEC_WEBSOCKET_KEY)
            .ok_or_else(|| bad("send a Sec-WebSocket-Key"))?;
        let accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
        let binary = has_token(headers, header::SEC_WEBSOCKET_PROTOCOL, PROTOCOL);
        let on_upgrade = parts
            .extensions
            .remove::<OnUpgrade>()
            .ok_or_else(|| bad("this connection cannot be upgraded (HTTP/1.1 needed)"))?;
        Ok(Handshake {
            accept,
            binary,
            on_upgrade,
        })
    }
}

impl Handshake {
    /// The `101 Switching Protocols` answer, and the upgraded connection
    /// it leads to once the client has read it.
    pub fn accept(self) -> (Response, OnUpgrade) {
        let mut response = Response::new(Body::empty());
        *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let headers = response.headers_mut();
        headers.insert(
            header::CONNECTION,
            header::HeaderValue::from_static("upgrade"),
        );
        headers.insert(
            header::UPGRADE,
            header::HeaderValue::from_static("websocket"),
        );
        if let Ok(accept) = self.accept.parse() {
            headers.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
        }
        if self.binary {
            let protocol = header::HeaderValue::from_static(PROTOCOL);
            headers.insert(header::SEC_WEBSOCKET_PROTOCOL, protocol);
        }
        (response, self.on_upgrade)
    }
}

/// Whether a comma-separated header lists `token` (case-insensitively, as
/// `Connection: keep-alive, Upgrade` does).
fn has_token(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, header::HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn tokens_are_found_in_lists_and_across_repeated_headers() {
        let h = headers(&[("connection", "keep-alive, Upgrade")]);
        assert!(has_token(&h, header::CONNECTION, "upgrade"));
        let h = headers(&[
            ("sec-websocket-protocol", "base64"),
            ("sec-websocket-protocol", " binary "),
        ]);
        assert!(has_token(&h, header::SEC_WEBSOCKET_PROTOCOL, PROTOCOL));
        let h = headers(&[("sec-websocket-protocol", "binaryx, base64")]);
        assert!(!has_token(&h, header::SEC_WEBSOCKET_PROTOCOL, PROTOCOL));
    }
}
