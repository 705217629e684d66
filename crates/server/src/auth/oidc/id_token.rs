//! Trading the authorization code for an ID token, and checking that
//! token: signed by one of the issuer's published keys with an asymmetric
//! algorithm, issued by our issuer, for our client id, not expired, and
//! carrying the nonce this browser's login sent. Anything else is refused
//! with a message that says which check failed.

use super::Oidc;
use super::provider::{read_json, unreachable_provider};
use crate::error::ApiError;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::{Map, Value};
use url::Url;
use url::form_urlencoded::{Serializer, byte_serialize};

/// Clock difference tolerated between us and the provider.
const LEEWAY_SECONDS: u64 = 60;
/// An ID token is a few kilobytes; a longer one is not worth parsing.
const MAX_ID_TOKEN: usize = 64 * 1024;

/// The verified claims of an ID token.
pub type Claims = Map<String, Value>;

#[derive(Deserialize)]
struct TokenAnswer {
    id_token: Option<String>,
}

/// Asks the token endpoint for the tokens of `code`, proving with the PKCE
/// verifier that we started this login; answers the ID token.
pub async fn exchange(
    oidc: &Oidc,
    code: &str,
    verifier: &str,
    redirect_uri: &Url,
) -> Result<String, ApiError> {
    let discovery = oidc.provider().discovery().await?;
    let config = &oidc.config;
    let methods = &discovery.token_endpoint_auth_methods_supported;
    // Basic unless the provider lists only other methods (then the
    // secret goes in the form).
    let basic = methods.is_empty() || methods.iter().any(|m| m == "client_secret_basic");
    let form_secret = config.client_secret.as_deref().filter(|_| !basic);
    let body = token_form(config, code, verifier, redirect_uri, form_secret);
    let mut request = oidc
        .provider()
        .http()
        .post(discovery.token_endpoint.clone())
        .header(http::header::ACCEPT, "application/json")
        .header(
            http::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded",
        );
    if let Some(secret) = config.client_secret.as_deref().filter(|_| basic) {
        request = request.header(
            http::header::AUTHORIZATION,
            basic_auth(&config.client_id, secret),
        );
    }
    let response = request
        .body(body)
        .send()
        .await
        .map_err(|e| unreachable_provider("token endpoint", &discovery.token_endpoint, &e))?;
    let answer: TokenAnswer = read_json(response, "token endpoint answer").await?;
    answer.id_token.ok_or_else(|| {
        ApiError::BadGateway(
            "the identity provider answered no id_token: is `openid` among --oidc-scopes?".into(),
        )
    })
}

/// The form of the token request (RFC 6749 4.1.3, RFC 7636 4.5).
fn token_form(
    config: &super::OidcConfig,
    code: &str,
    verifier: &str,
    redirect_uri: &Url,
    secret: Option<&str>,
) -> String {
    let mut form = Serializer::new(String::new());
    form.append_pair("grant_type", "authorization_code")
        .append_pair("code", code)
        .append_pair("redirect_uri", redirect_uri.as_str())
        .append_pair("code_verifier", verifier)
        .append_pair("client_id", &config.client_id);
    if let Some(secret) = secret {
        form.append_pair("client_secret", secret);
    }
    form.finish()
}

/// RFC 6749 2.3.1: the id and secret are form-encoded before base64.
fn basic_auth(id: &str, secret: &str) -> String {
    let id: String = byte_serialize(id.as_bytes()).collect();
    let secret: String = byte_serialize(secret.as_bytes()).collect();
    format!("Basic {}", STANDARD.encode(format!("{id}:{secret}")))
}

/// The claims of `id_token` once every check has passed.
pub async fn verify(oidc: &Oidc, id_token: &str, nonce: &str) -> Result<Claims, ApiError> {
    let refused = |why: String| ApiError::Unauthorized(format!("ID token refused: {why}"));
    if id_token.len() > MAX_ID_TOKEN {
        return Err(refused(format!("it is longer than {MAX_ID_TOKEN} bytes")));
    }
    let header = jsonwebtoken::decode_header(id_token)
        .map_err(|e| refused(format!("it is not a signed JWT ({e})")))?;
    let algorithm = allowed(header.alg).map_err(refused)?;
    let discovery = oidc.provider().discovery().await?;
    let jwk = oidc.provider().key(header.kid.as_deref()).await?;
    if let Some(key_alg) = jwk.common.key_algorithm
        && format!("{key_alg:?}") != format!("{algorithm:?}")
    {
        return Err(refused(format!(
            "it says {algorithm:?} but its key is for {key_alg:?}"
        )));
    }
    let key = DecodingKey::from_jwk(&jwk)
        .map_err(|e| refused(format!("the provider's key cannot be used ({e})")))?;
    let validation = validation(algorithm, &discovery.issuer, &oidc.config.client_id);
    let claims = jsonwebtoken::decode::<Claims>(id_token, &key, &validation)
        .map_err(|e| refused(explain(e.kind(), &discovery.issuer, &oidc.config.client_id)))?
        .claims;
    check_nonce(&claims, nonce).map_err(refused)?;
    check_azp(&claims, &oidc.config.client_id).map_err(refused)?;
    Ok(claims)
}

/// Only asymmetric signatures: a symmetric (HS*) one would be made with
/// the client secret, which is not the provider's alone.
fn allowed(alg: Algorithm) -> Result<Algorithm, String> {
    use Algorithm::*;
    match alg {
        RS256 | RS384 | RS512 | PS256 | PS384 | PS512 | ES256 | ES384 | EdDSA => Ok(alg),
        other => Err(format!(
            "it is signed with {other:?}; only RS*, PS*, ES256, ES384 and EdDSA are accepted"
        )),
    }
}

fn validation(algorithm: Algorithm, issuer: &str, client_id: &str) -> Validation {
    let mut validation = Validation::new(algorithm);
    validation.set_issuer(&[issuer]);
    validation.set_audience(&[client_id]);
    validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    validation.leeway = LEEWAY_SECONDS;
    validation.validate_exp = true;
    validation.validate_nbf = true;
    validation
}

fn explain(kind: &ErrorKind, issuer: &str, client_id: &str) -> String {
    match kind {
        ErrorKind::InvalidSignature => format!(
            "its signature does not verify with the identity provider's key: it was not signed by {issuer}"
        ),
        ErrorKind::ExpiredSignature => "it has expired (exp is in the past): sign in again".into(),
        ErrorKind::ImmatureSignature => "it is not valid yet (nbf is in the future)".into(),
        ErrorKind::InvalidAudience => {
            format!("it was issued for another client (aud), not for {client_id:?}")
        }
        ErrorKind::InvalidIssuer => {
            format!("it was issued by another issuer (iss), not {issuer:?}")
        }
        ErrorKind::MissingRequiredClaim(claim) => format!("it has no {claim} claim"),
        other => format!("it cannot be read ({other:?})"),
    }
}

fn check_nonce(claims: &Claims, expected: &str) -> Result<(), String> {
    match claims.get("nonce").and_then(Value::as_str) {
        Some(nonce) if nonce == expected => Ok(()),
        Some(_) => Err("nonce: its nonce is not the one this browser's login sent \
                        (a replayed or injected token): sign in again"
            .into()),
        None => Err("nonce: it carries no nonce, but this login sent one".into()),
    }
}

/// With several audiences, the authorized party must be us (OIDC Core 3.1.3.7).
fn check_azp(claims: &Claims, client_id: &str) -> Result<(), String> {
    let several = claims
        .get("aud")
        .and_then(Value::as_array)
        .is_some_and(|a| a.len() > 1);
    match claims.get("azp").and_then(Value::as_str) {
        Some(azp) if azp != client_id => Err(format!(
            "its authorized party (azp) is {azp:?}, not {client_id:?}"
        )),
        None if several => Err("it names several audiences but no authorized party (azp)".into()),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claims(value: Value) -> Claims {
        value.as_object().cloned().expect("an object")
    }

    #[test]
    fn only_asymmetric_algorithms_are_allowed() {
        assert!(allowed(Algorithm::RS256).is_ok());
        assert!(allowed(Algorithm::ES256).is_ok());
        let err = allowed(Algorithm::HS256).expect_err("symmetric");
        assert!(err.contains("HS256"), "{err}");
    }

    #[test]
    fn the_nonce_must_be_ours() {
        assert!(check_nonce(&claims(json!({"nonce": "n1"})), "n1").is_ok());
        assert!(check_nonce(&claims(json!({"nonce": "n2"})), "n1").is_err());
        assert!(check_nonce(&claims(json!({})), "n1").is_err());
    }

    #[test]
    fn several_audiences_need_us_as_authorized_party() {
        let ok = claims(json!({"aud": ["us", "them"], "azp": "us"}));
        assert!(check_azp(&ok, "us").is_ok());
        let theirs = claims(json!({"aud": ["us", "them"], "azp": "them"}));
        assert!(check_azp(&theirs, "us").is_err());
        let none = claims(json!({"aud": ["us", "them"]}));
        assert!(check_azp(&none, "us").is_err());
        assert!(check_azp(&claims(json!({"aud": "us"})), "us").is_ok());
    }

    #[test]
    fn basic_auth_form_encodes_first() {
        let header = basic_auth("my client", "s:e/c");
        let decoded = STANDARD
            .decode(header.trim_start_matches("Basic "))
            .expect("base64");
        assert_eq!(decoded, b"my+client:s%3Ae%2Fc");
    }
}
