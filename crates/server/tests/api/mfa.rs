//! TOTP MFA through the public API: enrolment, the two-step login with codes
//! the test computes from the secret the server showed, wrong, reused and
//! recovery codes, the single-use challenge, throttling, turning MFA off,
//! an admin's reset, the `mfa_required` setting, and the audit events.

use crate::{Engine, TestApp, spawn_app, spawn_app_with};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::time::Duration;
use streamspace_server::auth::throttle::ThrottleLimits;
use streamspace_testkit::Api;
use totp_rs::{Algorithm, Builder, Secret};

const PASSWORD: &str = "alice-password";

/// Alice's client (logged in with her password) and her TOTP secret, once
/// enrolled; `step` is the time step of the code that confirmed it.
struct Enrolled {
    alice: Api,
    secret: Vec<u8>,
    step: u64,
    recovery_codes: Vec<String>,
}

fn now_step() -> u64 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    now.expect("after 1970").as_secs() / 30
}

/// The code of time step `step`, computed here from the secret.
fn code_at(secret: &[u8], step: u64) -> String {
    let totp = Builder::new()
        .with_algorithm(Algorithm::SHA1)
        .with_digits(6)
        .with_step_duration(30)
        .with_secret(secret.to_vec())
        .build()
        .expect("a valid TOTP");
    totp.generate(step * 30).to_string()
}

/// A code that is no code of the steps the server accepts now.
fn wrong_code(secret: &[u8]) -> String {
    let step = now_step();
    let valid: Vec<String> = (step - 2..=step + 2).map(|s| code_at(secret, s)).collect();
    (0..1_000_000u32)
        .map(|n| format!("{n:06}"))
        .find(|c| !valid.contains(c))
        .expect("a wrong code")
}

async fn enrol(app: &TestApp) -> anyhow::Result<Enrolled> {
    app.admin.create_user("alice", PASSWORD).await?;
    let alice = Api::login(&app.url, "alice", PASSWORD).await?;
    let status = alice
        .expect(Method::GET, "/api/v1/users/me/mfa", None, StatusCode::OK)
        .await?;
    assert_eq!(status["totp"], false, "{status}");
    let started = alice
        .expect(
            Method::POST,
            "/api/v1/users/me/mfa/totp",
            None,
            StatusCode::OK,
        )
        .await?;
    let shown = started["secret"].as_str().expect("the secret");
    let uri = started["otpauth_uri"].as_str().expect("the URI");
    assert!(
        uri.starts_with("otpauth://totp/StreamSpace:alice?"),
        "{uri}"
    );
    assert!(uri.contains(&format!("secret={shown}")), "{uri}");
    assert!(started["qr_svg"].as_str().expect("svg").contains("<svg"));
    let secret = Secret::try_from_base32(shown).expect("base32").to_vec();
    let confirm = "/api/v1/users/me/mfa/totp/confirm";
    let malformed = alice
        .refused(
            Method::POST,
            confirm,
            json!({"code": "12ab"}),
            StatusCode::BAD_REQUEST,
        )
        .await?;
    assert_eq!(malformed["field"], "code", "{malformed}");
    let wrong = json!({"code": wrong_code(&secret)});
    alice
        .refused(Method::POST, confirm, wrong, StatusCode::FORBIDDEN)
        .await?;
    let step = now_step();
    let body = json!({"code": code_at(&secret, step)});
    let confirmed = alice
        .expect(Method::POST, confirm, Some(body), StatusCode::OK)
        .await?;
    let recovery_codes: Vec<String> = serde_json::from_value(confirmed["recovery_codes"].clone())?;
    assert_eq!(recovery_codes.len(), 10);
    Ok(Enrolled {
        alice,
        secret,
        step,
        recovery_codes,
    })
}

/// The password step: its answer, checked to carry no token nor cookie.
async fn password_step(app: &TestApp) -> anyhow::Result<String> {
    let response = reqwest::Client::new()
        .post(app.url.join("/api/v1/auth/login")?)
        .json(&json!({"username": "alice", "password": PASSWORD}))
        .send()
        .await?;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response.headers().get("set-cookie").is_none(),
        "no cookie yet"
    );
    let body: Value = response.json().await?;
    assert_eq!(body["mfa_required"], true, "{body}");
    assert!(body.get("token").is_none(), "no token yet: {body}");
    assert!(body["expires_at"].is_string(), "{body}");
    Ok(body["challenge"].as_str().expect("a challenge").to_owned())
}

/// The second step: the status, the body and whether a cookie was set.
async fn code_step(
    app: &TestApp,
    challenge: &str,
    code: &str,
) -> anyhow::Result<(StatusCode, Value, bool)> {
    let response = reqwest::Client::new()
        .post(app.url.join("/api/v1/auth/login/mfa")?)
        .json(&json!({"challenge": challenge, "code": code}))
        .send()
        .await?;
    let status = response.status();
    let cookie = response.headers().get("set-cookie").is_some();
    Ok((status, response.json().await?, cookie))
}

fn error_of(body: &Value) -> &str {
    body["error"].as_str().unwrap_or_default()
}

async fn enrol_and_log_in_with_totp(engine: Engine) -> anyhow::Result<()> {
    let app = spawn_app(engine).await;
    let Enrolled {
        alice,
        secret,
        step,
        ..
    } = enrol(&app).await?;
    let status = alice
        .expect(Method::GET, "/api/v1/users/me/mfa", None, StatusCode::OK)
        .await?;
    assert_eq!(status["totp"], true, "{status}");
    assert_eq!(status["recovery_codes_left"], 10, "{status}");
    // Enrolling again needs turning it off first.
    alice
        .refused(
            Method::POST,
            "/api/v1/users/me/mfa/totp",
            json!(null),
            StatusCode::CONFLICT,
        )
        .await?;

    let challenge = password_step(&app).await?;
    let (status, body, _) = code_step(&app, &challenge, &wrong_code(&secret)).await?;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert!(error_of(&body).contains("wrong code"), "{body}");
    // The code that confirmed the enrolment was seen: it works no more.
    let (status, body, _) = code_step(&app, &challenge, &code_at(&secret, step)).await?;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert!(error_of(&body).contains("used already"), "{body}");
    // The next step's code (a clock a little ahead) logs in.
    let next = code_at(&secret, step + 1);
    let (status, body, cookie) = code_step(&app, &challenge, &next).await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(cookie, "the login cookie is set");
    assert_eq!(body["user"]["username"], "alice");
    let mut logged_in = Api::new(&app.url);
    logged_in.token = body["token"].as_str().map(str::to_owned);
    logged_in
        .expect(Method::GET, "/api/v1/sessions", None, StatusCode::OK)
        .await?;
    // The challenge served its one login; the code is used up everywhere.
    let (status, body, _) = code_step(&app, &challenge, &next).await?;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert!(error_of(&body).contains("log in again"), "{body}");
    let again = password_step(&app).await?;
    let (status, body, _) = code_step(&app, &again, &next).await?;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert!(error_of(&body).contains("used already"), "{body}");
    // A made-up challenge, a malformed code, an oversized field.
    let (status, _, _) = code_step(&app, "ssm_made-up", &next).await?;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, body, _) = code_step(&app, &again, "not a code").await?;
    assert_eq!(
        (status, &body["field"]),
        (StatusCode::BAD_REQUEST, &json!("code")),
        "{body}"
    );
    let (status, body, _) = code_step(&app, &"x".repeat(4000), &next).await?;
    assert_eq!(
        (status, &body["field"]),
        (StatusCode::BAD_REQUEST, &json!("challenge")),
        "{body}"
    );
    Ok(())
}

#[tokio::test]
async fn enrol_and_log_in_with_totp_on_sqlite() -> anyhow::Result<()> {
    enrol_and_log_in_with_totp(Engine::Sqlite).await
}

#[tokio::test]
async fn enrol_and_log_in_with_totp_on_postgres() -> anyhow::Result<()> {
    enrol_and_log_in_with_totp(Engine::Postgres).await
}

#[tokio::test]
async fn a_recovery_code_works_once() -> anyhow::Result<()> {
    let app = spawn_app(Engine::Sqlite).await;
    let Enrolled {
        alice,
        secret,
        step,
        recovery_codes,
    } = enrol(&app).await?;
    // Spelling does not matter: upper case, spaces for dashes.
    let typed = recovery_codes[0].to_uppercase().replace('-', " ");
    let (status, body, _) = code_step(&app, &password_step(&app).await?, &typed).await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body, _) =
        code_step(&app, &password_step(&app).await?, &recovery_codes[0]).await?;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "used: {body}");
    let status = alice
        .expect(Method::GET, "/api/v1/users/me/mfa", None, StatusCode::OK)
        .await?;
    assert_eq!(status["recovery_codes_left"], 9, "{status}");
    // A new set, for a current code; the old set is void.
    let body = json!({"code": code_at(&secret, step + 1)});
    let renewed = alice
        .expect(
            Method::POST,
            "/api/v1/users/me/mfa/recovery-codes",
            Some(body),
            StatusCode::OK,
        )
        .await?;
    let fresh: Vec<String> = serde_json::from_value(renewed["recovery_codes"].clone())?;
    assert_eq!(fresh.len(), 10);
    let (status, _, _) = code_step(&app, &password_step(&app).await?, &recovery_codes[1]).await?;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "the old set is void");
    let (status, body, _) = code_step(&app, &password_step(&app).await?, &fresh[0]).await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    Ok(())
}

#[tokio::test]
async fn wrong_codes_are_throttled() -> anyhow::Result<()> {
    let limits = ThrottleLimits {
        user_failures: 2,
        address_failures: 100,
        first_lockout: Duration::from_secs(300),
        max_lockout: Duration::from_secs(300),
        forget_after: Duration::from_secs(600),
        max_entries: 1000,
    };
    let app = spawn_app_with(Engine::Sqlite, |c| c.login_throttle = limits, None).await;
    let Enrolled { secret, step, .. } = enrol(&app).await?;
    let wrong = wrong_code(&secret);
    // Each challenge is fresh, so only the throttle can stop the guessing.
    let mut statuses = Vec::new();
    for _ in 0..4 {
        let (status, _, _) = code_step(&app, &password_step(&app).await?, &wrong).await?;
        statuses.push(status.as_u16());
    }
    assert_eq!(statuses, [401, 401, 401, 429]);
    // Locked: the right code waits too, but the password step still answers.
    let response = reqwest::Client::new()
        .post(app.url.join("/api/v1/auth/login/mfa")?)
        .json(&json!({"challenge": password_step(&app).await?, "code": code_at(&secret, step + 1)}))
        .send()
        .await?;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(response.headers().get("retry-after").is_some());
    // The metrics count them apart from wrong passwords (one wrong first
    // code at enrolment, three here).
    let series = |reason| format!("streamspace_login_failures_total{{reason=\"{reason}\"}}");
    assert_eq!(app.admin.metric(&series("bad_code")).await?, 4.0);
    assert_eq!(app.admin.metric(&series("throttled")).await?, 2.0);
    assert_eq!(app.admin.metric(&series("bad_credentials")).await?, 0.0);
    Ok(())
}

#[tokio::test]
async fn a_challenge_takes_five_wrong_codes() -> anyhow::Result<()> {
    let app = spawn_app(Engine::Sqlite).await;
    let Enrolled { secret, step, .. } = enrol(&app).await?;
    let challenge = password_step(&app).await?;
    for _ in 0..5 {
        let (status, _, _) = code_step(&app, &challenge, &wrong_code(&secret)).await?;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    let (status, body, _) = code_step(&app, &challenge, &code_at(&secret, step + 1)).await?;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert!(error_of(&body).contains("log in again"), "{body}");
    Ok(())
}

#[tokio::test]
async fn turning_mfa_off_needs_the_password_and_a_code() -> anyhow::Result<()> {
    let app = spawn_app(Engine::Sqlite).await;
    let Enrolled {
        alice,
        secret,
        step,
        recovery_codes,
    } = enrol(&app).await?;
    let path = "/api/v1/users/me/mfa";
    let code = code_at(&secret, step + 1);
    let wrong_password = json!({"password": "not-hers", "code": code});
    alice
        .refused(Method::DELETE, path, wrong_password, StatusCode::FORBIDDEN)
        .await?;
    let wrong = json!({"password": PASSWORD, "code": wrong_code(&secret)});
    alice
        .refused(Method::DELETE, path, wrong, StatusCode::FORBIDDEN)
        .await?;
    let right = json!({"password": PASSWORD, "code": recovery_codes[0]});
    alice
        .expect(Method::DELETE, path, Some(right), StatusCode::NO_CONTENT)
        .await?;
    // Password-only logins again.
    Api::login(&app.url, "alice", PASSWORD).await?;
    Ok(())
}

#[tokio::test]
async fn an_admin_resets_a_users_mfa() -> anyhow::Result<()> {
    let app = spawn_app(Engine::Sqlite).await;
    let Enrolled { alice, .. } = enrol(&app).await?;
    let me = alice
        .expect(Method::GET, "/api/v1/users/me", None, StatusCode::OK)
        .await?;
    let path = format!("/api/v1/users/{}/mfa", me["id"].as_str().expect("id"));
    alice
        .refused(Method::DELETE, &path, json!(null), StatusCode::FORBIDDEN)
        .await?;
    app.admin
        .expect(Method::DELETE, &path, None, StatusCode::NO_CONTENT)
        .await?;
    app.admin
        .refused(Method::DELETE, &path, json!(null), StatusCode::NOT_FOUND)
        .await?;
    Api::login(&app.url, "alice", PASSWORD).await?;
    Ok(())
}

pub(crate) async fn set_mfa_required(app: &TestApp, who: &str) -> anyhow::Result<()> {
    let mut settings = app
        .admin
        .expect(Method::GET, "/api/v1/settings", None, StatusCode::OK)
        .await?;
    settings["mfa_required"] = json!(who);
    app.admin
        .expect(
            Method::PUT,
            "/api/v1/settings",
            Some(settings),
            StatusCode::OK,
        )
        .await?;
    Ok(())
}

/// The 403 of a user who must enrol first.
pub(crate) async fn held_to_enrolment(client: &Api, path: &str) -> anyhow::Result<()> {
    let refused = client
        .refused(Method::GET, path, json!(null), StatusCode::FORBIDDEN)
        .await?;
    assert!(
        error_of(&refused).starts_with("enrol MFA first"),
        "{refused}"
    );
    Ok(())
}

#[tokio::test]
async fn the_mfa_required_setting_confines_users_to_enrolment() -> anyhow::Result<()> {
    let app = spawn_app(Engine::Sqlite).await;
    app.admin.create_user("bob", "bob-password").await?;
    let bob = Api::login(&app.url, "bob", "bob-password").await?;
    // Admins only: bob is free, the admin (not enrolled) is held.
    set_mfa_required(&app, "admins").await?;
    bob.expect(Method::GET, "/api/v1/sessions", None, StatusCode::OK)
        .await?;
    held_to_enrolment(&app.admin, "/api/v1/settings").await?;
    let status = app
        .admin
        .expect(Method::GET, "/api/v1/users/me/mfa", None, StatusCode::OK)
        .await?;
    assert_eq!(status["required"], true, "{status}");
    // The admin enrols and is free again; then everyone must.
    let started = app
        .admin
        .expect(
            Method::POST,
            "/api/v1/users/me/mfa/totp",
            None,
            StatusCode::OK,
        )
        .await?;
    let secret = Secret::try_from_base32(started["secret"].as_str().expect("secret"))?.to_vec();
    let body = json!({"code": code_at(&secret, now_step())});
    app.admin
        .expect(
            Method::POST,
            "/api/v1/users/me/mfa/totp/confirm",
            Some(body),
            StatusCode::OK,
        )
        .await?;
    set_mfa_required(&app, "everyone").await?;
    for path in [
        "/api/v1/sessions",
        "/api/v1/templates",
        "/api/v1/users/me/quota",
    ] {
        held_to_enrolment(&bob, path).await?;
    }
    let me = bob
        .expect(Method::GET, "/api/v1/users/me", None, StatusCode::OK)
        .await?;
    assert_eq!(me["username"], "bob");
    let status = bob
        .expect(Method::GET, "/api/v1/users/me/mfa", None, StatusCode::OK)
        .await?;
    assert_eq!(
        (&status["required"], &status["totp"]),
        (&json!(true), &json!(false))
    );
    let started = bob
        .expect(
            Method::POST,
            "/api/v1/users/me/mfa/totp",
            None,
            StatusCode::OK,
        )
        .await?;
    let secret = Secret::try_from_base32(started["secret"].as_str().expect("secret"))?.to_vec();
    let body = json!({"code": code_at(&secret, now_step())});
    bob.expect(
        Method::POST,
        "/api/v1/users/me/mfa/totp/confirm",
        Some(body),
        StatusCode::OK,
    )
    .await?;
    bob.expect(Method::GET, "/api/v1/sessions", None, StatusCode::OK)
        .await?;
    // Logging out stays open to a held user.
    app.admin.create_user("carol", "carol-password").await?;
    let carol = Api::login(&app.url, "carol", "carol-password").await?;
    held_to_enrolment(&carol, "/api/v1/sessions").await?;
    carol
        .expect(
            Method::POST,
            "/api/v1/auth/logout",
            None,
            StatusCode::NO_CONTENT,
        )
        .await?;
    Ok(())
}

#[tokio::test]
async fn accounts_without_a_password_are_not_held_and_cannot_enrol() -> anyhow::Result<()> {
    let app = spawn_app(Engine::Sqlite).await;
    app.admin.create_user("dora", "dora-password").await?;
    let dora = Api::login(&app.url, "dora", "dora-password").await?;
    // What a single sign-on account stores: no password hash at all.
    crate::run_sql(
        &app,
        "UPDATE users SET password_hash = '!oidc' WHERE username = 'dora'",
    )
    .await?;
    let started = app
        .admin
        .expect(
            Method::POST,
            "/api/v1/users/me/mfa/totp",
            None,
            StatusCode::OK,
        )
        .await?;
    let secret = Secret::try_from_base32(started["secret"].as_str().expect("secret"))?.to_vec();
    let body = json!({"code": code_at(&secret, now_step())});
    app.admin
        .expect(
            Method::POST,
            "/api/v1/users/me/mfa/totp/confirm",
            Some(body),
            StatusCode::OK,
        )
        .await?;
    set_mfa_required(&app, "everyone").await?;
    dora.expect(Method::GET, "/api/v1/sessions", None, StatusCode::OK)
        .await?;
    let status = dora
        .expect(Method::GET, "/api/v1/users/me/mfa", None, StatusCode::OK)
        .await?;
    assert_eq!(status["required"], false, "{status}");
    let refused = dora
        .refused(
            Method::POST,
            "/api/v1/users/me/mfa/totp",
            json!(null),
            StatusCode::CONFLICT,
        )
        .await?;
    assert!(error_of(&refused).contains("single sign-on"), "{refused}");
    Ok(())
}

/// The audit log's rows of `kind`, oldest first: (actor, target, outcome, detail).
async fn audit_rows(
    app: &TestApp,
    kind: &str,
) -> anyhow::Result<Vec<(String, String, String, Value)>> {
    use sqlx::Row;
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&app.database_url).await?;
    let rows = sqlx::query(
        "SELECT actor, target, outcome, detail FROM audit_log WHERE kind = $1 ORDER BY id",
    )
    .bind(kind)
    .fetch_all(&pool)
    .await?;
    pool.close().await;
    rows.iter()
        .map(|r| {
            let detail: Option<String> = r.try_get("detail")?;
            let detail = serde_json::from_str(&detail.unwrap_or_default()).unwrap_or_default();
            Ok((
                r.try_get("actor")?,
                r.try_get::<Option<String>, _>("target")?
                    .unwrap_or_default(),
                r.try_get("outcome")?,
                detail,
            ))
        })
        .collect()
}

#[tokio::test]
async fn mfa_changes_and_logins_are_audited() -> anyhow::Result<()> {
    let app = spawn_app(Engine::Sqlite).await;
    let Enrolled {
        alice,
        secret,
        step,
        recovery_codes,
    } = enrol(&app).await?;
    let (actor, target) = ("user:alice".to_owned(), "user:alice".to_owned());
    let kinds = |rows: Vec<(String, String, String, Value)>| {
        rows.into_iter()
            .map(|(a, t, o, _)| (a, t, o))
            .collect::<Vec<_>>()
    };
    let enrolled = kinds(audit_rows(&app, "mfa.enroll").await?);
    assert_eq!(
        enrolled,
        [
            (actor.clone(), target.clone(), "failure".to_owned()),
            (actor.clone(), target.clone(), "success".to_owned()),
        ],
        "the wrong first code, then the right one"
    );
    let challenge = password_step(&app).await?;
    code_step(&app, &challenge, &wrong_code(&secret)).await?;
    code_step(&app, &challenge, &code_at(&secret, step + 1)).await?;
    code_step(&app, &password_step(&app).await?, &recovery_codes[0]).await?;
    let logins: Vec<(String, String, String, Value)> = audit_rows(&app, "auth.login")
        .await?
        .into_iter()
        .filter(|(_, t, _, d)| t == "user:alice" && d["method"] != "password")
        .collect();
    let seen: Vec<(&str, &str, &Value)> = logins
        .iter()
        .map(|(a, _, o, d)| (a.as_str(), o.as_str(), &d["method"]))
        .collect();
    assert_eq!(
        seen,
        [
            ("anonymous", "failure", &json!("totp")),
            ("user:alice", "success", &json!("totp")),
            ("user:alice", "success", &json!("recovery")),
        ]
    );
    let body = json!({"code": recovery_codes[1]});
    alice
        .expect(
            Method::POST,
            "/api/v1/users/me/mfa/recovery-codes",
            Some(body),
            StatusCode::OK,
        )
        .await?;
    let off = json!({"password": PASSWORD, "code": recovery_codes[2]});
    alice
        .refused(
            Method::DELETE,
            "/api/v1/users/me/mfa",
            off,
            StatusCode::FORBIDDEN,
        )
        .await?;
    assert_eq!(
        kinds(audit_rows(&app, "mfa.recovery_codes").await?),
        [(actor.clone(), target.clone(), "success".to_owned())]
    );
    assert_eq!(
        kinds(audit_rows(&app, "mfa.disable").await?),
        [(actor, target, "failure".to_owned())],
        "the old set's code no longer turns MFA off"
    );
    Ok(())
}
