//! Single sign-on against a real (small) OpenID Connect issuer served by
//! the test (`oidc_issuer.rs`): the code flow with PKCE through the real
//! endpoints; accounts made just in time and kept in step with the claims
//! (role from the admin group, groups from the groups claim); and every
//! forged or misused answer refused with a message that says why:
//! tampered state, a wrong nonce, a token signed by another key, an
//! expired one, one for another client. Key rotation: a token under a new
//! key id makes the server fetch the keys again, at most once per interval.

use crate::oidc_issuer::{CLIENT_ID, CLIENT_SECRET, Issuer, Person, Token};
use crate::{Engine, TestApp, run_sql, spawn_app_with};
use anyhow::Context;
use reqwest::header::{ACCEPT, COOKIE, LOCATION, SET_COOKIE};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::sync::atomic::Ordering;
use streamspace_server::auth::oidc::OidcConfig;
use streamspace_server::store::Store;
use streamspace_testkit::{ADMIN_PASSWORD, Api};
use url::Url;

async fn app_with(engine: Engine, issuer: &Issuer) -> TestApp {
    let mut config = OidcConfig::new(issuer.url(), CLIENT_ID);
    config.client_secret = Some(CLIENT_SECRET.into());
    config.admin_group = Some("admins".into());
    config.provider_name = "Test IdP".into();
    spawn_app_with(engine, |c| c.oidc = Some(config), None).await
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("a client")
}

/// The value of cookie `name` among a response's `Set-Cookie` headers.
fn set_cookie(response: &reqwest::Response, name: &str) -> Option<String> {
    response
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split(';').next()?.split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, value)| value.to_owned())
}

fn location(response: &reqwest::Response) -> anyhow::Result<Url> {
    let to = response.headers().get(LOCATION).context("no Location")?;
    Ok(Url::parse(to.to_str()?)?)
}

/// A login started at the server and approved at the issuer: the callback
/// URL the browser is sent back to, and the browser's pending cookie.
struct Approved {
    callback: Url,
    cookie: String,
}

async fn approved(app: &TestApp) -> anyhow::Result<Approved> {
    let http = client();
    let start = http
        .get(app.url.join("/api/v1/auth/oidc/login")?)
        .send()
        .await?;
    anyhow::ensure!(
        start.status() == StatusCode::SEE_OTHER,
        "login: {}",
        start.status()
    );
    let cookie = set_cookie(&start, "streamspace_oidc").context("no pending cookie")?;
    let to_issuer = location(&start)?;
    let back = http.get(to_issuer).send().await?;
    anyhow::ensure!(
        back.status() == StatusCode::SEE_OTHER,
        "authorize: {}",
        back.status()
    );
    Ok(Approved {
        callback: location(&back)?,
        cookie,
    })
}

async fn finish(app: &TestApp, approved: &Approved) -> anyhow::Result<reqwest::Response> {
    let mut callback = approved.callback.clone();
    callback.set_host(app.url.host_str())?;
    Ok(client()
        .get(callback)
        .header(COOKIE, format!("streamspace_oidc={}", approved.cookie))
        .send()
        .await?)
}

/// Signs in through the issuer; answers an API client with the login.
async fn sign_in(app: &TestApp) -> anyhow::Result<Api> {
    let response = finish(app, &approved(app).await?).await?;
    let status = response.status();
    let token = set_cookie(&response, "streamspace_token");
    let body = response.text().await?;
    anyhow::ensure!(status == StatusCode::SEE_OTHER, "callback: {status} {body}");
    let mut api = Api::new(&app.url);
    api.token = token;
    Ok(api)
}

/// A sign-in that must be refused with `status` and a message containing
/// `says`.
async fn refused(app: &TestApp, status: StatusCode, says: &str) -> anyhow::Result<()> {
    let response = finish(app, &approved(app).await?).await?;
    assert_refused(response, status, says).await
}

async fn assert_refused(
    response: reqwest::Response,
    status: StatusCode,
    says: &str,
) -> anyhow::Result<()> {
    assert_eq!(set_cookie(&response, "streamspace_token"), None, "no login");
    let got = response.status();
    let body: Value = response.json().await?;
    let error = body["error"].as_str().unwrap_or_default();
    assert_eq!(got, status, "{body}");
    assert!(error.contains(says), "{error:?} should say {says:?}");
    Ok(())
}

fn person(sub: &str, username: &str, groups: &[&str]) -> Person {
    Person {
        sub: sub.into(),
        username: username.into(),
        groups: groups.iter().map(|g| g.to_string()).collect(),
    }
}

async fn groups_of(app: &TestApp, user_id: &str) -> anyhow::Result<Vec<String>> {
    let store = Store::connect(&app.database_url).await?;
    let id = serde_json::from_value(json!(user_id))?;
    let mut names = store.group_names_of(&id).await?;
    names.sort();
    Ok(names)
}

async fn sign_in_makes_and_syncs_the_account(engine: Engine) -> anyhow::Result<()> {
    let issuer = Issuer::start().await;
    let app = app_with(engine, &issuer).await;
    issuer.next_person(person(
        "sub-ann",
        "Ann.Lee@corp.example",
        &["staff", "admins"],
    ));
    let ann = sign_in(&app).await?;
    let me = ann
        .expect(Method::GET, "/api/v1/users/me", None, StatusCode::OK)
        .await?;
    assert_eq!(me["username"], "ann-lee-corp-example");
    assert_eq!(me["role"], "admin", "in the admin group");
    let id = me["id"].as_str().context("an id")?.to_owned();
    assert_eq!(groups_of(&app, &id).await?, ["admins", "staff"]);

    // The next sign-in brings the account in step: out of the admin group,
    // into another; the same account (by subject), not a new one.
    issuer.next_person(person(
        "sub-ann",
        "Ann.Lee@corp.example",
        &["staff", "design"],
    ));
    let ann = sign_in(&app).await?;
    let me = ann
        .expect(Method::GET, "/api/v1/users/me", None, StatusCode::OK)
        .await?;
    assert_eq!(
        (me["id"].as_str(), me["role"].as_str()),
        (Some(id.as_str()), Some("user"))
    );
    assert_eq!(groups_of(&app, &id).await?, ["design", "staff"]);

    // Audited: two successful single sign-on logins of this user.
    let logins = run_sql(
        &app,
        "UPDATE audit_log SET kind = kind WHERE kind = 'auth.login' \
         AND target = 'user:ann-lee-corp-example' AND outcome = 'success' \
         AND detail LIKE '%\"oidc\"%'",
    )
    .await?;
    assert_eq!(logins, 2);
    // A single sign-on account has no password to log in with.
    let password = Api::new(&app.url)
        .call(
            Method::POST,
            "/api/v1/auth/login",
            Some(json!({"username": "ann-lee-corp-example", "password": "!oidc"})),
        )
        .await?;
    assert_eq!(password.status, StatusCode::UNAUTHORIZED);
    // Nor can an admin give it one: that would be a way in around the provider.
    let set = json!({"password": "a-password-of-ann"});
    let path = format!("/api/v1/users/{id}");
    let refused = app
        .admin
        .refused(Method::PUT, &path, set, StatusCode::CONFLICT)
        .await?;
    assert!(refused.to_string().contains("single sign-on"), "{refused}");
    Ok(())
}

#[tokio::test]
async fn sign_in_makes_and_syncs_the_account_on_sqlite() -> anyhow::Result<()> {
    sign_in_makes_and_syncs_the_account(Engine::Sqlite).await
}

#[tokio::test]
async fn sign_in_makes_and_syncs_the_account_on_postgres() -> anyhow::Result<()> {
    sign_in_makes_and_syncs_the_account(Engine::Postgres).await
}

/// Each forged or misused answer is refused, saying why, and logs no one in.
#[tokio::test]
async fn forged_tokens_are_refused() -> anyhow::Result<()> {
    let issuer = Issuer::start().await;
    let app = app_with(Engine::Sqlite, &issuer).await;
    let cases = [
        (Token::WrongNonce, "nonce"),
        (Token::OtherKey, "signature does not verify"),
        (Token::Expired, "expired"),
        (Token::WrongAudience, "another client"),
        (
            Token::UnknownKid,
            "key the identity provider does not publish",
        ),
    ];
    for (token, says) in cases {
        issuer.next_token(token);
        refused(&app, StatusCode::UNAUTHORIZED, says)
            .await
            .with_context(|| format!("{token:?}"))?;
    }
    issuer.next_token(Token::Good);
    sign_in(&app).await.context("a good token still signs in")?;
    let failures = run_sql(
        &app,
        "UPDATE audit_log SET kind = kind WHERE kind = 'auth.login' \
         AND outcome = 'failure' AND detail LIKE '%\"oidc\"%'",
    )
    .await?;
    assert_eq!(failures, cases.len() as u64, "each refusal is audited");
    Ok(())
}

/// The callback must carry this browser's state and cookie; a code works
/// once; a browser is sent to the login page with the message.
#[tokio::test]
async fn callbacks_that_are_not_this_browsers_login_are_refused() -> anyhow::Result<()> {
    let issuer = Issuer::start().await;
    let app = app_with(Engine::Sqlite, &issuer).await;

    let mut tampered = approved(&app).await?;
    let pairs: Vec<(String, String)> = tampered.callback.query_pairs().into_owned().collect();
    tampered
        .callback
        .query_pairs_mut()
        .clear()
        .extend_pairs(pairs.iter().map(|(k, v)| {
            (
                k.as_str(),
                if k == "state" {
                    "forged-state"
                } else {
                    v.as_str()
                },
            )
        }));
    assert_refused(
        finish(&app, &tampered).await?,
        StatusCode::BAD_REQUEST,
        "state",
    )
    .await?;

    let mut no_cookie = approved(&app).await?;
    no_cookie.cookie = String::new();
    let answer = finish(&app, &no_cookie).await?;
    assert_refused(answer, StatusCode::BAD_REQUEST, "cookie").await?;

    let mut forged_cookie = approved(&app).await?;
    forged_cookie.cookie = format!("x{}", forged_cookie.cookie);
    let answer = finish(&app, &forged_cookie).await?;
    assert_refused(answer, StatusCode::BAD_REQUEST, "not made by this server").await?;

    // The provider's "no": its error is passed on.
    let mut denied = approved(&app).await?;
    denied
        .callback
        .query_pairs_mut()
        .append_pair("error", "access_denied");
    let answer = finish(&app, &denied).await?;
    assert_refused(answer, StatusCode::UNAUTHORIZED, "access_denied").await?;

    // A code is good once.
    let used = approved(&app).await?;
    assert_eq!(finish(&app, &used).await?.status(), StatusCode::SEE_OTHER);
    let again = finish(&app, &used).await?;
    assert_refused(again, StatusCode::BAD_GATEWAY, "unknown or used code").await?;

    // A browser lands on the login page with the message.
    let mut callback = tampered.callback.clone();
    callback.set_host(app.url.host_str())?;
    let browser = client()
        .get(callback)
        .header(ACCEPT, "text/html,application/xhtml+xml")
        .header(COOKIE, format!("streamspace_oidc={}", tampered.cookie))
        .send()
        .await?;
    assert_eq!(browser.status(), StatusCode::SEE_OTHER);
    let to = browser
        .headers()
        .get(LOCATION)
        .context("Location")?
        .to_str()?
        .to_owned();
    assert!(
        to.starts_with("/?login_error=") && to.contains("state"),
        "{to}"
    );
    Ok(())
}

/// A new key at the provider is fetched when a token names it; made-up key
/// ids do not make the server fetch the keys again and again.
#[tokio::test]
async fn rotated_keys_are_fetched_at_most_once_per_interval() -> anyhow::Result<()> {
    let issuer = Issuer::start().await;
    let app = app_with(Engine::Sqlite, &issuer).await;
    sign_in(&app).await?;
    assert_eq!(issuer.jwks_fetches.load(Ordering::SeqCst), 1);
    issuer.rotate_key("key-2");
    sign_in(&app).await.context("a token under the new key")?;
    assert_eq!(
        issuer.jwks_fetches.load(Ordering::SeqCst),
        2,
        "fetched for the new kid"
    );
    issuer.next_token(Token::UnknownKid);
    for _ in 0..3 {
        refused(&app, StatusCode::UNAUTHORIZED, "does not publish").await?;
    }
    assert_eq!(
        issuer.jwks_fetches.load(Ordering::SeqCst),
        2,
        "rate-limited"
    );
    Ok(())
}

/// An account the provider did not make is not taken over by a sign-in
/// under its name.
#[tokio::test]
async fn a_local_account_is_not_taken_over() -> anyhow::Result<()> {
    let issuer = Issuer::start().await;
    let app = app_with(Engine::Sqlite, &issuer).await;
    app.admin.create_user("bob", "bob-password-1").await?;
    issuer.next_person(person("sub-bob", "Bob", &[]));
    refused(&app, StatusCode::CONFLICT, "belongs to another account").await?;
    Api::login(&app.url, "bob", "bob-password-1")
        .await
        .context("bob keeps his password")?;
    Ok(())
}

/// `password_login` off: passwords are refused except the break-glass
/// admin's; turning it off needs single sign-on; the login page learns it.
#[tokio::test]
async fn password_login_can_be_turned_off_with_sso_only() -> anyhow::Result<()> {
    let plain = crate::spawn_app(Engine::Sqlite).await;
    let off = json!({"mfa_required": "off", "password_login": false,
                     "break_glass_admin": "admin", "audit_retention_days": 365});
    let answer = plain
        .admin
        .call(Method::PUT, "/api/v1/settings", Some(off.clone()))
        .await?;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{:?}", answer.body);
    assert!(
        answer.body["error"]
            .as_str()
            .unwrap_or_default()
            .contains("--oidc-issuer")
    );
    assert_eq!(answer.body["field"], "password_login");

    let issuer = Issuer::start().await;
    let app = app_with(Engine::Sqlite, &issuer).await;
    app.admin.create_user("carol", "carol-password-1").await?;
    app.admin
        .expect(Method::PUT, "/api/v1/settings", Some(off), StatusCode::OK)
        .await?;
    let carol = Api::new(&app.url)
        .call(
            Method::POST,
            "/api/v1/auth/login",
            Some(json!({"username": "carol", "password": "carol-password-1"})),
        )
        .await?;
    assert_eq!(carol.status, StatusCode::FORBIDDEN);
    assert!(
        carol.body["error"]
            .as_str()
            .unwrap_or_default()
            .contains("sign in with Test IdP")
    );
    Api::login(&app.url, "admin", ADMIN_PASSWORD)
        .await
        .context("the break-glass admin")?;
    let providers = Api::new(&app.url)
        .expect(Method::GET, "/api/v1/auth/providers", None, StatusCode::OK)
        .await?;
    assert_eq!(providers["password"], false);
    assert_eq!(providers["oidc"]["name"], "Test IdP");
    Ok(())
}
