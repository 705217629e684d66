//! What a template holds that only sessions should know: secret
//! environment variables, and credentials for its image's registry. Types
//! of their own so that printing a template (a `{:?}` in a log line, a
//! panic message) shows names and never values.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(transparent)]
#[schema(value_type = BTreeMap<String, String>)]
pub struct SecretEnv(BTreeMap<String, String>);

impl SecretEnv {
    pub fn new(values: BTreeMap<String, String>) -> Self {
        SecretEnv(values)
    }

    pub fn values(&self) -> &BTreeMap<String, String> {
        &self.0
    }

    pub fn contains(&self, key: &str) -> bool {
        self.0.contains_key(key)
    }
}

impl fmt::Debug for SecretEnv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

/// A template's credentials for its image's registry. The password is
/// write-only: kept with the template and sent to agents in start commands
/// and pre-pulls, but never in an API answer (to admins neither: they see
/// the username, which says credentials are set) and never logged.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(as = RegistryAuth)]
pub struct RegistryAuth {
    pub username: String,
    /// Write-only. When replacing a template, leave it out to keep the
    /// stored one (the username must then stay the same).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
}

impl fmt::Debug for RegistryAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistryAuth")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

impl RegistryAuth {
    /// What an agent sends the registry; none without a password.
    pub fn for_agent(&self) -> Option<streamspace_protocol::RegistryAuth> {
        Some(streamspace_protocol::RegistryAuth {
            username: self.username.clone(),
            password: self.password.clone()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_shows_names_not_values() {
        let secret = SecretEnv::new([("API_KEY".into(), "hunter2".into())].into());
        let printed = format!("{secret:?}");
        assert_eq!(printed, r#"{"API_KEY"}"#);
        let auth = RegistryAuth {
            username: "robot".into(),
            password: Some("hunter2".into()),
        };
        let printed = format!("{auth:?}");
        assert!(
            printed.contains("robot") && !printed.contains("hunter2"),
            "{printed}"
        );
    }
}
