//! The agent's own registry credentials (`--registry-auth FILE`, a Docker
//! `config.json` with `auths`), by registry host, so a pull sends the
//! credentials of its image's registry and no other.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use streamspace_agent::pulls::registry_host;

/// The largest credentials file read: a `config.json` is a few hundred bytes
/// per registry.
const MAX_FILE: u64 = 1 << 20;

/// One registry's credentials.
#[derive(Clone, PartialEq, Eq)]
pub enum Credentials {
    Password {
        username: String,
        password: String,
    },
    /// An OAuth refresh token (`identitytoken` in `config.json`).
    IdentityToken(String),
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credentials::Password { username, .. } => f
                .debug_struct("Password")
                .field("username", username)
                .finish_non_exhaustive(),
            Credentials::IdentityToken(_) => f.write_str("IdentityToken(..)"),
        }
    }
}

/// Credentials by registry host (`registry.example.com:5000`, `docker.io`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RegistryAuths(BTreeMap<String, Credentials>);

#[derive(Deserialize)]
struct ConfigFile {
    #[serde(default)]
    auths: BTreeMap<String, AuthEntry>,
}

#[derive(Deserialize)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    identitytoken: Option<String>,
}

impl RegistryAuths {
    /// Reads a Docker `config.json`. The error names the file and what is
    /// wrong with it; a file others may read is accepted with a warning.
    pub fn load(path: &Path) -> Result<Self, String> {
        let shown = path.display();
        let meta = std::fs::metadata(path).map_err(|e| format!("cannot read {shown}: {e}"))?;
        if meta.len() > MAX_FILE {
            return Err(format!(
                "{shown} is {} bytes: a registry credentials file is at most {MAX_FILE}",
                meta.len()
            ));
        }
        warn_if_others_may_read(path, &meta);
        let text =
            std::fs::read_to_string(path).map_err(|e| format!("cannot read {shown}: {e}"))?;
        Self::parse(&text).map_err(|e| format!("{shown}: {e}"))
    }

    /// Parses a `config.json`'s `auths`: per registry either `auth`
    /// (base64 of `user:password`), `username` and `password`, or
    /// `identitytoken`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let file: ConfigFile = serde_json::from_str(text)
            .map_err(|e| format!("not a Docker config.json with \"auths\": {e}"))?;
        let mut auths = BTreeMap::new();
        for (key, entry) in file.auths {
            let credentials = entry
                .credentials()
                .map_err(|e| format!("auths.{key}: {e}"))?;
            auths.insert(registry_host(&key), credentials);
        }
        Ok(RegistryAuths(auths))
    }

    /// The credentials for `registry`, if any.
    pub fn get(&self, registry: &str) -> Option<&Credentials> {
        self.0.get(registry)
    }

    /// The registries credentials are held for, for the log.
    pub fn registries(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }
}

impl AuthEntry {
    fn credentials(self) -> Result<Credentials, String> {
        if let Some(token) = self.identitytoken.filter(|t| !t.is_empty()) {
            return Ok(Credentials::IdentityToken(token));
        }
        if let (Some(username), Some(password)) = (self.username, self.password) {
            return Ok(Credentials::Password { username, password });
        }
        let auth = self
            .auth
            .ok_or("has no \"auth\", \"username\"/\"password\" or \"identitytoken\"")?;
        let decoded = STANDARD
            .decode(auth.trim())
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .ok_or("\"auth\" is not base64 of \"username:password\"")?;
        let (username, password) = decoded
            .split_once(':')
            .ok_or("\"auth\" is not base64 of \"username:password\"")?;
        Ok(Credentials::Password {
            username: username.to_owned(),
            password: password.to_owned(),
        })
    }
}

#[cfg(unix)]
fn warn_if_others_may_read(path: &Path, meta: &std::fs::Metadata) {
    use std::os::unix::fs::PermissionsExt;
    if meta.permissions().mode() & 0o004 != 0 {
        tracing::warn!(
            path = %path.display(),
            "the registry credentials file is readable by every user of this host: \
             chmod 600 it"
        );
    }
}

#[cfg(not(unix))]
fn warn_if_others_may_read(_: &Path, _: &std::fs::Metadata) {}

#[cfg(test)]
mod tests {
    use super::*;
    use streamspace_agent::pulls::DOCKER_HUB;

    #[test]
    fn config_files_give_credentials_by_registry() {
        let auth = STANDARD.encode("robot:s3cret");
        let text = format!(
            r#"{{"auths": {{
                "https://index.docker.io/v1/": {{"auth": "{auth}"}},
                "Registry.Example.com:5000": {{"username": "u", "password": "p"}},
                "ghcr.io": {{"identitytoken": "tok"}}
            }}, "credsStore": "desktop"}}"#
        );
        let auths = RegistryAuths::parse(&text).expect("parses");
        assert_eq!(
            auths.get(DOCKER_HUB),
            Some(&Credentials::Password {
                username: "robot".into(),
                password: "s3cret".into()
            })
        );
        assert!(auths.get("registry.example.com:5000").is_some());
        assert_eq!(
            auths.get("ghcr.io"),
            Some(&Credentials::IdentityToken("tok".into()))
        );
        let printed = format!("{auths:?}");
        assert!(
            !printed.contains("s3cret") && !printed.contains("tok\""),
            "{printed}"
        );
    }

    #[test]
    fn broken_files_say_what_is_wrong() {
        let err = RegistryAuths::parse(r#"{"auths": {"r.io": {"auth": "!!"}}}"#).expect_err("bad");
        assert!(
            err.contains("auths.r.io") && err.contains("base64"),
            "{err}"
        );
        let err = RegistryAuths::parse(r#"{"auths": {"r.io": {}}}"#).expect_err("empty");
        assert!(err.contains("has no"), "{err}");
        assert!(RegistryAuths::parse("42").is_err());
        assert!(RegistryAuths::parse("{not json").is_err());
    }
}
