//! Named API tokens: created once with their secret, working as
//! `Authorization: Bearer`, listed without it, refused after revocation and
//! after expiry, bounded in number, name and lifetime, `last_used_at` kept
//! at most once a minute, and never made by another API token.

use crate::revoked_streams::Streamed;
use crate::{TestApp, on_both_engines, run_sql};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::time::Duration;
use streamspace_server::auth::secrets;
use streamspace_testkit::Api;

const TOKENS: &str = "/api/v1/users/me/tokens";

/// Alice, logged in with her password.
async fn alice(app: &TestApp) -> anyhow::Result<Api> {
    app.admin.create_user("alice", "alice-password").await?;
    Api::login(&app.url, "alice", "alice-password").await
}

async fn create(api: &Api, body: Value) -> anyhow::Result<Value> {
    api.expect(Method::POST, TOKENS, Some(body), StatusCode::CREATED)
        .await
}

/// A client sending `token` as its bearer.
fn bearer(app: &TestApp, token: &Value) -> Api {
    let mut api = Api::new(&app.url);
    api.token = token.as_str().map(str::to_owned);
    api
}

async fn me_status(api: &Api) -> anyhow::Result<StatusCode> {
    Ok(api
        .call(Method::GET, "/api/v1/users/me", None)
        .await?
        .status)
}

async fn a_token_works_until_revoked(app: TestApp) -> anyhow::Result<()> {
    let alice = alice(&app).await?;
    let created = create(&alice, json!({"name": "ci deploys", "expires_in": "30d"})).await?;
    let secret = created["token"].as_str().unwrap_or_default().to_owned();
    assert!(secret.starts_with("ssp_"), "{created}");
    assert_eq!(created["name"], "ci deploys");
    let script = bearer(&app, &created["token"]);
    let me = script
        .expect(Method::GET, "/api/v1/users/me", None, StatusCode::OK)
        .await?;
    assert_eq!(me["username"], "alice");

    // The list names it, with its times, and never holds the secret.
    let listed = alice
        .expect(Method::GET, TOKENS, None, StatusCode::OK)
        .await?;
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");
    assert_eq!(listed[0]["id"], created["id"]);
    assert_eq!(listed[0]["expires_at"], created["expires_at"]);
    assert!(!listed.to_string().contains(&secret[4..]), "{listed}");
    assert!(listed[0].get("token").is_none(), "{listed}");
    // Only its hash is stored.
    let stored = run_sql(
        &app,
        &format!(
            "UPDATE api_tokens SET name = name WHERE token_hash = '{}'",
            secrets::hash(&secret)
        ),
    )
    .await?;
    assert_eq!(stored, 1);

    // Bob cannot revoke it; Alice can, and then it stops working.
    let id = created["id"].as_str().unwrap_or_default();
    app.admin.create_user("bob", "bob-password").await?;
    let bob = Api::login(&app.url, "bob", "bob-password").await?;
    let path = format!("{TOKENS}/{id}");
    bob.expect(Method::DELETE, &path, None, StatusCode::NOT_FOUND)
        .await?;
    assert_eq!(me_status(&script).await?, StatusCode::OK);
    alice
        .expect(Method::DELETE, &path, None, StatusCode::NO_CONTENT)
        .await?;
    assert_eq!(me_status(&script).await?, StatusCode::UNAUTHORIZED);
    alice
        .expect(Method::DELETE, &path, None, StatusCode::NOT_FOUND)
        .await?;
    let listed = alice
        .expect(Method::GET, TOKENS, None, StatusCode::OK)
        .await?;
    assert_eq!(listed, json!([]));
    // Her login was not touched.
    assert_eq!(me_status(&alice).await?, StatusCode::OK);
    Ok(())
}

async fn an_expired_token_is_refused(app: TestApp) -> anyhow::Result<()> {
    let alice = alice(&app).await?;
    let created = create(&alice, json!({"name": "short", "expires_in": "1m"})).await?;
    let script = bearer(&app, &created["token"]);
    assert_eq!(me_status(&script).await?, StatusCode::OK);
    // A minute passes (the clock is the database's expiry column).
    let expired = run_sql(
        &app,
        &format!(
            "UPDATE api_tokens SET expires_at = 1 WHERE id = '{}'",
            created["id"].as_str().unwrap_or_default()
        ),
    )
    .await?;
    assert_eq!(expired, 1);
    let answer = script.call(Method::GET, "/api/v1/users/me", None).await?;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{}", answer.body);
    assert!(
        answer.body["error"]
            .as_str()
            .unwrap_or_default()
            .contains("expired")
    );
    let listed = alice
        .expect(Method::GET, TOKENS, None, StatusCode::OK)
        .await?;
    assert_eq!(listed, json!([]), "expired tokens are not listed");
    // Its name is free again.
    create(&alice, json!({"name": "short"})).await?;
    Ok(())
}

async fn bad_names_and_lifetimes_are_refused_by_field(app: TestApp) -> anyhow::Result<()> {
    let alice = alice(&app).await?;
    let cases = [
        (json!({"name": "  "}), "name"),
        (json!({"name": "x".repeat(65)}), "name"),
        (json!({"name": "a\tb"}), "name"),
        (json!({"name": "ok", "expires_in": "30s"}), "expires_in"),
        (json!({"name": "ok", "expires_in": "400d"}), "expires_in"),
        (json!({"name": "ok", "expires_in": "forever"}), "expires_in"),
    ];
    for (body, field) in cases {
        let refused = alice
            .refused(Method::POST, TOKENS, body.clone(), StatusCode::BAD_REQUEST)
            .await?;
        assert_eq!(refused["field"], field, "{body}: {refused}");
    }
    alice
        .refused(
            Method::POST,
            TOKENS,
            json!({"name": "ok", "scope": "all"}),
            StatusCode::BAD_REQUEST,
        )
        .await?;
    // A name is unique among your live tokens.
    create(&alice, json!({"name": "laptop"})).await?;
    let taken = alice
        .refused(
            Method::POST,
            TOKENS,
            json!({"name": " laptop "}),
            StatusCode::CONFLICT,
        )
        .await?;
    assert!(
        taken["error"]
            .as_str()
            .unwrap_or_default()
            .contains("laptop")
    );
    Ok(())
}

async fn tokens_are_bounded_per_user(app: TestApp) -> anyhow::Result<()> {
    let alice = alice(&app).await?;
    let limit = streamspace_server::api::MAX_API_TOKENS_PER_USER;
    for i in 0..limit {
        create(&alice, json!({"name": format!("t{i}")})).await?;
    }
    let refused = alice
        .refused(
            Method::POST,
            TOKENS,
            json!({"name": "one more"}),
            StatusCode::CONFLICT,
        )
        .await?;
    assert!(
        refused["error"]
            .as_str()
            .unwrap_or_default()
            .contains(&format!("{limit} API tokens")),
        "{refused}"
    );
    // The limit is Alice's: the admin still gets one.
    create(&app.admin, json!({"name": "one more"})).await?;
    // Revoking one makes room.
    let listed = alice
        .expect(Method::GET, TOKENS, None, StatusCode::OK)
        .await?;
    let id = listed[0]["id"].as_str().unwrap_or_default();
    let path = format!("{TOKENS}/{id}");
    alice
        .expect(Method::DELETE, &path, None, StatusCode::NO_CONTENT)
        .await?;
    create(&alice, json!({"name": "one more"})).await?;
    Ok(())
}

async fn an_api_token_cannot_make_another(app: TestApp) -> anyhow::Result<()> {
    let alice = alice(&app).await?;
    let created = create(&alice, json!({"name": "script"})).await?;
    let script = bearer(&app, &created["token"]);
    let refused = script
        .refused(
            Method::POST,
            TOKENS,
            json!({"name": "child"}),
            StatusCode::FORBIDDEN,
        )
        .await?;
    assert!(
        refused["error"]
            .as_str()
            .unwrap_or_default()
            .contains("cannot create"),
        "{refused}"
    );
    // It may list and revoke, itself included.
    let path = format!("{TOKENS}/{}", created["id"].as_str().unwrap_or_default());
    script
        .expect(Method::DELETE, &path, None, StatusCode::NO_CONTENT)
        .await?;
    assert_eq!(me_status(&script).await?, StatusCode::UNAUTHORIZED);
    Ok(())
}

/// The stored `last_used_at` of token `id`, read through the API.
async fn last_used(alice: &Api, id: &Value) -> anyhow::Result<Value> {
    let listed = alice
        .expect(Method::GET, TOKENS, None, StatusCode::OK)
        .await?;
    let token = listed
        .as_array()
        .and_then(|l| l.iter().find(|t| t["id"] == *id))
        .cloned()
        .unwrap_or_default();
    Ok(token["last_used_at"].clone())
}

async fn last_use_is_written_at_most_once_a_minute(app: TestApp) -> anyhow::Result<()> {
    let alice = alice(&app).await?;
    let created = create(&alice, json!({"name": "busy script"})).await?;
    let id = &created["id"];
    assert_eq!(last_used(&alice, id).await?, Value::Null, "never used yet");
    let script = bearer(&app, &created["token"]);
    me_status(&script).await?;
    let first = last_used(&alice, id).await?;
    assert!(first.is_string(), "{first}");
    // A storm of requests within the minute writes nothing more.
    for _ in 0..20 {
        assert_eq!(me_status(&script).await?, StatusCode::OK);
    }
    assert_eq!(last_used(&alice, id).await?, first);
    // A minute later, the next request writes it again.
    let id_text = id.as_str().unwrap_or_default();
    run_sql(
        &app,
        &format!(
            "UPDATE api_tokens SET last_used_at = last_used_at - 61000 WHERE id = '{id_text}'"
        ),
    )
    .await?;
    let earlier = last_used(&alice, id).await?;
    assert_ne!(earlier, first);
    me_status(&script).await?;
    let later = last_used(&alice, id).await?;
    assert!(later.as_str() > earlier.as_str(), "{earlier} then {later}");
    Ok(())
}

async fn revoking_a_token_closes_its_streams(app: TestApp) -> anyhow::Result<()> {
    let alice = alice(&app).await?;
    let created = create(&alice, json!({"name": "watcher"})).await?;
    let script = bearer(&app, &created["token"]);
    let mut events = Streamed::get(&script, "/api/v1/events").await?;
    events.expect("event: ping").await?;
    let path = format!("{TOKENS}/{}", created["id"].as_str().unwrap_or_default());
    alice
        .expect(Method::DELETE, &path, None, StatusCode::NO_CONTENT)
        .await?;
    let took = events.ends_within(Duration::from_secs(1)).await?;
    println!("the revoked token's event stream ended {took:?} after the revocation");
    assert_eq!(me_status(&alice).await?, StatusCode::OK, "the login stays");
    Ok(())
}

on_both_engines!(
    revoking_a_token_closes_its_streams,
    a_token_works_until_revoked,
    an_expired_token_is_refused,
    bad_names_and_lifetimes_are_refused_by_field,
    tokens_are_bounded_per_user,
    an_api_token_cannot_make_another,
    last_use_is_written_at_most_once_a_minute,
);
