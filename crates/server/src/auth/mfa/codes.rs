//! Checking a code a user sent: a TOTP code (accepted once per time step,
//! and only for a step later than the last one accepted) or a recovery code
//! (deleted as it is used). Wrong codes are throttled per username and
//! client address with the same rules as wrong passwords.

use super::{recovery, totp};
use crate::auth::client_addr::ClientAddr;
use crate::auth::login::throttled;
use crate::error::ApiError;
use crate::state::AppState;
use crate::store::User;
use crate::validate::FieldError;

/// What kind of code proved the second factor (the audit's `method`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proof {
    Totp,
    Recovery,
}

impl Proof {
    pub fn method(self) -> &'static str {
        match self {
            Proof::Totp => "totp",
            Proof::Recovery => "recovery",
        }
    }
}

/// Why a code let nobody in.
#[derive(Debug)]
pub enum CodeDenied {
    /// Wrong, or already used: the message says which, for the answer.
    Wrong(&'static str),
    /// Malformed, throttled, or the store failed: answer this.
    Refused(ApiError),
}

impl From<ApiError> for CodeDenied {
    fn from(err: ApiError) -> Self {
        CodeDenied::Refused(err)
    }
}

impl CodeDenied {
    /// The answer to send: 401 for a wrong code, else the refusal.
    pub fn into_error(self) -> ApiError {
        match self {
            CodeDenied::Wrong(message) => ApiError::Unauthorized(message.into()),
            CodeDenied::Refused(err) => err,
        }
    }
}

const WRONG: &str = "wrong code: enter the 6 digits your authenticator app shows now, \
                     or one of your recovery codes";
const REUSED: &str = "this code has been used already: wait for the next one \
                      your authenticator app shows";

/// Checks `code` (in field `field`) as `user`'s second factor.
pub async fn verify(
    state: &AppState,
    user: &User,
    field: &str,
    code: &str,
    client: ClientAddr,
) -> Result<Proof, CodeDenied> {
    check_shape(field, code, true)?;
    throttled_check(state, user, client, async {
        if totp::looks_like_code(code) {
            check_totp(state, user, code).await
        } else {
            check_recovery(state, user, code).await
        }
    })
    .await
}

/// Checks the first code of an enrolment (`secret`, not yet on): the time
/// step it belongs to, to remember as used.
pub async fn verify_first(
    state: &AppState,
    user: &User,
    secret: &[u8],
    code: &str,
    client: ClientAddr,
) -> Result<u64, CodeDenied> {
    check_shape("code", code, false)?;
    throttled_check(state, user, client, async {
        let step = totp::matching_step(secret, code, totp::now_secs());
        Ok(step.ok_or(WRONG))
    })
    .await
}

/// Runs `check` if the throttle admits the attempt, and counts its outcome.
async fn throttled_check<T>(
    state: &AppState,
    user: &User,
    client: ClientAddr,
    check: impl Future<Output = Result<Result<T, &'static str>, ApiError>>,
) -> Result<T, CodeDenied> {
    let ticket = state
        .mfa
        .throttle
        .admit(&user.username, client.0)
        .map_err(|lockout| {
            state.metrics.login_failed("throttled");
            throttled(lockout)
        })?;
    match check.await? {
        Ok(proof) => {
            ticket.succeeded();
            Ok(proof)
        }
        Err(message) => {
            ticket.failed();
            state.metrics.login_failed("bad_code");
            tracing::info!(user = %user.username, client = ?client.0, "wrong MFA code");
            Err(CodeDenied::Wrong(message))
        }
    }
}

/// Refuses, before any throttling, what cannot be a code at all.
fn check_shape(field: &str, code: &str, recovery_too: bool) -> Result<(), CodeDenied> {
    if totp::looks_like_code(code) || (recovery_too && recovery::normalise(code).is_some()) {
        return Ok(());
    }
    let message = match recovery_too {
        true => {
            "a code is the 6 digits your authenticator app shows, or a recovery code \
             such as abcd-efgh-ijkl-mnop"
        }
        false => "a code is the 6 digits your authenticator app shows",
    };
    Err(ApiError::from(FieldError::new(field, message)).into())
}

async fn check_totp(
    state: &AppState,
    user: &User,
    code: &str,
) -> Result<Result<Proof, &'static str>, ApiError> {
    let Some(record) = state.store.totp(&user.id).await?.filter(|t| t.enabled) else {
        return Ok(Err(WRONG));
    };
    let secret = open_secret(state, user, &record.sealed_secret)?;
    let Some(step) = totp::matching_step(&secret, code, totp::now_secs()) else {
        return Ok(Err(WRONG));
    };
    match state.store.accept_totp_step(&user.id, step as i64).await? {
        true => Ok(Ok(Proof::Totp)),
        false => Ok(Err(REUSED)),
    }
}

async fn check_recovery(
    state: &AppState,
    user: &User,
    code: &str,
) -> Result<Result<Proof, &'static str>, ApiError> {
    let used = state
        .store
        .use_recovery_code(&user.id, &recovery::hash(code))
        .await?;
    Ok(if used {
        Ok(Proof::Recovery)
    } else {
        Err(WRONG)
    })
}

/// The user's TOTP secret, unsealed.
pub fn open_secret(state: &AppState, user: &User, sealed: &str) -> Result<Vec<u8>, ApiError> {
    state
        .mfa
        .vault
        .open(&super::totp_binding(&user.id), sealed)
        .map_err(|err| {
            tracing::error!(user = %user.username, error = %err, "cannot open a TOTP secret");
            ApiError::Internal(format!("cannot open your TOTP secret: {err}"))
        })
}
