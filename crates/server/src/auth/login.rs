//! Checking a username and password, for logging in and for changing one's
//! own password: throttled per username and client address, hashed within
//! the server's bound, and counted in the metrics.
//!
//! The throttle and the bound themselves are `login_guard.rs`, a part of
//! the application state; the checks need the whole state (the store, the
//! metrics) and sit above it.

use super::client_addr::ClientAddr;
use super::password::Busy;
use super::throttle::{Lockout, Scope};
use crate::error::ApiError;
use crate::state::AppState;
use crate::store::User;
use crate::store::oidc_accounts::NO_PASSWORD;
use crate::validate::{FieldError, check_username};
use http::StatusCode;
use std::time::Duration;

/// Passwords are at most this long (see `validate::check_password`); a
/// longer one cannot be right and is not worth hashing.
const MAX_PASSWORD: usize = 1024;

/// Why a password check let nobody in.
#[derive(Debug)]
pub enum Denied {
    /// The username or password is wrong (the caller words it).
    Wrong,
    /// Throttled, busy, or the store failed: answer this.
    Refused(ApiError),
}

impl From<ApiError> for Denied {
    fn from(err: ApiError) -> Self {
        Denied::Refused(err)
    }
}

/// A password that was right.
#[derive(Debug)]
pub struct Verified {
    pub user: User,
    /// The stored hash it was checked against: a token is issued only while
    /// the user still has it (see `Store::create_api_token`).
    pub password_hash: String,
}

/// The user whose password this is, if the throttle lets the attempt through.
pub async fn authenticate(
    state: &AppState,
    username: &str,
    password: String,
    client: ClientAddr,
) -> Result<Verified, Denied> {
    let metrics = &state.metrics;
    cannot_be_right(state, username, &password)?;
    let ticket = state
        .login
        .throttle
        .admit(username, client.0)
        .map_err(|lockout| {
            metrics.login_failed("throttled");
            throttled(lockout)
        })?;
    let found = state
        .store
        .user_credentials(username)
        .await
        .map_err(ApiError::from)?;
    match check(state, found, password).await? {
        Some(verified) => {
            ticket.succeeded();
            Ok(verified)
        }
        None => {
            ticket.failed();
            // One reason for unknown names and wrong passwords: /metrics is
            // public and must not tell which usernames exist.
            metrics.login_failed("bad_credentials");
            tracing::info!(username, client = ?client.0, "failed login");
            Err(Denied::Wrong)
        }
    }
}

/// Refuses, before any hashing or throttling, what cannot be right.
fn cannot_be_right(state: &AppState, username: &str, password: &str) -> Result<(), Denied> {
    if password.len() > MAX_PASSWORD {
        return Err(ApiError::BadRequest(format!(
            "the password is longer than {MAX_PASSWORD} bytes, so it cannot be right"
        ))
        .into());
    }
    // The username rule is public, so a name that breaks it cannot exist,
    // and saying so at once tells nothing. It costs no password check and
    // no throttle entry, and only valid names (63 bytes at most) reach the
    // log: a 1 MiB name per request would fill the disk.
    if check_username(username).is_err() {
        state.metrics.login_failed("bad_credentials");
        return Err(Denied::Wrong);
    }
    Ok(())
}

/// Checks `password` against the user's hash, or against a dummy one when
/// there is no such user, so both take as long.
async fn check(
    state: &AppState,
    found: Option<(User, String)>,
    password: String,
) -> Result<Option<Verified>, Denied> {
    // Single sign-on accounts have no password: checked like unknown
    // names, against the dummy hash, so they take as long and match nothing.
    let stored = found
        .as_ref()
        .map(|(_, hash)| hash.clone())
        .filter(|hash| hash != NO_PASSWORD);
    let valid = state
        .login
        .work
        .verify(password, stored)
        .await
        .map_err(|Busy| {
            state.metrics.login_failed("busy");
            busy()
        })?;
    let verified = found
        .filter(|_| valid)
        .map(|(user, password_hash)| Verified {
            user,
            password_hash,
        });
    Ok(verified)
}

/// Hashes a new password within the server's bound.
pub async fn hash_password(state: &AppState, password: String) -> Result<String, ApiError> {
    match state.login.work.hash(password).await {
        Ok(hashed) => hashed.map_err(ApiError::Internal),
        Err(Busy) => Err(busy()),
    }
}

/// The 429 of a throttled attempt (passwords and MFA codes alike).
pub fn throttled(lockout: Lockout) -> ApiError {
    let whose = match lockout.scope {
        Scope::User => "for this username",
        Scope::Address => "from your address",
    };
    let seconds = lockout.retry_after.as_secs_f64().ceil() as u64;
    let wait = humantime::format_duration(Duration::from_secs(seconds.max(1)));
    ApiError::RetryLater {
        status: StatusCode::TOO_MANY_REQUESTS,
        message: format!("too many failed logins {whose}: try again in {wait}"),
        retry_after: lockout.retry_after,
    }
}

fn busy() -> ApiError {
    ApiError::RetryLater {
        status: StatusCode::SERVICE_UNAVAILABLE,
        message: Busy.to_string(),
        retry_after: Duration::from_secs(1),
    }
}

/// Whether passwords are accepted at all (the `password_login` setting).
pub async fn password_login_on(state: &AppState) -> Result<bool, ApiError> {
    Ok(state.settings.get().await?.password_login)
}

/// Refuses a password login when the `password_login` setting is off,
/// unless `username` is the break-glass admin. Checked before the throttle
/// and the hash: the answer does not depend on the password.
pub async fn check_password_login(state: &AppState, username: &str) -> Result<(), ApiError> {
    let settings = state.settings.get().await?;
    if settings.password_login || settings.break_glass_admin.as_deref() == Some(username) {
        return Ok(());
    }
    let how = match &state.oidc {
        Some(oidc) => format!("sign in with {}", oidc.config.provider_name),
        None => "ask an admin".into(),
    };
    Err(ApiError::Forbidden(format!(
        "password login is turned off on this server: {how}"
    )))
}

/// Refuses settings that would lock everyone out: password login off
/// without single sign-on, or a break-glass admin who has no password.
pub async fn check_password_settings(
    state: &AppState,
    settings: &crate::store::Settings,
) -> Result<(), ApiError> {
    if !settings.password_login && state.oidc.is_none() {
        return Err(FieldError::new(
            "password_login",
            "can be turned off only when single sign-on is configured (--oidc-issuer, \
             see docs/OIDC.md): otherwise nobody could sign in",
        )
        .into());
    }
    if let Some(name) = &settings.break_glass_admin
        && !state.store.is_local_user(name).await?
    {
        return Err(FieldError::new(
            "break_glass_admin",
            format!(
                "{name:?} signs in with single sign-on, so has no password to break glass with"
            ),
        )
        .into());
    }
    Ok(())
}
