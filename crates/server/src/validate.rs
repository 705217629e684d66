//! Field checks shared by the API's inputs. Every refusal names the field and
//! says what a valid value looks like.

use std::collections::BTreeMap;

/// One field of a request that cannot be accepted as written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// A DNS-label-style name: it becomes part of container, volume and
/// Kubernetes object names, so it must be valid in all of them.
pub fn check_slug(field: &str, value: &str) -> Result<(), FieldError> {
    let bytes = value.as_bytes();
    let valid = !bytes.is_empty()
        && bytes.len() <= 63
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes.first().is_some_and(u8::is_ascii_alphanumeric)
        && bytes.last().is_some_and(u8::is_ascii_alphanumeric);
    if valid {
        Ok(())
    } else {
        Err(FieldError::new(
            field,
            format!(
                "{value:?} must be 1 to 63 lowercase letters, digits or '-', \
                 starting and ending with a letter or digit (e.g. \"firefox-browser\")"
            ),
        ))
    }
}

/// Environment variable names as POSIX shells accept them.
pub fn check_env(field: &str, env: &BTreeMap<String, String>) -> Result<(), FieldError> {
    for (key, value) in env {
        let bytes = key.as_bytes();
        let valid_key = bytes
            .first()
            .is_some_and(|b| b.is_ascii_alphabetic() || *b == b'_')
            && bytes
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || *b == b'_');
        if !valid_key {
            return Err(FieldError::new(
                field,
                format!(
                    "{key:?} is not a valid variable name: use letters, digits and '_', \
                     not starting with a digit (e.g. \"MY_SETTING\")"
                ),
            ));
        }
        if value.contains('\0') {
            return Err(FieldError::new(
                format!("{field}.{key}"),
                "values cannot contain NUL characters",
            ));
        }
    }
    Ok(())
}

/// Usernames follow the slug rule so they are safe in volume names.
pub fn check_username(value: &str) -> Result<(), FieldError> {
    check_slug("username", value)
}

pub fn check_password(value: &str) -> Result<(), FieldError> {
    if value.chars().count() < 8 {
        return Err(FieldError::new("password", "must be at least 8 characters"));
    }
    if value.len() > 1024 {
        return Err(FieldError::new("password", "must be at most 1024 bytes"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs() {
        for ok in ["a", "desktop", "firefox-browser", "x1", "9lives"] {
            assert!(check_slug("name", ok).is_ok(), "{ok}");
        }
        let long = "a".repeat(64);
        for bad in ["", "-a", "a-", "A", "a_b", "a b", "é", long.as_str()] {
            assert!(check_slug("name", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn env_keys() {
        let env = |k: &str| BTreeMap::from([(k.to_owned(), "v".to_owned())]);
        assert!(check_env("env", &env("HOME_DIR")).is_ok());
        assert!(check_env("env", &env("_x1")).is_ok());
        for bad in ["", "1A", "A-B", "A B", "A=B"] {
            assert!(check_env("env", &env(bad)).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn passwords() {
        assert!(check_password("short").is_err());
        assert!(check_password("long enough").is_ok());
    }
}
