//! Single sign-on with OpenID Connect: the authorization code flow with
//! PKCE against one configured issuer (Keycloak, Dex, Entra ID, Google,
//! Authentik, …). See docs/OIDC.md.
//!
//! `pending` keeps the state, nonce and PKCE verifier of a login this
//! browser started (a signed cookie, so any replica can finish it);
//! `provider` reads the issuer's discovery document and keys; `id_token`
//! verifies what the issuer answers; `claims` turns verified claims into a
//! username, groups and a role. The routes and the accounts they create
//! are `api/oidc.rs`.

pub mod claims;
pub mod id_token;
pub mod pending;
pub mod provider;

use crate::error::ApiError;
use crate::store::{Store, StoreResult};
use provider::Provider;
use std::time::Duration;
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
        provider::check_endpoint("--oidc-issuer", &self.issuer)?;
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

/// The single sign-on of a running control plane.
pub struct Oidc {
    pub config: OidcConfig,
    /// Signs the pending-login cookie; shared by every replica.
    cookie_key: [u8; 32],
    provider: Provider,
}

/// How long a browser has between starting a login and coming back.
pub const LOGIN_WINDOW: Duration = Duration::from_secs(600);

const KEY_SETTING: &str = "oidc_login_key";

impl Oidc {
    /// Loads (or makes) the cookie key. The provider is asked for its
    /// discovery document only at the first login, so a provider that is
    /// down does not keep the control plane from starting.
    pub async fn load(config: OidcConfig, store: &Store) -> StoreResult<Self> {
        let mut fresh = [0u8; 32];
        // The OS random source failing is not something to continue through.
        getrandom::fill(&mut fresh).expect("the operating system's random source failed");
        let stored = store
            .setting_or_insert(KEY_SETTING, &hex::encode(fresh))
            .await?;
        let mut cookie_key = [0u8; 32];
        hex::decode_to_slice(stored.trim(), &mut cookie_key).map_err(|e| {
            crate::store::StoreError::Corrupt(format!("setting {KEY_SETTING}: {e}"))
        })?;
        let provider = Provider::new(config.issuer.clone());
        Ok(Self {
            config,
            cookie_key,
            provider,
        })
    }

    pub fn provider(&self) -> &Provider {
        &self.provider
    }

    pub fn cookie_key(&self) -> &[u8; 32] {
        &self.cookie_key
    }
}

/// The answer when single sign-on is asked for but not configured.
pub fn not_configured() -> ApiError {
    ApiError::NotFound(
        "single sign-on is not configured: start the server with --oidc-issuer, \
         --oidc-client-id (and --oidc-client-secret); see docs/OIDC.md"
            .into(),
    )
}
