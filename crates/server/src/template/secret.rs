//! Secret environment variables of a template. A type of their own so that
//! printing a template (a `{:?}` in a log line, a panic message) shows the
//! names and never the values.

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_shows_names_not_values() {
        let secret = SecretEnv::new([("API_KEY".into(), "hunter2".into())].into());
        let printed = format!("{secret:?}");
        assert_eq!(printed, r#"{"API_KEY"}"#);
    }
}
