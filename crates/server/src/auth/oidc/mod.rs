//! Single sign-on with OpenID Connect: the authorization code flow with
//! PKCE against one configured issuer (Keycloak, Dex, Entra ID, Google,
//! Authentik, …). See docs/OIDC.md.
//!
//! `config` is what the flags say (a leaf: the server's `Config` holds it);
//! `pending` keeps the state, nonce and PKCE verifier of a login this
//! browser started (a signed cookie, so any replica can finish it);
//! `provider` reads the issuer's discovery document and keys; `id_token`
//! verifies what the issuer answers; `claims` turns verified claims into a
//! username, groups and a role. The routes and the accounts they create
//! are `api/oidc.rs`.

pub mod claims;
pub mod config;
pub mod id_token;
pub mod pending;
pub mod provider;

use crate::error::ApiError;
use crate::store::{Store, StoreResult};
pub use config::{OidcConfig, check_endpoint};
use provider::Provider;
use std::time::Duration;

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
