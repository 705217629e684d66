//! The bounds on recordings' disk use: a leaf, so the server's
//! configuration can hold them without depending on the recorder.

/// The bounds on recordings' disk use (`--recording-max-bytes`,
/// `--recording-max-total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// One recording stops (and its tunnel closes) at this size.
    pub max_bytes: u64,
    /// All recordings together; no new recording starts, and running ones
    /// stop, at this total.
    pub max_total: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_bytes: 1 << 30,
            max_total: 20 << 30,
        }
    }
}
