//! The identity provider as the control plane sees it: its discovery
//! document (endpoints, issuer) and its signing keys (JWKS), fetched on
//! first use and kept. A token signed with a key id we do not know makes
//! us fetch the keys again, so a provider's key rotation just works; such
//! refetches are rate-limited, so tokens with made-up key ids cannot turn
//! the control plane into a flood of requests at the provider.

use super::config::check_endpoint;
use crate::error::ApiError;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;
use url::Url;

/// At most one refetch of the keys for an unknown key id per this long.
pub const KEY_REFETCH_INTERVAL: Duration = Duration::from_secs(30);
/// Discovery documents, key sets and token answers are small; a provider
/// (or whoever answers in its place) cannot make us read more.
const MAX_ANSWER: usize = 1024 * 1024;
const TIMEOUT: Duration = Duration::from_secs(10);
/// A key set with more keys than this is refused.
const MAX_KEYS: usize = 100;

/// What the discovery document says (the parts we use).
#[derive(Debug, Clone, Deserialize)]
pub struct Discovery {
    pub issuer: String,
    pub authorization_endpoint: Url,
    pub token_endpoint: Url,
    pub jwks_uri: Url,
    #[serde(default)]
    pub token_endpoint_auth_methods_supported: Vec<String>,
}

#[derive(Default)]
struct Cache {
    discovery: Option<Arc<Discovery>>,
    keys: Vec<Jwk>,
    /// When the keys were last fetched because a token named a key id
    /// that was not among them.
    last_refetch: Option<Instant>,
}

pub struct Provider {
    issuer: Url,
    http: reqwest::Client,
    cache: Mutex<Cache>,
}

impl Provider {
    pub fn new(issuer: Url) -> Self {
        Self {
            issuer,
            http: http_client(),
            cache: Mutex::default(),
        }
    }

    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// The discovery document, fetched once and kept.
    pub async fn discovery(&self) -> Result<Arc<Discovery>, ApiError> {
        let mut cache = self.cache.lock().await;
        if let Some(found) = &cache.discovery {
            return Ok(found.clone());
        }
        let discovery = Arc::new(self.fetch_discovery().await?);
        cache.keys = self.fetch_keys(&discovery.jwks_uri).await?;
        cache.discovery = Some(discovery.clone());
        Ok(discovery)
    }

    async fn fetch_discovery(&self) -> Result<Discovery, ApiError> {
        let base = self.issuer.as_str().trim_end_matches('/');
        let url = Url::parse(&format!("{base}/.well-known/openid-configuration"))
            .map_err(|e| ApiError::Internal(format!("the discovery URL: {e}")))?;
        let found: Discovery = get_json(&self.http, &url, "discovery document").await?;
        let configured = self.issuer.as_str();
        if found.issuer != configured && found.issuer != base {
            return Err(ApiError::BadGateway(format!(
                "the identity provider's discovery document names the issuer {:?}, \
                 not {configured:?} as --oidc-issuer says: set --oidc-issuer to exactly its issuer",
                found.issuer
            )));
        }
        for (what, url) in [
            ("authorization_endpoint", &found.authorization_endpoint),
            ("token_endpoint", &found.token_endpoint),
            ("jwks_uri", &found.jwks_uri),
        ] {
            check_endpoint(what, url).map_err(ApiError::BadGateway)?;
        }
        Ok(found)
    }

    async fn fetch_keys(&self, jwks_uri: &Url) -> Result<Vec<Jwk>, ApiError> {
        let set: JwkSet = get_json(&self.http, jwks_uri, "key set (JWKS)").await?;
        if set.keys.len() > MAX_KEYS {
            return Err(ApiError::BadGateway(format!(
                "the identity provider's key set has {} keys; at most {MAX_KEYS} are accepted",
                set.keys.len()
            )));
        }
        Ok(set.keys)
    }

    /// The key a token names (by `kid`; without one, the only key there
    /// is), fetching the keys again if it is unknown and the last such
    /// refetch was long enough ago.
    pub async fn key(&self, kid: Option<&str>) -> Result<Jwk, ApiError> {
        let discovery = self.discovery().await?;
        let mut cache = self.cache.lock().await;
        if let Some(key) = pick(&cache.keys, kid) {
            return Ok(key);
        }
        let recently = cache
            .last_refetch
            .is_some_and(|at| at.elapsed() < KEY_REFETCH_INTERVAL);
        if !recently {
            cache.last_refetch = Some(Instant::now());
            cache.keys = self.fetch_keys(&discovery.jwks_uri).await?;
            if let Some(key) = pick(&cache.keys, kid) {
                tracing::info!(?kid, "the identity provider has a new signing key");
                return Ok(key);
            }
        }
        Err(ApiError::Unauthorized(format!(
            "the ID token is signed with a key the identity provider does not publish \
             (kid {}): it was not issued by {}",
            kid.unwrap_or("none"),
            self.issuer
        )))
    }
}

/// The key named `kid`, or without a kid the only signing key.
fn pick(keys: &[Jwk], kid: Option<&str>) -> Option<Jwk> {
    match kid {
        Some(kid) => keys
            .iter()
            .find(|k| k.common.key_id.as_deref() == Some(kid))
            .cloned(),
        None if keys.len() == 1 => keys.first().cloned(),
        None => None,
    }
}

fn http_client() -> reqwest::Client {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports the default TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .timeout(TIMEOUT)
        // The provider's answers are used as they are, never followed.
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("a reqwest client with a preconfigured rustls backend")
}

async fn get_json<T: DeserializeOwned>(
    http: &reqwest::Client,
    url: &Url,
    what: &str,
) -> Result<T, ApiError> {
    let response = http
        .get(url.clone())
        .send()
        .await
        .map_err(|e| unreachable_provider(what, url, &e))?;
    read_json(response, what).await
}

/// The body of an answer as JSON, at most `MAX_ANSWER` bytes.
pub async fn read_json<T: DeserializeOwned>(
    mut response: reqwest::Response,
    what: &str,
) -> Result<T, ApiError> {
    let status = response.status();
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| ApiError::BadGateway(format!("reading the identity provider's {what}: {e}")))?
    {
        if body.len() + chunk.len() > MAX_ANSWER {
            return Err(ApiError::BadGateway(format!(
                "the identity provider's {what} is larger than {MAX_ANSWER} bytes"
            )));
        }
        body.extend_from_slice(&chunk);
    }
    if !status.is_success() {
        let text = String::from_utf8_lossy(&body);
        let text: String = text.chars().take(300).collect();
        return Err(ApiError::BadGateway(format!(
            "the identity provider answered {status} for its {what}: {text}"
        )));
    }
    serde_json::from_slice(&body).map_err(|e| {
        ApiError::BadGateway(format!("the identity provider's {what} is not valid: {e}"))
    })
}

pub fn unreachable_provider(what: &str, url: &Url, err: &reqwest::Error) -> ApiError {
    ApiError::BadGateway(format!(
        "cannot reach the identity provider for its {what} at {url}: {err}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn providers_use_https_except_on_loopback() {
        let url = |text: &str| Url::parse(text).expect("url");
        assert!(check_endpoint("x", &url("https://id.example/realms/a")).is_ok());
        assert!(check_endpoint("x", &url("http://127.0.0.1:9000")).is_ok());
        assert!(check_endpoint("x", &url("http://[::1]:9000")).is_ok());
        assert!(check_endpoint("x", &url("http://localhost:9000")).is_ok());
        let err = check_endpoint("--oidc-issuer", &url("http://id.example")).expect_err("plain");
        assert!(
            err.contains("--oidc-issuer") && err.contains("https://"),
            "{err}"
        );
        assert!(check_endpoint("x", &url("ftp://id.example")).is_err());
    }

    #[test]
    fn a_key_is_picked_by_kid_or_as_the_only_one() {
        let key = |kid: &str| -> Jwk {
            serde_json::from_value(serde_json::json!({
                "kty": "EC", "crv": "P-256", "kid": kid,
                "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
                "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0",
            }))
            .expect("a JWK")
        };
        let keys = vec![key("a"), key("b")];
        assert_eq!(
            pick(&keys, Some("b")).and_then(|k| k.common.key_id),
            Some("b".into())
        );
        assert!(pick(&keys, Some("c")).is_none());
        assert!(
            pick(&keys, None).is_none(),
            "no kid and several keys: ambiguous"
        );
        assert!(pick(&keys[..1], None).is_some());
    }
}
