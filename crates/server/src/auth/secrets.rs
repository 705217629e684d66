//! Random bearer secrets and how they are stored.
//!
//! Tokens are 256 random bits, so a fast SHA-256 is enough to make a stolen
//! database useless (there is nothing to brute-force), and it keeps the check
//! on every request and every tunnel cheap. Passwords, which people choose,
//! get argon2id instead (see `password.rs`).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

/// Kinds of secret, each with a prefix so a leaked one is recognisable.
#[derive(Debug, Clone, Copy)]
pub enum SecretKind {
    /// A user's login token.
    Login,
    /// A user's named API token (`POST /api/v1/users/me/tokens`).
    ApiToken,
    /// A single-use agent enrollment token.
    Enrollment,
    /// An agent's own long-lived secret.
    Agent,
    /// A one-time ticket into a web app (`apps/grant.rs`).
    AppTicket,
    /// A web app's own cookie.
    AppCookie,
    /// The challenge between a login's password and its MFA code.
    MfaChallenge,
    /// A link that shares a session (`api/shares.rs`).
    ShareLink,
    /// What a control-plane replica proves itself with to the others
    /// (`cluster/`).
    Replica,
}

impl SecretKind {
    fn prefix(self) -> &'static str {
        match self {
            SecretKind::Login => "sst_",
            SecretKind::ApiToken => "ssp_",
            SecretKind::Enrollment => "sse_",
            SecretKind::Agent => "ssa_",
            SecretKind::AppTicket => "ssk_",
            SecretKind::AppCookie => "ssc_",
            SecretKind::MfaChallenge => "ssm_",
            SecretKind::ShareLink => "ssj_",
            SecretKind::Replica => "ssr_",
        }
    }
}

/// Whether `value` has the shape of a secret of `kind` (its prefix and 43
/// base64url characters): anything else is refused before the database is
/// asked, so requests anyone can send with made-up values cost no query.
pub fn well_formed(kind: SecretKind, value: &str) -> bool {
    value.strip_prefix(kind.prefix()).is_some_and(|rest| {
        rest.len() == 43
            && rest
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    })
}

pub fn generate(kind: SecretKind) -> String {
    let mut bytes = [0u8; 32];
    // The OS random source failing is not something to continue through.
    getrandom::fill(&mut bytes).expect("the operating system's random source failed");
    format!("{}{}", kind.prefix(), URL_SAFE_NO_PAD.encode(bytes))
}

/// The form in which a secret is stored and looked up.
pub fn hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// A random password for the bootstrap admin: 18 bytes, 24 characters.
pub fn generate_password() -> String {
    let mut bytes = [0u8; 18];
    getrandom::fill(&mut bytes).expect("the operating system's random source failed");
    URL_SAFE_NO_PAD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_our_shape_is_well_formed() {
        let ticket = generate(SecretKind::AppTicket);
        assert!(well_formed(SecretKind::AppTicket, &ticket));
        assert!(!well_formed(SecretKind::AppCookie, &ticket));
        assert!(!well_formed(
            SecretKind::AppTicket,
            &ticket[..ticket.len() - 1]
        ));
        assert!(!well_formed(SecretKind::AppTicket, "ssk_not-a-ticket"));
    }

    #[test]
    fn secrets_are_unique_prefixed_and_hash_stably() {
        let a = generate(SecretKind::Agent);
        let b = generate(SecretKind::Agent);
        assert_ne!(a, b);
        assert!(a.starts_with("ssa_") && a.len() == 4 + 43);
        assert_eq!(hash(&a), hash(&a));
        assert_ne!(hash(&a), hash(&b));
        assert_eq!(hash(&a).len(), 64);
    }
}
