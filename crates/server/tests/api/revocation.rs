//! Ending logins: a password change ends the user's other logins (an
//! admin's reset ends all of them, and is not for the admin's own), a login
//! still being checked when the password changes gets no token,
//! `logout-all` ends every login of the caller, and expired login and
//! enrollment tokens are purged.

use crate::{TestApp, on_both_engines, spawn_app_with};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::time::Duration;
use streamspace_protocol::UserId;
use streamspace_server::auth::secrets;
use streamspace_server::store::{Store, now_ms};
use streamspace_testkit::api::Answer;
use streamspace_testkit::{ADMIN_PASSWORD, Api, eventually};

/// `username`'s id, after creating them.
async fn user(app: &TestApp, username: &str, password: &str) -> anyhow::Result<UserId> {
    let created = app.admin.create_user(username, password).await?;
    Ok(created["id"].as_str().unwrap_or_default().into())
}

/// The status `api`'s token gets from `GET /users/me`: 200 while it works.
async fn me(api: &Api) -> anyhow::Result<StatusCode> {
    Ok(api
        .call(Method::GET, "/api/v1/users/me", None)
        .await?
        .status)
}

async fn change_password(
    api: &Api,
    current: &str,
    new: &str,
) -> anyhow::Result<(StatusCode, Value)> {
    let body = json!({"current_password": current, "new_password": new});
    let answer = api
        .call(Method::PUT, "/api/v1/users/me/password", Some(body))
        .await?;
    Ok((answer.status, answer.body))
}

/// `streamspace_logins_total` now.
async fn logins_total(app: &TestApp) -> anyhow::Result<u64> {
    let metrics = app.admin.text("/metrics").await?;
    crate::login_throttle::metric(&metrics, "streamspace_logins_total")
}

/// Failed logins and password checks counted as wrong so far.
async fn bad_credentials(app: &TestApp) -> anyhow::Result<u64> {
    let metrics = app.admin.text("/metrics").await?;
    let series = "streamspace_login_failures_total{reason=\"bad_credentials\"}";
    crate::login_throttle::metric(&metrics, series)
}

async fn changing_your_password_ends_your_other_logins(app: TestApp) -> anyhow::Result<()> {
    user(&app, "alice", "alice-password").await?;
    let here = Api::login(&app.url, "alice", "alice-password").await?;
    let elsewhere = Api::login(&app.url, "alice", "alice-password").await?;

    let (status, body) = change_password(&here, "not-it-at-all", "new-password-1").await?;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap_or_default()
            .contains("current password is wrong")
    );
    let (status, body) = change_password(&here, "alice-password", "short").await?;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["field"], "new_password", "{body}");
    // An empty current password is a form left blank, not a guess: 400,
    // and not counted against alice's failures.
    let failed = bad_credentials(&app).await?;
    let (status, body) = change_password(&here, "", "new-password-1").await?;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["field"], "current_password", "{body}");
    assert_eq!(bad_credentials(&app).await?, failed);
    assert_eq!(
        me(&elsewhere).await?,
        StatusCode::OK,
        "refusals change nothing"
    );

    let logins = logins_total(&app).await?;
    let (status, body) = change_password(&here, "alice-password", "new-password-1").await?;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    assert_eq!(
        logins_total(&app).await?,
        logins,
        "a password change is no login"
    );
    assert_eq!(me(&here).await?, StatusCode::OK, "the asking login stays");
    assert_eq!(me(&elsewhere).await?, StatusCode::UNAUTHORIZED);
    assert!(
        Api::login(&app.url, "alice", "alice-password")
            .await
            .is_err()
    );
    Api::login(&app.url, "alice", "new-password-1").await?;
    Ok(())
}

async fn an_admins_password_reset_ends_every_login(app: TestApp) -> anyhow::Result<()> {
    let alice_id = user(&app, "alice", "alice-password").await?;
    let one = Api::login(&app.url, "alice", "alice-password").await?;
    let two = Api::login(&app.url, "alice", "alice-password").await?;
    let bob_id = user(&app, "bob", "bob-password").await?;
    let bob = Api::login(&app.url, "bob", "bob-password").await?;

    let reset = json!({"password": "reset-by-admin"});
    let path = format!("/api/v1/users/{alice_id}");
    app.admin
        .expect(Method::PUT, &path, Some(reset), StatusCode::OK)
        .await?;
    assert_eq!(me(&one).await?, StatusCode::UNAUTHORIZED);
    assert_eq!(me(&two).await?, StatusCode::UNAUTHORIZED);
    assert_eq!(me(&bob).await?, StatusCode::OK, "other users keep theirs");
    Api::login(&app.url, "alice", "reset-by-admin").await?;

    // A role change alone leaves logins in place.
    let promote = json!({"role": "admin"});
    let path = format!("/api/v1/users/{bob_id}");
    app.admin
        .expect(Method::PUT, &path, Some(promote), StatusCode::OK)
        .await?;
    assert_eq!(me(&bob).await?, StatusCode::OK);

    // Not for your own password: that takes the current one, or a stolen
    // admin cookie could change it, keep its token and end the real
    // admin's logins.
    let admin_id = app
        .admin
        .expect(Method::GET, "/api/v1/users/me", None, StatusCode::OK)
        .await?["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let other_admin_login = Api::admin(&app.url).await?;
    let own = json!({"password": "admin-password-2"});
    let path = format!("/api/v1/users/{admin_id}");
    let refused = app
        .admin
        .expect(Method::PUT, &path, Some(own), StatusCode::CONFLICT)
        .await?;
    let error = refused["error"].as_str().unwrap_or_default();
    assert!(error.contains("PUT /api/v1/users/me/password"), "{refused}");
    assert_eq!(me(&app.admin).await?, StatusCode::OK);
    assert_eq!(me(&other_admin_login).await?, StatusCode::OK);
    Api::admin(&app.url).await?;
    Ok(())
}

async fn logout_all_ends_every_login_of_the_caller(app: TestApp) -> anyhow::Result<()> {
    user(&app, "alice", "alice-password").await?;
    let logins = [
        Api::login(&app.url, "alice", "alice-password").await?,
        Api::login(&app.url, "alice", "alice-password").await?,
        Api::login(&app.url, "alice", "alice-password").await?,
    ];
    let response = reqwest::Client::new()
        .post(app.url.join("/api/v1/auth/logout-all")?)
        .bearer_auth(logins[1].token.as_deref().unwrap_or_default())
        .send()
        .await?;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let cookie = response
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    assert!(
        cookie.contains("streamspace_token=;") && cookie.contains("Max-Age=0"),
        "{cookie}"
    );
    for login in &logins {
        assert_eq!(me(login).await?, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(
        me(&app.admin).await?,
        StatusCode::OK,
        "other users keep theirs"
    );
    let anonymous = Api::new(&app.url);
    let answer = anonymous
        .call(Method::POST, "/api/v1/auth/logout-all", None)
        .await?;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    Ok(())
}

/// An argon2id hash of `password` that takes about a second to check but
/// little memory: long enough that a test surely acts while a login checks
/// it.
async fn slow_hash(password: &'static str) -> anyhow::Result<String> {
    use argon2::{Algorithm, Argon2, Params, PasswordHasher, Version};
    tokio::task::spawn_blocking(move || {
        let params = Params::new(4096, 400, 1, None).map_err(|e| anyhow::anyhow!("{e}"))?;
        let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
        let hash = argon.hash_password(password.as_bytes());
        Ok(hash.map_err(|e| anyhow::anyhow!("{e}"))?.to_string())
    })
    .await?
}

/// A login checks the password against the hash it read; if the password
/// changes meanwhile (here on another replica), the change ends every
/// login, and this one must not come out of its check with a token that
/// outlives it (nor, for a deleted user, with a 500).
async fn a_login_racing_a_password_change_gets_no_token(app: TestApp) -> anyhow::Result<()> {
    let alice_id = user(&app, "alice", "alice-password").await?;
    let other_replica = Store::connect(&app.database_url).await?;
    let slow = slow_hash("alice-password").await?;
    let changed = slow_hash("new-password-1").await?;
    other_replica.set_user_password(&alice_id, &slow).await?;
    let base = app.url.clone();
    let login = tokio::spawn(async move { Api::login(&base, "alice", "alice-password").await });
    // Checking the password: it has read the old hash.
    eventually(
        Duration::from_secs(20),
        "the login's password check",
        || async {
            let metrics = app.admin.text("/metrics").await?;
            let checking = crate::login_throttle::metric(&metrics, "streamspace_password_hashes")?;
            Ok((checking > 0).then_some(()))
        },
    )
    .await?;
    other_replica.set_user_password(&alice_id, &changed).await?;
    other_replica.delete_user_tokens(&alice_id, None).await?;
    match login.await? {
        Ok(alice) => anyhow::bail!(
            "the login got a token after the change; GET /users/me with it: {}",
            me(&alice).await?
        ),
        Err(err) => assert!(err.to_string().contains("401"), "{err:#}"),
    }
    other_replica.close().await;
    Ok(())
}

/// `username` with `role`, created by `by`: (id, their logged-in client).
pub async fn new_user(
    app: &TestApp,
    by: &Api,
    username: &str,
    role: &str,
) -> anyhow::Result<(String, Api)> {
    let body = json!({"username": username, "password": "password-123", "role": role});
    let created = by
        .expect(
            Method::POST,
            "/api/v1/users",
            Some(body),
            StatusCode::CREATED,
        )
        .await?;
    let id = created["id"].as_str().unwrap_or_default().to_owned();
    Ok((id, Api::login(&app.url, username, "password-123").await?))
}

/// `by` demotes (or, with `delete`, deletes) the user `id`.
async fn remove(by: &Api, id: &str, delete: bool) -> anyhow::Result<Answer> {
    let path = format!("/api/v1/users/{id}");
    match delete {
        true => by.call(Method::DELETE, &path, None).await,
        false => {
            let demote = json!({"role": "user"});
            by.call(Method::PUT, &path, Some(demote)).await
        }
    }
}

/// Two admins demoting or deleting each other at the same moment: one wins,
/// the other is refused (409 as the last admin, or 403/401 if the first
/// change reached its login before it asked), and an admin always remains.
async fn two_admins_cannot_remove_each_other(app: TestApp) -> anyhow::Result<()> {
    let store = Store::connect(&app.database_url).await?;
    let bootstrap = store.user_credentials("admin").await?;
    let bootstrap = bootstrap.map(|(u, _)| u.id).unwrap_or_default();
    let (mut id, mut boss) = new_user(&app, &app.admin, "boss-0", "admin").await?;
    let handover = remove(&boss, bootstrap.as_str(), true).await?;
    assert_eq!(handover.status, StatusCode::NO_CONTENT, "{handover:?}");
    for round in 1..=6 {
        let (other_id, other) = new_user(&app, &boss, &format!("boss-{round}"), "admin").await?;
        let delete = round % 2 == 0;
        let (mine, theirs) = tokio::join!(
            remove(&boss, &other_id, delete),
            remove(&other, &id, delete)
        );
        let (mine, theirs) = (mine?, theirs?);
        let admins = store.list_users().await?;
        let admins: Vec<_> = admins.iter().filter(|u| u.is_admin()).collect();
        assert_eq!(
            admins.len(),
            1,
            "round {round}: {mine:?}, {theirs:?}: {admins:?}"
        );
        for refused in [&mine, &theirs]
            .iter()
            .filter(|a| a.status == StatusCode::CONFLICT)
        {
            let error = refused.body["error"].as_str().unwrap_or_default();
            assert!(error.ends_with("is the last admin: make another user an admin first"));
        }
        if !mine.status.is_success() {
            (id, boss) = (other_id, other);
        }
    }
    store.close().await;
    Ok(())
}

on_both_engines!(
    changing_your_password_ends_your_other_logins,
    an_admins_password_reset_ends_every_login,
    logout_all_ends_every_login_of_the_caller,
    a_login_racing_a_password_change_gets_no_token,
    two_admins_cannot_remove_each_other,
);

/// Rows of `rows` (a table, perhaps with `WHERE`: `$1` is `value`), read
/// straight from the database.
async fn count(store: &Store, rows: &'static str, value: Option<&str>) -> anyhow::Result<i64> {
    let sql = format!("SELECT COUNT(*) AS n FROM {rows}");
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
    if let Some(value) = value {
        query = query.bind(value);
    }
    let row = query.fetch_one(store.pool()).await?;
    Ok(sqlx::Row::try_get(&row, "n")?)
}

/// Expired login and enrollment tokens are deleted by the periodic purge;
/// live ones stay.
async fn expired_tokens_are_purged(app: TestApp) -> anyhow::Result<()> {
    let store = Store::connect(&app.database_url).await?;
    let alice_id = user(&app, "alice", "alice-password").await?;
    let long_ago = now_ms() - 60_000;
    let (_, password_hash) = store
        .user_credentials("alice")
        .await?
        .ok_or_else(|| anyhow::anyhow!("no alice"))?;
    for _ in 0..3 {
        let token = secrets::generate(secrets::SecretKind::Login);
        let issued = store
            .create_api_token(&secrets::hash(&token), &alice_id, &password_hash, long_ago)
            .await?;
        assert!(issued);
        let enrollment = secrets::generate(secrets::SecretKind::Enrollment);
        store
            .create_enrollment_token(&secrets::hash(&enrollment), "test", long_ago)
            .await?;
    }
    let alice = Api::login(&app.url, "alice", "alice-password").await?;
    app.admin.enrollment_token().await?;

    eventually(Duration::from_secs(5), "expired tokens purged", || async {
        let logins = count(
            &store,
            "api_tokens WHERE user_id = $1",
            Some(alice_id.as_str()),
        )
        .await?;
        let enrollments = count(&store, "enrollment_tokens", None).await?;
        Ok((logins == 1 && enrollments == 1).then_some(()))
    })
    .await?;
    assert_eq!(me(&alice).await?, StatusCode::OK, "the live login stays");
    Api::login(&app.url, "admin", ADMIN_PASSWORD).await?;
    store.close().await;
    Ok(())
}

mod purge {
    use super::*;
    use crate::Engine;

    fn quick(config: &mut streamspace_server::Config) {
        config.token_purge_interval = Duration::from_millis(200);
    }

    #[tokio::test]
    async fn sqlite() -> anyhow::Result<()> {
        expired_tokens_are_purged(spawn_app_with(Engine::Sqlite, quick, None).await).await
    }

    #[tokio::test]
    async fn postgres() -> anyhow::Result<()> {
        expired_tokens_are_purged(spawn_app_with(Engine::Postgres, quick, None).await).await
    }
}
