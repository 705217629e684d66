//! The `--oidc-*` flags of `streamspace server` and `up`: single sign-on
//! with an OpenID Connect provider (docs/OIDC.md).

use clap::Args;
use streamspace_server::auth::oidc::OidcConfig;
use url::Url;

#[derive(Args, Debug, Clone)]
pub struct OidcArgs {
    /// The OpenID Connect issuer URL, exactly as its discovery document
    /// names it (e.g. https://keycloak.example/realms/acme). Turns single
    /// sign-on on; https only, except on loopback.
    #[arg(long, env = "STREAMSPACE_OIDC_ISSUER", requires = "oidc_client_id")]
    oidc_issuer: Option<Url>,
    /// The client id registered at the provider.
    #[arg(long, env = "STREAMSPACE_OIDC_CLIENT_ID", requires = "oidc_issuer")]
    oidc_client_id: Option<String>,
    /// The client secret (a confidential client); leave out for a public
    /// client, which PKCE alone protects. Prefer the environment variable.
    #[arg(long, env = "STREAMSPACE_OIDC_CLIENT_SECRET", hide_env_values = true)]
    oidc_client_secret: Option<String>,
    /// Scopes to ask for, space- or comma-separated; `openid` is added if
    /// missing. Add `groups` for providers that need it (Dex, Authentik).
    #[arg(
        long,
        env = "STREAMSPACE_OIDC_SCOPES",
        default_value = "openid profile email"
    )]
    oidc_scopes: String,
    /// The ID token claim that names the user (made into a username:
    /// lower case, other characters become '-').
    #[arg(
        long,
        env = "STREAMSPACE_OIDC_USERNAME_CLAIM",
        default_value = "preferred_username"
    )]
    oidc_username_claim: String,
    /// The ID token claim that lists the user's groups.
    #[arg(long, env = "STREAMSPACE_OIDC_GROUPS_CLAIM", default_value = "groups")]
    oidc_groups_claim: String,
    /// Members of this group are admins, everyone else a user (checked at
    /// every sign-in). Without it, sign-in never changes a role.
    #[arg(long, env = "STREAMSPACE_OIDC_ADMIN_GROUP")]
    oidc_admin_group: Option<String>,
    /// The name on the login page's button: "Sign in with <name>".
    #[arg(
        long,
        env = "STREAMSPACE_OIDC_PROVIDER_NAME",
        default_value = "single sign-on"
    )]
    oidc_provider_name: String,
}

impl OidcArgs {
    /// The configuration, when an issuer is given.
    pub fn config(&self) -> Option<OidcConfig> {
        let issuer = self.oidc_issuer.clone()?;
        let client_id = self.oidc_client_id.clone()?;
        let mut config = OidcConfig::new(issuer, client_id);
        config.client_secret = self.oidc_client_secret.clone().filter(|s| !s.is_empty());
        config.scopes = scopes(&self.oidc_scopes);
        config.username_claim = self.oidc_username_claim.clone();
        config.groups_claim = self.oidc_groups_claim.clone();
        config.admin_group = self.oidc_admin_group.clone().filter(|g| !g.is_empty());
        config.provider_name = self.oidc_provider_name.clone();
        Some(config)
    }
}

/// The scopes of the flag, `openid` first, each once.
fn scopes(text: &str) -> Vec<String> {
    let mut scopes = vec!["openid".to_owned()];
    for scope in text.split([' ', ',']).filter(|s| !s.is_empty()) {
        if !scopes.iter().any(|s| s == scope) {
            scopes.push(scope.to_owned());
        }
    }
    scopes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openid_is_always_asked_for_once() {
        assert_eq!(
            scopes("profile,groups openid"),
            ["openid", "profile", "groups"]
        );
        assert_eq!(scopes(""), ["openid"]);
    }
}
