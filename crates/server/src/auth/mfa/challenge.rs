//! The two-step login. A right password for a user with TOTP opens a
//! challenge instead of issuing a token: a random secret, stored only as
//! its SHA-256, living `CHALLENGE_TTL`, a few per user at most. The second
//! step sends it back with a code; a right code uses the challenge up (one
//! token per challenge, even if two requests race), `MAX_ATTEMPTS` wrong
//! ones end it. The challenge remembers the password hash that was checked,
//! so a password changed in between leaves it no token.

use super::codes::{self, CodeDenied, Proof};
use super::{CHALLENGE_TTL, MAX_ATTEMPTS, MAX_OPEN_CHALLENGES};
use crate::auth::client_addr::ClientAddr;
use crate::auth::login::Verified;
use crate::auth::secrets::{self, SecretKind};
use crate::error::ApiError;
use crate::state::AppState;
use crate::store::{MfaChallenge, StoreError, now_ms};

/// A challenge opened: its secret (for the client) and expiry.
pub struct Opened {
    pub challenge: String,
    pub expires_at: i64,
}

/// Opens a challenge for a user whose password was right.
pub async fn open(state: &AppState, verified: &Verified) -> Result<Opened, StoreError> {
    let challenge = secrets::generate(SecretKind::MfaChallenge);
    let expires_at = now_ms() + CHALLENGE_TTL.as_millis() as i64;
    let record = MfaChallenge {
        user_id: verified.user.id.clone(),
        password_hash: verified.password_hash.clone(),
        expires_at,
    };
    state
        .store
        .create_mfa_challenge(&secrets::hash(&challenge), &record, MAX_OPEN_CHALLENGES)
        .await?;
    Ok(Opened {
        challenge,
        expires_at,
    })
}

/// The user a challenge was opened for and what proved their code.
pub struct Passed {
    pub verified: Verified,
    pub proof: Proof,
}

/// Why the second step failed, with the user it was for when known (for
/// the audit trail).
pub struct Failed {
    pub username: Option<String>,
    pub error: ApiError,
}

const GONE: &str = "this login has expired or was already used: \
                    log in again with your username and password";

/// Checks `code` against the challenge `challenge` and uses it up.
pub async fn complete(
    state: &AppState,
    challenge: &str,
    code: &str,
    client: ClientAddr,
) -> Result<Passed, Failed> {
    let gone = |username: Option<String>| Failed {
        username,
        error: ApiError::Unauthorized(GONE.into()),
    };
    // A made-up challenge costs no query.
    if !secrets::well_formed(SecretKind::MfaChallenge, challenge) {
        return Err(gone(None));
    }
    let hash = secrets::hash(challenge);
    let found = state
        .store
        .mfa_challenge(&hash)
        .await
        .map_err(failed(None))?;
    let Some(found) = found else {
        return Err(gone(None));
    };
    let user = state.store.get_user(&found.user_id).await;
    let Some(user) = user.map_err(failed(None))? else {
        return Err(gone(None));
    };
    let name = Some(user.username.clone());
    let proof = match codes::verify(state, &user, "code", code, client).await {
        Ok(proof) => proof,
        Err(denied) => return Err(wrong(state, &hash, name, denied).await),
    };
    if !state
        .store
        .consume_mfa_challenge(&hash)
        .await
        .map_err(failed(name.clone()))?
    {
        return Err(gone(name));
    }
    let verified = Verified {
        user,
        password_hash: found.password_hash,
    };
    Ok(Passed { verified, proof })
}

/// Counts a wrong code against the challenge (not a malformed one, nor a
/// throttled attempt, which checked nothing).
async fn wrong(
    state: &AppState,
    hash: &str,
    username: Option<String>,
    denied: CodeDenied,
) -> Failed {
    if let CodeDenied::Wrong(_) = denied
        && let Err(err) = state.store.mfa_challenge_failed(hash, MAX_ATTEMPTS).await
    {
        return failed(username)(err);
    }
    Failed {
        username,
        error: denied.into_error(),
    }
}

fn failed(username: Option<String>) -> impl FnOnce(StoreError) -> Failed {
    move |err| Failed {
        username,
        error: ApiError::from(err),
    }
}
