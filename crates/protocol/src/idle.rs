//! How long a session may go without viewer input before it is hibernated,
//! parsed once from what a person wrote (`"30m"`, `"2h"`) and kept with
//! that text, which is what the API shows and the store keeps.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::time::Duration;

/// A non-zero idle timeout. "Never" is the absence of one (`None`), which
/// is what an empty text, `"0"` or any zero duration means.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct IdleTimeout {
    /// As written, trimmed.
    text: String,
    duration: Duration,
}

/// The text is not a duration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a duration: use e.g. \"30m\", \"2h\" or \"0\" for never")]
pub struct IdleTimeoutError(pub String);

impl IdleTimeout {
    /// Parses what a person wrote: `Ok(None)` for never (empty, `"0"`, a
    /// zero duration).
    pub fn parse(text: &str) -> Result<Option<Self>, IdleTimeoutError> {
        let trimmed = text.trim();
        if trimmed.is_empty() || trimmed == "0" {
            return Ok(None);
        }
        match humantime::parse_duration(trimmed) {
            Ok(d) if d.is_zero() => Ok(None),
            Ok(duration) => Ok(Some(IdleTimeout {
                text: trimmed.to_owned(),
                duration,
            })),
            Err(_) => Err(IdleTimeoutError(text.to_owned())),
        }
    }

    pub fn duration(&self) -> Duration {
        self.duration
    }

    /// The text it was parsed from, trimmed.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl fmt::Display for IdleTimeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Only a timeout that is not "never" is one: the stored form of never is
/// `null`, never `"0"`.
impl TryFrom<String> for IdleTimeout {
    type Error = IdleTimeoutError;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        IdleTimeout::parse(&text)?.ok_or(IdleTimeoutError(text))
    }
}

impl From<IdleTimeout> for String {
    fn from(timeout: IdleTimeout) -> Self {
        timeout.text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_is_none() {
        for never in ["", "  ", "0", " 0 ", "0s", "0m"] {
            assert_eq!(IdleTimeout::parse(never), Ok(None), "{never:?}");
        }
    }

    #[test]
    fn a_duration_keeps_its_trimmed_text() {
        let timeout = IdleTimeout::parse(" 30m ").expect("valid").expect("some");
        assert_eq!(timeout.duration(), Duration::from_secs(1800));
        assert_eq!(timeout.to_string(), "30m");
        let json = serde_json::to_string(&timeout).expect("serializes");
        assert_eq!(json, "\"30m\"");
        let back: IdleTimeout = serde_json::from_str(&json).expect("parses");
        assert_eq!(back, timeout);
    }

    #[test]
    fn anything_else_is_refused_with_the_text() {
        let err = IdleTimeout::parse("soon").expect_err("not a duration");
        assert_eq!(
            err.to_string(),
            "\"soon\" is not a duration: use e.g. \"30m\", \"2h\" or \"0\" for never"
        );
        assert!(serde_json::from_str::<IdleTimeout>("\"soon\"").is_err());
        assert!(serde_json::from_str::<IdleTimeout>("\"0\"").is_err());
    }
}
