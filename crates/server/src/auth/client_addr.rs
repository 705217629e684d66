//! Which address a request comes from, for throttling logins per client.
//!
//! The TCP peer, unless the peer is a proxy named in `--trusted-proxies`:
//! then the rightmost address in `X-Forwarded-For` that is not itself a
//! trusted proxy. Addresses left of it were written by the client and
//! prove nothing; the rightmost untrusted one was written by a proxy we
//! trust, about the connection it received.

use crate::state::AppState;
use axum::extract::{ConnectInfo, FromRequestParts};
use http::HeaderMap;
use http::request::Parts;
pub use ipnet::IpNet;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};

/// The client's address; `None` when the server was not told the peer
/// (it always is, by `serve.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub Option<IpAddr>);

impl FromRequestParts<AppState> for ClientAddr {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Infallible> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|info| info.0.ip());
        let trusted = &state.config.trusted_proxies;
        if let Some(peer) = peer.filter(|p| untrusted_local_proxy(*p, &parts.headers, trusted)) {
            warn_once_about_proxy(peer);
        }
        Ok(ClientAddr(
            peer.map(|peer| client_address(peer, &parts.headers, trusted)),
        ))
    }
}

/// Whether `peer` looks like a reverse proxy the server was not told to
/// trust: it sends `X-Forwarded-For` from a loopback or private address.
/// (A public peer sending it is a client writing what it likes.) Behind
/// such a proxy every client counts as the proxy's address, so one of them
/// failing logins locks everyone out: usually an upgrade from before
/// `--trusted-proxies` existed.
fn untrusted_local_proxy(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> bool {
    let peer = peer.to_canonical();
    let local = match peer {
        IpAddr::V4(v4) => v4.is_loopback() || v4.is_private() || v4.is_link_local(),
        IpAddr::V6(v6) => v6.is_loopback() || v6.is_unique_local() || v6.is_unicast_link_local(),
    };
    local && headers.contains_key("x-forwarded-for") && !trusted.iter().any(|n| n.contains(&peer))
}

/// Once per process: the condition lasts, and a line per login would bury
/// the log.
fn warn_once_about_proxy(peer: IpAddr) {
    static WARNED: std::sync::Once = std::sync::Once::new();
    WARNED.call_once(|| {
        tracing::warn!(
            %peer,
            "X-Forwarded-For came from a local address that is not in --trusted-proxies: \
             if a reverse proxy sent it, every client behind it shares the proxy's address for \
             login throttling, and one client failing logins locks everyone out; start the \
             server with --trusted-proxies set to the proxy's address"
        );
    });
}

/// The client behind `peer`, walking `X-Forwarded-For` from the right
/// through trusted proxies.
pub fn client_address(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(&ip.to_canonical()));
    if !is_trusted(&peer) {
        return peer;
    }
    let hops: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    let mut client = peer;
    for hop in hops.iter().rev() {
        // A hop we cannot read ends the walk at the last proxy we trust.
        let Some(ip) = parse_hop(hop) else {
            break;
        };
        client = ip;
        if !is_trusted(&ip) {
            break;
        }
    }
    client
}

/// An address as proxies write them: `192.0.2.1`, `2001:db8::1`, and with
/// a port `192.0.2.1:443` or `[2001:db8::1]:443`.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    hop.parse::<IpAddr>()
        .ok()
        .or_else(|| hop.parse::<SocketAddr>().ok().map(|s| s.ip()))
        .map(|ip| ip.to_canonical())
}

/// Parses `--trusted-proxies`: CIDR blocks or single addresses.
pub fn parse_trusted_proxy(text: &str) -> Result<IpNet, String> {
    let text = text.trim();
    text.parse::<IpNet>()
        .or_else(|_| text.parse::<IpAddr>().map(IpNet::from))
        .map(|net| net.trunc())
        .map_err(|_| {
            format!("{text:?} is not an address or CIDR block such as 10.0.0.0/8 or 2001:db8::/32")
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(values: &[&'static str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for v in values {
            headers.append("x-forwarded-for", HeaderValue::from_static(v));
        }
        headers
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("an address")
    }

    #[test]
    fn forwarded_for_counts_only_behind_a_trusted_peer() {
        let trusted = vec![parse_trusted_proxy("10.0.0.0/8").expect("cidr")];
        let spoofed = headers(&["203.0.113.9"]);
        // An untrusted peer's header is ignored: it could say anything.
        assert_eq!(
            client_address(ip("198.51.100.1"), &spoofed, &trusted),
            ip("198.51.100.1")
        );
        assert_eq!(
            client_address(ip("10.0.0.5"), &spoofed, &trusted),
            ip("203.0.113.9")
        );
        // No header: the proxy itself.
        assert_eq!(
            client_address(ip("10.0.0.5"), &HeaderMap::new(), &trusted),
            ip("10.0.0.5")
        );
    }

    #[test]
    fn the_rightmost_untrusted_hop_is_the_client() {
        let trusted = vec![
            parse_trusted_proxy("10.0.0.0/8").expect("cidr"),
            parse_trusted_proxy("192.0.2.1").expect("address"),
        ];
        // The client wrote "1.1.1.1" itself; our proxies added the rest.
        let chain = headers(&["1.1.1.1, 203.0.113.9", "192.0.2.1, 10.1.1.1"]);
        assert_eq!(
            client_address(ip("10.0.0.5"), &chain, &trusted),
            ip("203.0.113.9")
        );
        // All trusted: the leftmost.
        let inside = headers(&["10.9.9.9, 192.0.2.1"]);
        assert_eq!(
            client_address(ip("10.0.0.5"), &inside, &trusted),
            ip("10.9.9.9")
        );
        // Garbage stops the walk at the last trusted hop.
        let garbage = headers(&["203.0.113.9, unknown, 10.1.1.1"]);
        assert_eq!(
            client_address(ip("10.0.0.5"), &garbage, &trusted),
            ip("10.1.1.1")
        );
        let ports = headers(&["[2001:db8::7]:4711"]);
        assert_eq!(
            client_address(ip("10.0.0.5"), &ports, &trusted),
            ip("2001:db8::7")
        );
    }

    #[test]
    fn an_untrusted_local_peer_sending_forwarded_for_looks_like_a_proxy() {
        let trusted = vec![parse_trusted_proxy("10.0.0.5").expect("address")];
        let forwarded = headers(&["203.0.113.9"]);
        for proxy in [
            "127.0.0.1",
            "::1",
            "10.0.0.6",
            "192.168.1.1",
            "fd00::1",
            "::ffff:172.16.0.1",
        ] {
            assert!(
                untrusted_local_proxy(ip(proxy), &forwarded, &trusted),
                "{proxy}"
            );
        }
        // Trusted, public (a client writing what it likes), or no header.
        assert!(!untrusted_local_proxy(ip("10.0.0.5"), &forwarded, &trusted));
        assert!(!untrusted_local_proxy(
            ip("198.51.100.1"),
            &forwarded,
            &trusted
        ));
        assert!(!untrusted_local_proxy(
            ip("2001:db8::1"),
            &forwarded,
            &trusted
        ));
        assert!(!untrusted_local_proxy(
            ip("127.0.0.1"),
            &HeaderMap::new(),
            &trusted
        ));
    }

    #[test]
    fn trusted_proxies_parse_with_clear_errors() {
        assert_eq!(
            parse_trusted_proxy("10.1.2.3/8").expect("cidr").to_string(),
            "10.0.0.0/8"
        );
        assert_eq!(
            parse_trusted_proxy("::1").expect("v6").to_string(),
            "::1/128"
        );
        let err = parse_trusted_proxy("10.0.0.0/33").expect_err("bad prefix");
        assert!(err.contains("CIDR"), "{err}");
    }
}
