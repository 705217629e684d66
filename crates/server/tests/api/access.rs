//! Every route admits exactly whom its access rule names: each operation of
//! the OpenAPI document is called as nobody, as a user and as an admin.

use crate::{Engine, TestApp, spawn_app};
use reqwest::{Method, StatusCode};
use serde_json::Value;
use std::time::Duration;
use streamspace_server::api::access::{Access, rule};
use streamspace_testkit::Api;
use url::Url;

/// Who calls: nobody, a user, an admin (their bearer tokens).
struct Callers {
    user: String,
    admin: String,
}

#[tokio::test]
async fn every_route_admits_only_its_rule() -> anyhow::Result<()> {
    let app = spawn_app(Engine::Sqlite).await;
    app.admin.create_user("alice", "alice-password").await?;
    let document = app
        .admin
        .expect(Method::GET, "/api/v1/openapi.json", None, StatusCode::OK)
        .await?;
    let mut operations = operations(&document);
    // Logging out ends the caller's token: those go last, with fresh ones.
    operations.sort_by_key(|(_, _, id)| id.starts_with("logout"));
    assert!(operations.len() > 40, "{} operations", operations.len());
    let mut callers = callers(&app).await?;
    for (method, path, id) in operations {
        let access = rule(&id).map(|r| r.access);
        let access = access.unwrap_or_else(|| panic!("{id} has no access rule"));
        if id.starts_with("logout") {
            callers = self::callers(&app).await?;
        }
        let url = app.url.join(&concrete(&path))?;
        let call = |token| status(&method, &url, upgrade(&id), token);
        let nobody = call(None).await?;
        let user = call(Some(&callers.user)).await?;
        let admin = call(Some(&callers.admin)).await?;
        let seen = format!(
            "{method} {path} ({id}, {access:?}): nobody {nobody}, user {user}, admin {admin}"
        );
        match access {
            Access::Public => assert!([nobody, user, admin].iter().all(|s| admitted(*s)), "{seen}"),
            Access::Agent => assert!(
                [nobody, user, admin]
                    .iter()
                    .all(|s| *s == StatusCode::UNAUTHORIZED),
                "{seen}"
            ),
            Access::User => assert!(
                nobody == StatusCode::UNAUTHORIZED && admitted(user) && admitted(admin),
                "{seen}"
            ),
            Access::Admin => assert!(
                nobody == StatusCode::UNAUTHORIZED
                    && user == StatusCode::FORBIDDEN
                    && admitted(admin),
                "{seen}"
            ),
        }
    }
    Ok(())
}

/// Fresh logins (logging out ends the caller's).
async fn callers(app: &TestApp) -> anyhow::Result<Callers> {
    let token = |api: Api| api.token.expect("a token");
    Ok(Callers {
        user: token(Api::login(&app.url, "alice", "alice-password").await?),
        admin: token(Api::admin(&app.url).await?),
    })
}

fn operations(document: &Value) -> Vec<(Method, String, String)> {
    let mut all = Vec::new();
    for (path, item) in document["paths"].as_object().expect("paths") {
        for (method, operation) in item.as_object().expect("path item") {
            let Ok(method) = method.to_uppercase().parse::<Method>() else {
                continue;
            };
            let id = operation["operationId"].as_str().unwrap_or_default();
            all.push((method, path.clone(), id.to_owned()));
        }
    }
    all
}

/// The path with each `{parameter}` filled with an id that names nothing.
fn concrete(path: &str) -> String {
    let nothing = "0190f0e0-0000-7000-8000-00000000dead";
    path.split('/')
        .map(|part| if part.starts_with('{') { nothing } else { part })
        .collect::<Vec<_>>()
        .join("/")
}

/// Neither unauthenticated nor forbidden: the rule let the caller through
/// (to a 404 for an id that names nothing, a 400 for a missing body…).
fn admitted(status: StatusCode) -> bool {
    status != StatusCode::UNAUTHORIZED && status != StatusCode::FORBIDDEN
}

/// The handshake an agent's channel needs before it looks at a secret.
fn upgrade(id: &str) -> &'static [(&'static str, &'static str)] {
    match id {
        "agentControlChannel" => &[
            ("connection", "upgrade"),
            ("upgrade", "websocket"),
            ("sec-websocket-version", "13"),
            ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ],
        "agentDataChannel" => &[
            ("connection", "upgrade"),
            ("upgrade", "streamspace-tunnel/1"),
        ],
        _ => &[],
    }
}

/// The status alone: streams (events, logs) are not read.
async fn status(
    method: &Method,
    url: &Url,
    headers: &[(&str, &str)],
    token: Option<&str>,
) -> anyhow::Result<StatusCode> {
    let client = reqwest::Client::new();
    let mut request = client
        .request(method.clone(), url.clone())
        .timeout(Duration::from_secs(10));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    Ok(request.send().await?.status())
}
