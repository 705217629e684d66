//! What every login shares: the failed-login throttle (`throttle.rs`) and
//! the bound on password hashing (`password.rs`), held by the application
//! state. The checks that use them are `login.rs`.

use super::password::PasswordWork;
use super::throttle::{LoginThrottle, ThrottleLimits};
use std::sync::Arc;

/// The throttle and the bound on hashing, shared by every request.
pub struct LoginGuard {
    pub throttle: Arc<LoginThrottle>,
    pub work: PasswordWork,
}

impl LoginGuard {
    pub fn new(limits: ThrottleLimits) -> Self {
        Self {
            throttle: Arc::new(LoginThrottle::new(limits)),
            work: PasswordWork::for_machine(),
        }
    }
}
