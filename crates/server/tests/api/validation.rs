//! Bad input gets a 4xx that names the field and says what to fix, and
//! leaves nothing behind.

use crate::{TestApp, on_both_engines};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use streamspace_testkit::Api;

fn template(overrides: Value) -> Value {
    let mut t = json!({"name": "desktop", "image": "streamspace/desktop:local"});
    if let (Some(t), Some(o)) = (t.as_object_mut(), overrides.as_object()) {
        t.extend(o.clone());
    }
    t
}

async fn bad_templates_are_refused_by_field(app: TestApp) -> anyhow::Result<()> {
    let cases = [
        (json!({"name": "Not A Slug"}), "name"),
        (json!({"image": "Has Spaces:1"}), "image"),
        (
            json!({"resources": {"memory": "2 gigs"}}),
            "resources.memory",
        ),
        (json!({"resources": {"cpu": "lots"}}), "resources.cpu"),
        (
            json!({"ports": [{"name": "vnc", "port": 70000, "protocol": "vnc"}]}),
            "ports[0].port",
        ),
        (
            json!({"ports": [{"name": "vnc", "port": 0, "protocol": "vnc"}]}),
            "ports[0].port",
        ),
        (
            json!({"ports": [{"name": "vnc", "port": 5901, "protocol": "rdp"}]}),
            "ports[0].protocol",
        ),
        (json!({"env": {"1NOPE": "x"}}), "env"),
        // Set from desktop.clipboard; by hand it would be silently overridden.
        (
            json!({"env": {"STREAMSPACE_CLIPBOARD": "both"}}),
            "env.STREAMSPACE_CLIPBOARD",
        ),
        (
            json!({"desktop": {"clipboard": "sometimes"}}),
            "desktop.clipboard",
        ),
        (json!({"idle_timeout": "whenever"}), "idle_timeout"),
        (json!({"platforms": ["mainframe"]}), "platforms"),
        (json!({"colour": "blue"}), "."),
        // Unknown fields are refused at every depth, not dropped.
        (json!({"resources": {"memroy": "1Gi"}}), "resources.memroy"),
        (
            json!({"ports": [{"name": "vnc", "port": 5901, "protocol": "vnc", "tls": true}]}),
            "ports[0].tls",
        ),
        (json!({"max_resources": {"gpus": 1}}), "max_resources.gpus"),
    ];
    for (overrides, field) in cases {
        let body = app
            .admin
            .refused(
                Method::POST,
                "/api/v1/templates",
                template(overrides.clone()),
                StatusCode::BAD_REQUEST,
            )
            .await?;
        if field != "." {
            assert_eq!(body["field"], field, "{overrides}: {body}");
        }
    }
    let memory = app
        .admin
        .refused(
            Method::POST,
            "/api/v1/templates",
            template(json!({"resources": {"memory": "2 gigs"}})),
            StatusCode::BAD_REQUEST,
        )
        .await?;
    assert!(
        memory["error"].as_str().unwrap_or_default().contains("2Gi"),
        "{memory}"
    );
    let listed = app
        .admin
        .expect(Method::GET, "/api/v1/templates", None, StatusCode::OK)
        .await?;
    assert_eq!(listed, json!([]), "nothing was stored");

    app.admin.create_template(template(json!({}))).await?;
    app.admin
        .refused(
            Method::POST,
            "/api/v1/templates",
            template(json!({})),
            StatusCode::CONFLICT,
        )
        .await?;
    Ok(())
}

async fn bad_requests_get_clear_errors(app: TestApp) -> anyhow::Result<()> {
    let api = &app.admin;
    // Not JSON, wrong content type, too large.
    let http = reqwest::Client::new();
    let url = app.url.join("/api/v1/templates")?;
    let token = api.token.clone().unwrap_or_default();
    let garbage = http
        .post(url.clone())
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body("{oops")
        .send()
        .await?;
    assert_eq!(garbage.status(), StatusCode::BAD_REQUEST);
    assert!(garbage.text().await?.contains("not valid JSON"));
    let plain = http
        .post(url.clone())
        .bearer_auth(&token)
        .body("name=x")
        .send()
        .await?;
    assert_eq!(plain.status(), StatusCode::BAD_REQUEST);
    let huge = format!(
        "{{\"name\":\"x\",\"image\":\"x\",\"description\":\"{}\"}}",
        "a".repeat(2 << 20)
    );
    let large = http
        .post(url)
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body(huge)
        .send()
        .await?;
    assert_eq!(large.status(), StatusCode::PAYLOAD_TOO_LARGE);

    // Unknown template; unknown state; unknown endpoint.
    let body = api
        .refused(
            Method::POST,
            "/api/v1/sessions",
            json!({"template": "nope"}),
            StatusCode::BAD_REQUEST,
        )
        .await?;
    assert_eq!(body["field"], "template");
    api.create_template(template(json!({"user_env": ["LANG"]})))
        .await?;
    let body = api
        .refused(
            Method::POST,
            "/api/v1/sessions",
            json!({"template": "desktop", "env": {"A-B": "1"}}),
            StatusCode::BAD_REQUEST,
        )
        .await?;
    assert_eq!(body["field"], "env");
    let body = api
        .refused(
            Method::POST,
            "/api/v1/sessions",
            json!({"template": "desktop", "resources": {"mem": "1Gi"}}),
            StatusCode::BAD_REQUEST,
        )
        .await?;
    assert_eq!(body["field"], "resources.mem");
    let twice = http
        .post(app.url.join("/api/v1/sessions")?)
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body(r#"{"template": "desktop"} {"template": "desktop"}"#)
        .send()
        .await?;
    assert_eq!(twice.status(), StatusCode::BAD_REQUEST);
    assert!(twice.text().await?.contains("exactly one JSON value"));
    let missing = api.call(Method::GET, "/api/v1/nothing-here", None).await?;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert!(missing.body["error"].is_string());

    // Without a login; with a wrong password.
    let anonymous = Api::new(&app.url)
        .call(Method::GET, "/api/v1/sessions", None)
        .await?;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    assert!(
        anonymous.body["error"]
            .as_str()
            .unwrap_or_default()
            .contains("log in")
    );
    let wrong = Api::new(&app.url)
        .call(
            Method::POST,
            "/api/v1/auth/login",
            Some(json!({"username": "admin", "password": "wrong-password"})),
        )
        .await?;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    let nobody = Api::new(&app.url)
        .call(
            Method::POST,
            "/api/v1/auth/login",
            Some(json!({"username": "nobody", "password": "wrong-password"})),
        )
        .await?;
    assert_eq!(
        nobody.body, wrong.body,
        "unknown users look like wrong passwords"
    );

    // Users: bad names and short passwords; no deleting yourself.
    let body = api
        .refused(
            Method::POST,
            "/api/v1/users",
            json!({"username": "Bob Smith", "password": "long enough"}),
            StatusCode::BAD_REQUEST,
        )
        .await?;
    assert_eq!(body["field"], "username");
    let body = api
        .refused(
            Method::POST,
            "/api/v1/users",
            json!({"username": "bob", "password": "short"}),
            StatusCode::BAD_REQUEST,
        )
        .await?;
    assert_eq!(body["field"], "password");
    let me = api
        .expect(Method::GET, "/api/v1/users/me", None, StatusCode::OK)
        .await?;
    let path = format!("/api/v1/users/{}", me["id"].as_str().unwrap_or_default());
    let answer = api.call(Method::DELETE, &path, None).await?;
    assert_eq!(answer.status, StatusCode::CONFLICT);
    Ok(())
}

async fn logout_revokes_the_token(app: TestApp) -> anyhow::Result<()> {
    app.admin.create_user("carol", "carol-password").await?;
    let carol = Api::login(&app.url, "carol", "carol-password").await?;
    carol
        .expect(Method::GET, "/api/v1/users/me", None, StatusCode::OK)
        .await?;
    let answer = carol.call(Method::GET, "/api/v1/users", None).await?;
    assert_eq!(answer.status, StatusCode::FORBIDDEN, "users are not admins");
    carol
        .expect(
            Method::POST,
            "/api/v1/auth/logout",
            None,
            StatusCode::NO_CONTENT,
        )
        .await?;
    let after = carol.call(Method::GET, "/api/v1/users/me", None).await?;
    assert_eq!(after.status, StatusCode::UNAUTHORIZED);
    Ok(())
}

/// Inputs with which scripts/test-api-fuzz.sh (schemathesis) made the
/// server answer 5xx or drop the connection, now refused as bad input.
async fn fuzzed_inputs_are_refused_not_crashed(app: TestApp) -> anyhow::Result<()> {
    // An expiry past the year 9999 panicked when formatted; a longer TTL
    // wrapped around to a token that expired in 1970.
    for ttl in ["70000000h", "1000000000years"] {
        let body = app
            .admin
            .refused(
                Method::POST,
                "/api/v1/agents/enrollment-tokens",
                json!({ "ttl": ttl }),
                StatusCode::BAD_REQUEST,
            )
            .await?;
        assert_eq!(body["field"], "ttl");
    }
    // PostgreSQL can neither store nor look up text holding NUL: 500s.
    let anonymous = Api::new(&app.url);
    let login = anonymous
        .call(
            Method::POST,
            "/api/v1/auth/login",
            Some(json!({"username": "ad\u{0}min", "password": "whatever"})),
        )
        .await?;
    assert!(login.status.is_client_error(), "{login:?}");
    for path in [
        "/api/v1/templates/a%00b",
        "/api/v1/users/a%00b",
        "/api/v1/sessions/a%00b",
        "/api/v1/agents/a%00b",
    ] {
        let answer = app.admin.call(Method::GET, path, None).await?;
        assert!(answer.status.is_client_error(), "{path}: {answer:?}");
    }
    Ok(())
}

/// Whatever in the request is at fault, the answer is `{"error": …}`: an
/// id that is not UTF-8 got axum's plain-text answer, which clients could
/// not read.
async fn bad_paths_get_json_errors(app: TestApp) -> anyhow::Result<()> {
    for path in [
        "/api/v1/templates/%FF",
        "/api/v1/users/%FF",
        "/api/v1/users/%FF/quota",
        "/api/v1/sessions/%FF",
        "/api/v1/sessions/%FF/events",
        "/api/v1/agents/%FF",
        "/api/v1/agents/tunnels/%FF",
        "/internal/v1/tunnels/%FF",
        "/api/v1/sessions/%FF/logs",
        "/vnc/%FF",
    ] {
        let answer = app.admin.call(Method::GET, path, None).await?;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{path}: {answer:?}");
        let error = answer.body["error"].as_str().unwrap_or_default();
        assert!(error.contains("UTF-8"), "{path}: {answer:?}");
    }
    Ok(())
}

/// A method a path does not take is a 405 with `{"error": …}` too, not
/// axum's empty answer.
async fn unknown_methods_get_json_errors(app: TestApp) -> anyhow::Result<()> {
    for (method, path) in [
        (Method::PATCH, "/api/v1/sessions"),
        (Method::POST, "/api/v1/users/me"),
        (Method::DELETE, "/healthz"),
    ] {
        let answer = app.admin.call(method.clone(), path, None).await?;
        assert_eq!(
            answer.status,
            StatusCode::METHOD_NOT_ALLOWED,
            "{method} {path}: {answer:?}"
        );
        let error = answer.body["error"].as_str().unwrap_or_default();
        assert!(
            error.contains(method.as_str()),
            "{method} {path}: {answer:?}"
        );
    }
    Ok(())
}

on_both_engines!(
    bad_templates_are_refused_by_field,
    bad_requests_get_clear_errors,
    logout_revokes_the_token,
    fuzzed_inputs_are_refused_not_crashed,
    bad_paths_get_json_errors,
    unknown_methods_get_json_errors
);
