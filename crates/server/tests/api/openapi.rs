//! `GET /api/v1/openapi.json` documents exactly the routes the router has,
//! as OpenAPI 3.1 whose references all resolve, and the real server answers
//! each documented operation with a status the document lists.

use crate::{Engine, spawn_app};
use reqwest::{Method, StatusCode};
use serde_json::Value;
use std::collections::BTreeSet;
use streamspace_testkit::Api;

/// The router's source: every route must be registered through
/// utoipa-axum's `routes!`, which hands the document its annotation, so a
/// route cannot be served undocumented. Plain `.route(…)` calls are allowed
/// only for the catch-alls that answer unknown API paths, and for the
/// replicas' internal tunnel endpoint, which is not part of the public API
/// (docs/PROTOCOL.md#across-replicas; the handler checks a replica secret).
const ROUTER: &str = include_str!("../../src/api/mod.rs");

const METHODS: [&str; 5] = ["get", "post", "put", "delete", "patch"];

/// The paths of every plain `.route(…)` call in the router.
fn plain_routes() -> Vec<&'static str> {
    ROUTER
        .split(".route(")
        .skip(1)
        .map(|call| {
            call.split('"')
                .nth(1)
                .expect("a route starts with its path literal")
        })
        .collect()
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
fn every_route_is_registered_with_its_document() {
    assert_eq!(
        plain_routes(),
        ["/internal/v1/tunnels/{id}", "/api/v1", "/api/v1/{*rest}"]
    );
    assert!(
        ROUTER.matches("routes!(").count() > 25,
        "the routes are registered with routes!"
    );
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

    let ops = documented(&doc);
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
        assert!(ops.contains(&expected), "{expected:?} in {ops:?}");
    }
    assert!(ops.len() > 30, "{ops:?}");

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
            !answer.body.to_string().contains("no such API endpoint"),
            "{method} {path} is documented but not routed"
        );
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
