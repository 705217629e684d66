//! `GET /api/v1/openapi.json` documents exactly the routes the router has,
//! as OpenAPI 3.1 whose references all resolve, and the real server answers
//! each documented operation with a status the document lists.

use crate::{Engine, spawn_app};
use reqwest::{Method, StatusCode};
use serde_json::Value;
use std::collections::BTreeSet;
use streamspace_testkit::Api;

/// The router's source: the routes are read from it, so a route added
/// without an annotation fails this test.
const ROUTER: &str = include_str!("../../src/api/mod.rs");

const METHODS: [&str; 5] = ["get", "post", "put", "delete", "patch"];

/// `(METHOD, path)` of every `.route(…)` in the router; routes before the
/// `/api/v1` nest belong to it.
fn routed() -> BTreeSet<(String, String)> {
    let (api, root) = ROUTER
        .split_once(".nest(\"/api/v1\", api)")
        .expect("the router nests the API under /api/v1");
    let mut routes = BTreeSet::new();
    for (prefix, source) in [("/api/v1", api), ("", root)] {
        for call in source.split(".route(").skip(1) {
            let body = balanced(call);
            let path = body
                .split('"')
                .nth(1)
                .expect("a route starts with its path literal");
            for method in METHODS {
                if calls(body, method) {
                    routes.insert((method.to_uppercase(), format!("{prefix}{path}")));
                }
            }
        }
    }
    routes
}

/// The text up to the parenthesis that closes the one before it.
fn balanced(text: &str) -> &str {
    let mut depth = 1;
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth == 0 {
                    return &text[..i];
                }
            }
            _ => {}
        }
    }
    panic!("unbalanced route call: {text}")
}

/// Whether `body` calls the method router `method(…)` (not `users::get`).
fn calls(body: &str, method: &str) -> bool {
    body.match_indices(&format!("{method}(")).any(|(i, _)| {
        body[..i]
            .chars()
            .next_back()
            .is_none_or(|c| !(c.is_alphanumeric() || c == '_' || c == ':'))
    })
}

fn documented(doc: &Value) -> BTreeSet<(String, String)> {
    let mut ops = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in METHODS {
            if item.get(method).is_some() {
                ops.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    ops
}

fn refs<'a>(value: &'a Value, out: &mut Vec<&'a str>) {
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                match (key.as_str(), v) {
                    ("$ref", Value::String(r)) => out.push(r),
                    _ => refs(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
        _ => {}
    }
}

#[test]
fn the_route_reader_sees_the_router() {
    let routes = routed();
    for expected in [
        ("POST", "/api/v1/auth/login"),
        ("GET", "/api/v1/users/{id}"),
        ("PUT", "/api/v1/users/{id}"),
        ("DELETE", "/api/v1/users/{id}"),
        ("GET", "/api/v1/agents/tunnels/{id}"),
        ("GET", "/vnc/{id}"),
        ("GET", "/metrics"),
    ] {
        let expected = (expected.0.to_owned(), expected.1.to_owned());
        assert!(routes.contains(&expected), "{expected:?} in {routes:?}");
    }
    assert!(routes.len() > 30, "{routes:?}");
}

#[tokio::test]
async fn the_document_covers_every_route() -> anyhow::Result<()> {
    let app = spawn_app(Engine::Sqlite).await;
    let anonymous = Api::new(&app.url);
    let doc = anonymous
        .expect(Method::GET, "/api/v1/openapi.json", None, StatusCode::OK)
        .await?;

    assert_eq!(doc["openapi"], "3.1.0");
    let typed: utoipa::openapi::OpenApi = serde_json::from_value(doc.clone())?;
    assert_eq!(typed.info.title, "StreamSpace");

    let routes = routed();
    let ops = documented(&doc);
    let undocumented: Vec<_> = routes.difference(&ops).collect();
    let unrouted: Vec<_> = ops.difference(&routes).collect();
    assert!(
        undocumented.is_empty(),
        "routes without docs: {undocumented:?}"
    );
    assert!(unrouted.is_empty(), "docs without routes: {unrouted:?}");

    let schemas = doc["components"]["schemas"]
        .as_object()
        .expect("component schemas");
    let mut found = Vec::new();
    refs(&doc, &mut found);
    for r in found {
        let name = r
            .strip_prefix("#/components/schemas/")
            .unwrap_or_else(|| panic!("unexpected $ref {r}"));
        assert!(schemas.contains_key(name), "dangling $ref {r}");
    }

    let mut operation_ids = BTreeSet::new();
    for (method, path) in &ops {
        let op = &doc["paths"][path][method.to_lowercase()];
        let id = op["operationId"].as_str().expect("an operationId");
        assert!(operation_ids.insert(id), "operationId {id} is not unique");
        let responses = op["responses"].as_object().expect("responses");
        let secured = op["security"].as_array().is_some_and(|s| !s.is_empty());
        if secured {
            assert!(responses.contains_key("401"), "{method} {path}: no 401");
        }
        // Anonymous, bodiless and with a made-up id: whatever the real
        // server answers must be a status the document lists.
        let url = path.replace("{id}", "0000-no-such-id");
        let answer = anonymous
            .call(Method::from_bytes(method.as_bytes())?, &url, None)
            .await?;
        let status = answer.status.as_str();
        assert!(
            responses.contains_key(status),
            "{method} {path}: answered {status}, documented {:?}: {}",
            responses.keys().collect::<Vec<_>>(),
            answer.body
        );
    }
    Ok(())
}

#[tokio::test]
async fn errors_have_the_documented_shape() -> anyhow::Result<()> {
    let app = spawn_app(Engine::Sqlite).await;
    let doc = app
        .admin
        .expect(Method::GET, "/api/v1/openapi.json", None, StatusCode::OK)
        .await?;
    let error = &doc["components"]["schemas"]["ErrorBody"];
    assert_eq!(error["required"], serde_json::json!(["error"]));

    let answer = app
        .admin
        .call(
            Method::POST,
            "/api/v1/templates",
            Some(serde_json::json!({"name": "x", "image": "x:1", "ports": [{"name": "vnc", "port": 0, "protocol": "vnc"}]})),
        )
        .await?;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    let keys: BTreeSet<&str> = answer
        .body
        .as_object()
        .expect("an error object")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys, BTreeSet::from(["error", "field"]));
    Ok(())
}

/// `streamspace openapi` (and so `ui/openapi.json`, the source of the web
/// UI's types) prints the document the server serves.
#[tokio::test]
async fn the_printed_document_is_the_served_one() -> anyhow::Result<()> {
    let app = spawn_app(Engine::Sqlite).await;
    let served = Api::new(&app.url)
        .expect(Method::GET, "/api/v1/openapi.json", None, StatusCode::OK)
        .await?;
    let printed: Value = serde_json::from_str(&streamspace_server::api::openapi_json()?)?;
    assert!(
        printed == served,
        "streamspace openapi prints another document than GET /api/v1/openapi.json serves"
    );
    Ok(())
}
