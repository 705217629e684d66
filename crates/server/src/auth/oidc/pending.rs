//! A login this browser started: the `state` that must come back, the
//! `nonce` the ID token must carry, and the PKCE verifier that proves to the
//! provider that we are the ones who asked. Kept in a cookie signed with
//! the control plane's key (HMAC-SHA256), so whichever replica the
//! provider sends the browser back to can finish the login, and a callback
//! URL handed to someone else's browser finds no cookie there to match
//! (no login CSRF).

use crate::error::ApiError;
use crate::store::now_ms;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The cookie's name. It is scoped to the OIDC routes and lives only as
/// long as a login may take.
pub const COOKIE: &str = "streamspace_oidc";
/// The path the cookie is sent to.
pub const COOKIE_PATH: &str = "/api/v1/auth/oidc";
/// A cookie longer than this is not one of ours and is not worth checking.
const MAX_COOKIE: usize = 1024;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pending {
    pub state: String,
    pub nonce: String,
    pub verifier: String,
    /// Unix milliseconds after which the login must start again.
    pub expires_at: i64,
}

impl Pending {
    /// A new login: fresh random state, nonce and verifier (256 bits each).
    pub fn start(lifetime: std::time::Duration) -> Self {
        Self {
            state: random(),
            nonce: random(),
            verifier: random(),
            expires_at: now_ms() + lifetime.as_millis() as i64,
        }
    }

    /// The PKCE challenge (S256) for the verifier.
    pub fn challenge(&self) -> String {
        URL_SAFE_NO_PAD.encode(Sha256::digest(self.verifier.as_bytes()))
    }

    /// The cookie value: the JSON, then its HMAC, both base64url.
    pub fn seal(&self, key: &[u8; 32]) -> String {
        let json = serde_json::to_vec(self).expect("a pending login serialises");
        let body = URL_SAFE_NO_PAD.encode(json);
        let tag = URL_SAFE_NO_PAD.encode(mac(key, &body).finalize().into_bytes());
        format!("{body}.{tag}")
    }

    /// The login a cookie value holds, if we signed it and it is still
    /// in time.
    pub fn open(key: &[u8; 32], value: &str) -> Result<Self, ApiError> {
        let restart = "start again from the login page";
        let forged = || {
            ApiError::BadRequest(format!(
                "the {COOKIE} cookie was not made by this server: {restart}"
            ))
        };
        if value.len() > MAX_COOKIE {
            return Err(forged());
        }
        let (body, tag) = value.split_once('.').ok_or_else(forged)?;
        let tag = URL_SAFE_NO_PAD.decode(tag).map_err(|_| forged())?;
        mac(key, body).verify_slice(&tag).map_err(|_| forged())?;
        let json = URL_SAFE_NO_PAD.decode(body).map_err(|_| forged())?;
        let pending: Pending = serde_json::from_slice(&json).map_err(|_| forged())?;
        if pending.expires_at <= now_ms() {
            return Err(ApiError::BadRequest(format!(
                "the login took longer than {} minutes: {restart}",
                super::LOGIN_WINDOW.as_secs() / 60
            )));
        }
        Ok(pending)
    }

    /// Refuses a callback whose `state` is not the one this browser's
    /// login sent (compared in constant time).
    pub fn check_state(&self, returned: &str) -> Result<(), ApiError> {
        let same = returned.len() == self.state.len()
            && returned
                .bytes()
                .zip(self.state.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0;
        if same {
            Ok(())
        } else {
            Err(ApiError::BadRequest(
                "state: the state in the callback does not match the login this browser \
                 started (tampered with, or from another browser): start again from the login page"
                    .into(),
            ))
        }
    }
}

fn mac(key: &[u8; 32], body: &str) -> Hmac<Sha256> {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC takes any key size");
    mac.update(b"streamspace-oidc-pending\0");
    mac.update(body.as_bytes());
    mac
}

fn random() -> String {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("the operating system's random source failed");
    URL_SAFE_NO_PAD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const KEY: [u8; 32] = [7; 32];

    #[test]
    fn a_sealed_login_opens_with_the_same_key_only() {
        let pending = Pending::start(Duration::from_secs(60));
        let sealed = pending.seal(&KEY);
        assert_eq!(Pending::open(&KEY, &sealed).expect("opens"), pending);
        let err = Pending::open(&[8; 32], &sealed).expect_err("another key");
        assert!(err.to_string().contains("not made by this server"), "{err}");
    }

    #[test]
    fn a_changed_cookie_is_refused() {
        let sealed = Pending::start(Duration::from_secs(60)).seal(&KEY);
        let mut other = Pending::start(Duration::from_secs(60));
        other.state = "attacker".into();
        let (_, tag) = sealed.split_once('.').expect("a dot");
        let (body, _) = other
            .seal(&KEY)
            .split_once('.')
            .map(|(b, t)| (b.to_owned(), t.to_owned()))
            .expect("a dot");
        assert!(Pending::open(&KEY, &format!("{body}.{tag}")).is_err());
        assert!(Pending::open(&KEY, "garbage").is_err());
    }

    #[test]
    fn an_expired_login_is_refused() {
        let mut pending = Pending::start(Duration::from_secs(60));
        pending.expires_at = now_ms() - 1;
        let err = Pending::open(&KEY, &pending.seal(&KEY)).expect_err("expired");
        assert!(err.to_string().contains("took longer"), "{err}");
    }

    #[test]
    fn only_the_same_state_passes() {
        let pending = Pending::start(Duration::from_secs(60));
        assert!(pending.check_state(&pending.state.clone()).is_ok());
        assert!(pending.check_state("x").is_err());
        let mut changed = pending.state.clone();
        changed.replace_range(0..1, if changed.starts_with('A') { "B" } else { "A" });
        assert!(pending.check_state(&changed).is_err());
    }

    /// The expected value computed apart, with Python's hashlib:
    /// base64url(sha256(verifier)) without padding (RFC 7636, 4.2).
    #[test]
    fn the_challenge_is_s256_of_the_verifier() {
        let mut pending = Pending::start(Duration::from_secs(60));
        pending.verifier = "dBjftJeZ4CVP-mJ0kzVTxEVCoQcx4JSGr5S8ig1uK4c".into();
        assert_eq!(
            pending.challenge(),
            "j-iei5ibXILj5eMnJCzQnexmhtop5NxwLNiGRhGQoQk"
        );
    }
}
