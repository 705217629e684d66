//! Exit codes a script can rely on (docs/CLI.md): each failure carries the
//! code `main` exits with.
//!
//! | code | meaning |
//! |------|---------|
//! | 0 | done |
//! | 1 | any other error (server unreachable, server error, timeout) |
//! | 2 | usage: bad arguments or input the server refused as invalid (400) |
//! | 3 | not found (404) |
//! | 4 | refused: forbidden, conflict, quota, throttled (403, 409, 429) |
//! | 5 | not logged in, or the token is invalid or expired (401) |

use std::fmt;

pub const ERROR: u8 = 1;
pub const USAGE: u8 = 2;
pub const NOT_FOUND: u8 = 3;
pub const REFUSED: u8 = 4;
pub const AUTH: u8 = 5;

/// A failure with the exit code that says what kind it was.
#[derive(Debug)]
pub struct Failure {
    pub code: u8,
    pub message: String,
}

impl Failure {
    pub fn new(code: u8, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    /// The code for an HTTP answer's status.
    pub fn code_for(status: reqwest::StatusCode) -> u8 {
        match status.as_u16() {
            400 | 413 | 422 => USAGE,
            401 => AUTH,
            404 => NOT_FOUND,
            403 | 409 | 429 => REFUSED,
            _ => ERROR,
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Failure {}

/// The exit code of an error: its `Failure`'s, else 1.
pub fn exit_code(err: &anyhow::Error) -> u8 {
    err.chain()
        .find_map(|e| e.downcast_ref::<Failure>())
        .map_or(ERROR, |f| f.code)
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    #[test]
    fn statuses_map_to_documented_codes() {
        use reqwest::StatusCode as S;
        assert_eq!(Failure::code_for(S::NOT_FOUND), NOT_FOUND);
        assert_eq!(Failure::code_for(S::UNAUTHORIZED), AUTH);
        assert_eq!(Failure::code_for(S::FORBIDDEN), REFUSED);
        assert_eq!(Failure::code_for(S::CONFLICT), REFUSED);
        assert_eq!(Failure::code_for(S::BAD_REQUEST), USAGE);
        assert_eq!(Failure::code_for(S::SERVICE_UNAVAILABLE), ERROR);
    }

    #[test]
    fn the_code_survives_context() {
        let err = Err::<(), _>(Failure::new(NOT_FOUND, "no such session"))
            .context("cannot hibernate")
            .expect_err("failed");
        assert_eq!(exit_code(&err), NOT_FOUND);
        assert_eq!(exit_code(&anyhow::anyhow!("plain")), ERROR);
    }
}
