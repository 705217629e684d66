//! A small OpenID Connect issuer the tests serve themselves on loopback,
//! with their own ES256 keys: discovery, JWKS, an authorization endpoint
//! that approves at once, and a token endpoint that checks the PKCE
//! verifier and signs whatever ID token the test asks for next (good, or
//! bad in one chosen way). The browser test (tests/ui/oidc.test.mjs) uses
//! the real `oidc-provider` instead; this one lets each refusal be made on
//! purpose.

use axum::extract::{Form, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::StatusCode;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};
use url::Url;

pub const CLIENT_ID: &str = "streamspace-test";
pub const CLIENT_SECRET: &str = "test-secret";

/// What the next ID token is like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Token {
    Good,
    WrongNonce,
    /// Signed by a key the issuer does not publish, under the published kid.
    OtherKey,
    /// Signed by a key the issuer does not publish, under an unknown kid.
    UnknownKid,
    Expired,
    WrongAudience,
}

pub struct SigningKey {
    pub kid: String,
    pair: rcgen::KeyPair,
}

impl SigningKey {
    pub fn new(kid: &str) -> Self {
        let pair = rcgen::KeyPair::generate().expect("an ECDSA P-256 key");
        Self {
            kid: kid.into(),
            pair,
        }
    }

    fn jwk(&self) -> Value {
        // The uncompressed point: 0x04, then x and y.
        let raw = self.pair.public_key_raw();
        json!({
            "kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig", "kid": self.kid,
            "x": URL_SAFE_NO_PAD.encode(&raw[1..33]),
            "y": URL_SAFE_NO_PAD.encode(&raw[33..65]),
        })
    }

    fn sign(&self, kid: &str, claims: &Value) -> String {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(kid.into());
        let key = EncodingKey::from_ec_der(&self.pair.serialize_der());
        jsonwebtoken::encode(&header, claims, &key).expect("signs")
    }
}

struct Grant {
    nonce: String,
    challenge: String,
    redirect_uri: String,
}

/// The subject, username and groups of the user who approves next.
#[derive(Debug, Clone)]
pub struct Person {
    pub sub: String,
    pub username: String,
    pub groups: Vec<String>,
}

struct Inner {
    url: Url,
    published: Vec<SigningKey>,
    next: Token,
    person: Person,
    grants: HashMap<String, Grant>,
}

#[derive(Clone)]
pub struct Issuer {
    inner: Arc<Mutex<Inner>>,
    pub jwks_fetches: Arc<AtomicUsize>,
}

impl Issuer {
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a port");
        let url = Url::parse(&format!(
            "http://{}",
            listener.local_addr().expect("address")
        ))
        .expect("url");
        let issuer = Issuer {
            inner: Arc::new(Mutex::new(Inner {
                url,
                published: vec![SigningKey::new("key-1")],
                next: Token::Good,
                person: Person {
                    sub: "sub-ann".into(),
                    username: "Ann".into(),
                    groups: vec![],
                },
                grants: HashMap::new(),
            })),
            jwks_fetches: Arc::default(),
        };
        let app = Router::new()
            .route("/.well-known/openid-configuration", get(discovery))
            .route("/jwks", get(jwks))
            .route("/authorize", get(authorize))
            .route("/token", post(token))
            .with_state(issuer.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        issuer
    }

    pub fn url(&self) -> Url {
        self.lock().url.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().expect("not poisoned")
    }

    pub fn next_token(&self, kind: Token) {
        self.lock().next = kind;
    }

    pub fn next_person(&self, person: Person) {
        self.lock().person = person;
    }

    /// Publishes only a new key and signs with it from now on.
    pub fn rotate_key(&self, kid: &str) {
        self.lock().published = vec![SigningKey::new(kid)];
    }
}

async fn discovery(State(issuer): State<Issuer>) -> Json<Value> {
    let base = issuer.url();
    let at = |path: &str| base.join(path).expect("url").to_string();
    Json(json!({
        "issuer": base.as_str().trim_end_matches('/'),
        "authorization_endpoint": at("/authorize"),
        "token_endpoint": at("/token"),
        "jwks_uri": at("/jwks"),
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["ES256"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic"],
    }))
}

async fn jwks(State(issuer): State<Issuer>) -> Json<Value> {
    issuer.jwks_fetches.fetch_add(1, Ordering::SeqCst);
    let keys: Vec<Value> = issuer
        .lock()
        .published
        .iter()
        .map(SigningKey::jwk)
        .collect();
    Json(json!({ "keys": keys }))
}

/// Approves at once: back to the client with a code and the state.
async fn authorize(
    State(issuer): State<Issuer>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let param = |name: &str| query.get(name).cloned().unwrap_or_default();
    if param("client_id") != CLIENT_ID || param("code_challenge_method") != "S256" {
        return (StatusCode::BAD_REQUEST, "bad client or no PKCE").into_response();
    }
    let code = format!("code-{}", uuid::Uuid::new_v4());
    let grant = Grant {
        nonce: param("nonce"),
        challenge: param("code_challenge"),
        redirect_uri: param("redirect_uri"),
    };
    let mut back = Url::parse(&grant.redirect_uri).expect("a redirect URI");
    back.query_pairs_mut()
        .append_pair("code", &code)
        .append_pair("state", &param("state"));
    issuer.lock().grants.insert(code, grant);
    Redirect::to(back.as_str()).into_response()
}

fn basic_ok(headers: &http::HeaderMap) -> bool {
    let expected =
        base64::engine::general_purpose::STANDARD.encode(format!("{CLIENT_ID}:{CLIENT_SECRET}"));
    headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        == Some(&format!("Basic {expected}"))
}

async fn token(
    State(issuer): State<Issuer>,
    headers: http::HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let refuse = |what: &str| {
        let body = json!({"error": "invalid_grant", "error_description": what});
        (StatusCode::BAD_REQUEST, Json(body)).into_response()
    };
    if !basic_ok(&headers) {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"error": "invalid_client"})),
        )
            .into_response();
    }
    let param = |name: &str| form.get(name).cloned().unwrap_or_default();
    let mut inner = issuer.lock();
    // Codes are single-use.
    let Some(grant) = inner.grants.remove(&param("code")) else {
        return refuse("unknown or used code");
    };
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(param("code_verifier").as_bytes()));
    if challenge != grant.challenge {
        return refuse("PKCE verifier does not match");
    }
    if param("redirect_uri") != grant.redirect_uri {
        return refuse("redirect_uri differs");
    }
    let id_token = id_token(&inner, &grant);
    Json(json!({"access_token": "at", "token_type": "Bearer", "id_token": id_token}))
        .into_response()
}

fn id_token(inner: &Inner, grant: &Grant) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs() as i64;
    let person = &inner.person;
    let mut claims = json!({
        "iss": inner.url.as_str().trim_end_matches('/'),
        "sub": person.sub,
        "aud": CLIENT_ID,
        "iat": now,
        "exp": now + 300,
        "nonce": grant.nonce,
        "preferred_username": person.username,
        "groups": person.groups,
    });
    let key = inner.published.first().expect("a published key");
    match inner.next {
        Token::Good => key.sign(&key.kid, &claims),
        Token::WrongNonce => {
            claims["nonce"] = json!("another-nonce");
            key.sign(&key.kid, &claims)
        }
        Token::OtherKey => SigningKey::new("stranger").sign(&key.kid, &claims),
        Token::UnknownKid => SigningKey::new("stranger").sign("stranger", &claims),
        Token::Expired => {
            // Past the server's minute of leeway.
            claims["iat"] = json!(now - 600);
            claims["exp"] = json!(now - 300);
            key.sign(&key.kid, &claims)
        }
        Token::WrongAudience => {
            claims["aud"] = json!("another-client");
            key.sign(&key.kid, &claims)
        }
    }
}
