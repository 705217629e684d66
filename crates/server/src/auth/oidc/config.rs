//! What the `--oidc-*` flags say, checked before the server starts. A leaf:
//! the server's `Config` holds it, so it uses nothing of the server.

use std::net::IpAddr;
use url::Url;

/// How the server talks to its identity provider (flags `--oidc-*`).
#[derive(Debug, Clone)]
pub struct OidcConfig {
    /// The issuer, exactly as its discovery document names it.
    pub issuer: Url,
    pub client_id: String,
    /// None for a public client (PKCE only).
    pub client_secret: Option<String>,
    /// Always includes `openid`.
    pub scopes: Vec<String>,
    /// The ID token claim that names the user (`preferred_username`).
    pub username_claim: String,
    /// The ID token claim that lists the user's groups (`groups`).
    pub groups_claim: String,
    /// Members of this group are admins; others are users. None: roles are
    /// managed in StreamSpace and sign-in never changes them.
    pub admin_group: Option<String>,
    /// Shown on the login page: "Sign in with <name>".
    pub provider_name: String,
}

impl OidcConfig {
    /// A configuration with the defaults for everything but the issuer and
    /// client id.
    pub fn new(issuer: Url, client_id: impl Into<String>) -> Self {
        Self {
            issuer,
            client_id: client_id.into(),
            client_secret: None,
            scopes: vec!["openid".into(), "profile".into(), "email".into()],
            username_claim: "preferred_username".into(),
            groups_claim: "groups".into(),
            admin_group: None,
            provider_name: "single sign-on".into(),
        }
    }

    /// Refuses a configuration that cannot work, saying which flag to fix.
    pub fn check(&self) -> Result<(), String> {
        check_endpoint("--oidc-issuer", &self.issuer)?;
        if self.client_id.trim().is_empty() {
            return Err("--oidc-client-id must not be empty".into());
        }
        if !self.scopes.iter().any(|s| s == "openid") {
            return Err("--oidc-scopes must include openid".into());
        }
        for (flag, value) in [
            ("--oidc-username-claim", &self.username_claim),
            ("--oidc-groups-claim", &self.groups_claim),
            ("--oidc-provider-name", &self.provider_name),
        ] {
            if value.trim().is_empty() || value.len() > 128 {
                return Err(format!("{flag} must be 1 to 128 bytes"));
            }
        }
        Ok(())
    }
}

/// Issuers and their endpoints use HTTPS; plain HTTP only on loopback
/// (tests, or a provider on the same host).
pub fn check_endpoint(what: &str, url: &Url) -> Result<(), String> {
    let loopback = match url.host() {
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        Some(url::Host::Domain(name)) => name == "localhost",
        None => false,
    };
    match url.scheme() {
        "https" => Ok(()),
        "http" if loopback => Ok(()),
        _ => Err(format!(
            "{what} {url} must be an https:// URL (plain http only on loopback)"
        )),
    }
}
