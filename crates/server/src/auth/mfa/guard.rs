//! What every MFA check shares, held by the application state: the vault
//! that seals TOTP secrets (`crate::vault`) and the throttle on wrong codes.
//! The checks that use them are `codes.rs` and `challenge.rs`.

use crate::auth::throttle::{LoginThrottle, ThrottleLimits};
use crate::vault::Vault;
use std::sync::Arc;

pub struct MfaGuard {
    /// Shared with the store, which seals templates' secrets with it.
    pub vault: Arc<Vault>,
    /// Wrong codes, counted per username and client address exactly as
    /// wrong passwords are, but apart from them: a right password resets
    /// its username's count, and must not reset the count of codes guessed
    /// behind it.
    pub throttle: Arc<LoginThrottle>,
}

impl MfaGuard {
    pub fn new(vault: Arc<Vault>, limits: ThrottleLimits) -> Self {
        Self {
            vault,
            throttle: Arc::new(LoginThrottle::new(limits)),
        }
    }
}
