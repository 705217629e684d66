//! StreamSpace agent runtime: everything an agent does that does not depend
//! on its platform.
//!
//! - `confinement`: the pids limit and capabilities every platform applies
//! - `cpu`: CPU use from cumulative CPU time, for heartbeats
//! - `errors`: a platform error's chain of causes as one message
//! - `health`: the platform's health, checked within a deadline for every
//!   heartbeat
//! - `homes`: which home a session mounts, and whether a user keeps the one
//!   from before homes were keyed by ids (each platform a `HomeStore`)
//! - `identity`: enroll once, then authenticate with the saved secret
//! - `intent`: what the agent last asked of each session, so a platform
//!   tells its own stops and deletions from ones done to it
//! - `runtime`: the control channel, reconnected with backoff, heartbeats
//! - `executor`, `queue`: commands, deduplicated by id, run in arrival
//!   order by one worker per session
//! - `prepull`: pulling a template's image when the control plane asks
//! - `pulls`: image pull progress as people read it, rate-limited
//! - `readiness`: a session is Running when its VNC server says hello
//! - `reports`: a platform's watcher sends only changes
//! - `tunnel`: per-tunnel data channels dialed back to the control plane,
//!   spliced in the kernel (`streamspace-splice`) when both ends are TCP
//! - `files`: file transfer in a session's files folder on a data channel,
//!   and the bit of tar the platforms move files in
//! - `platform`: the trait each platform (Docker, Kubernetes) implements

mod backoff;
pub mod confinement;
pub mod cpu;
pub mod errors;
mod executor;
#[cfg(test)]
mod fake;
pub mod files;
pub mod health;
pub mod homes;
mod identity;
pub mod intent;
pub mod platform;
mod prepull;
pub mod pulls;
mod queue;
mod readiness;
pub mod reports;
mod runtime;
mod tls;
mod tunnel;
mod web;

pub use backoff::Backoff;
pub use identity::{Enrollment, Identity};
pub use platform::{OrNotFound, Platform, PlatformError, PlatformResult, SessionStream};
pub use runtime::run;
pub use tls::{ClientTls, explain as explain_tls_error};

use url::Url;

/// The agent's version, sent in `hello`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// `path` on the control plane; with `websocket`, as a `ws(s)://` URL.
fn endpoint(base: &Url, path: &str, websocket: bool) -> Url {
    let mut url = base.clone();
    let prefix = url.path().trim_end_matches('/').to_owned();
    url.set_path(&format!("{prefix}{path}"));
    if websocket {
        let scheme = if base.scheme() == "https" {
            "wss"
        } else {
            "ws"
        };
        // http(s) → ws(s) keeps the URL special, which `set_scheme` allows.
        let _ = url.set_scheme(scheme);
    }
    url
}

/// The `error` field of a control-plane error body, or the body itself.
fn error_message(body: &str) -> String {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("error")?.as_str().map(str::to_owned))
        .unwrap_or_else(|| body.trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_keep_a_path_prefix() {
        let base = Url::parse("https://example.com/streamspace/").expect("url");
        assert_eq!(
            endpoint(&base, "/api/v1/agents/connect", true).as_str(),
            "wss://example.com/streamspace/api/v1/agents/connect"
        );
        let plain = Url::parse("http://127.0.0.1:8080").expect("url");
        assert_eq!(
            endpoint(&plain, "/api/v1/agents/register", false).as_str(),
            "http://127.0.0.1:8080/api/v1/agents/register"
        );
    }

    #[test]
    fn error_messages_are_unwrapped() {
        assert_eq!(error_message(r#"{"error":"bad token"}"#), "bad token");
        assert_eq!(error_message("plain text\n"), "plain text");
    }
}
