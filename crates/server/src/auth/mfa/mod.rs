//! MFA for local accounts: TOTP (RFC 6238) and one-time recovery codes.
//!
//! - `totp`: codes, secrets, the otpauth URI and its QR code;
//! - `recovery`: recovery codes and their hashes;
//! - `guard`: the vault (`crate::vault`: TOTP secrets are sealed at rest
//!   under a key outside the database) and the wrong-code throttle;
//! - `codes`: checking a code a user sent (throttled, each used once);
//! - `challenge`: the second step of a login;
//! - `enforce`: the `mfa_required` setting (who must enrol first).
//!
//! The routes are `api/mfa.rs`; docs/MFA.md describes the whole.

pub mod challenge;
pub mod codes;
pub mod enforce;
pub mod guard;
pub mod recovery;
pub mod totp;

use std::time::Duration;
use streamspace_protocol::UserId;

/// What a user's TOTP secret is sealed for (`crate::vault`): their id, so
/// a sealed secret copied onto another user's row does not open.
pub fn totp_binding(user: &UserId) -> String {
    format!("streamspace-totp:{}", user.as_str())
}

/// How long a login challenge waits for its code.
pub const CHALLENGE_TTL: Duration = Duration::from_secs(5 * 60);
/// Open challenges per user; older ones are dropped.
pub const MAX_OPEN_CHALLENGES: i64 = 5;
/// Wrong codes one challenge takes before it is gone.
pub const MAX_ATTEMPTS: i64 = 5;
