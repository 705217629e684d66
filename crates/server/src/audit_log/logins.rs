//! Logins and logouts in the audit log, recorded the same way by every way
//! of logging in (password here; OIDC and MFA record theirs with their
//! own `method`).
//!
//! A failed login is recorded by `anonymous` (the caller proved nothing)
//! against the username it tried; only names that could exist get that
//! far, so a failed login never writes an arbitrary string. Throttled
//! (429) and busy (503) attempts are not recorded: they checked no
//! password, and the throttle already bounds what they can try.

use super::flood::ANONYMOUS;
use super::{AuditEvent, Outcome, record};
use crate::auth::CurrentUser;
use crate::auth::client_addr::ClientAddr;
use crate::state::AppState;
use serde_json::json;

/// How a login proved who it was, as `detail.method` says.
pub const PASSWORD: &str = "password";

/// A login by `username` that worked (`Success`) or did not (`Failure`).
pub async fn login(
    state: &AppState,
    username: &str,
    outcome: Outcome,
    client: ClientAddr,
    method: &str,
) {
    let actor = match outcome {
        Outcome::Success => format!("user:{username}"),
        _ => ANONYMOUS.to_owned(),
    };
    let event = AuditEvent::new(actor, "auth.login")
        .target(format!("user:{username}"))
        .outcome(outcome)
        .client(client.0)
        .detail(json!({ "method": method }));
    record(state, event).await;
}

/// A logout of this login (`auth.logout`) or of every login of the user
/// (`auth.logout_all`, with how many ended).
pub async fn logout(state: &AppState, user: &CurrentUser, client: ClientAddr, ended: Option<u64>) {
    let kind = match ended {
        Some(_) => "auth.logout_all",
        None => "auth.logout",
    };
    let mut event = AuditEvent::new(user.actor(), kind)
        .target(format!("user:{}", user.user.username))
        .outcome(Outcome::Success)
        .client(client.0);
    if let Some(ended) = ended {
        event = event.detail(json!({ "ended_logins": ended }));
    }
    record(state, event).await;
}
