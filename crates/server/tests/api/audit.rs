//! The system audit log: each login and admin change appears exactly once
//! with the right actor, target and outcome; pages stay right while events
//! arrive; the export, a user's own logins, retention, and the bound on
//! anonymous events. Sessions and viewers: `audit_sessions.rs`.

use crate::fake_agent::enroll;
use crate::revoked_streams::user;
use crate::{TestApp, on_both_engines, run_sql, spawn_app_with};
use anyhow::{Context, ensure};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::collections::HashSet;
use std::time::Duration;
use streamspace_testkit::{Api, eventually};

/// Every event matching `query` (`kind=…&actor=…`), newest first, read
/// page by page.
pub(crate) async fn events(app: &TestApp, query: &str) -> anyhow::Result<Vec<Value>> {
    let mut all = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let after = cursor.map(|c| format!("&cursor={c}")).unwrap_or_default();
        let path = format!("/api/v1/audit?limit=500&{query}{after}");
        let page = app
            .admin
            .expect(Method::GET, &path, None, StatusCode::OK)
            .await?;
        all.extend(page["events"].as_array().cloned().unwrap_or_default());
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return Ok(all),
        }
    }
}

/// The one event of `kind` on `target`; fails unless there is exactly one.
pub(crate) async fn the_one(app: &TestApp, kind: &str, target: &str) -> anyhow::Result<Value> {
    let found = events(app, &format!("kind={kind}&target={target}")).await?;
    ensure!(
        found.len() == 1,
        "{kind} on {target}: {} events: {found:#?}",
        found.len()
    );
    Ok(found[0].clone())
}

/// Checks who did it and how it ended.
pub(crate) fn by(event: &Value, actor: &str, outcome: &str) -> anyhow::Result<()> {
    ensure!(
        event["actor"] == actor && event["outcome"] == outcome,
        "expected {actor} / {outcome}: {event}"
    );
    Ok(())
}

pub(crate) async fn call(
    api: &Api,
    method: Method,
    path: &str,
    body: Option<Value>,
    status: StatusCode,
) -> anyhow::Result<Value> {
    api.expect(method, path, body, status).await
}

async fn logins_and_account_changes_are_recorded_once(app: TestApp) -> anyhow::Result<()> {
    let (alice_id, alice) = user(&app, "alice", "user").await?;
    let wrong = json!({"username": "alice", "password": "not-her-password"});
    Api::new(&app.url)
        .refused(
            Method::POST,
            "/api/v1/auth/login",
            wrong,
            StatusCode::UNAUTHORIZED,
        )
        .await?;
    let created = the_one(&app, "user.create", "user:alice").await?;
    by(&created, "user:admin", "success")?;
    assert_eq!(created["detail"]["id"], alice_id.as_str());
    assert_eq!(created["client"], "127.0.0.1");

    let logins = events(&app, "kind=auth.login&target=user:alice").await?;
    assert_eq!(logins.len(), 2, "{logins:#?}");
    by(&logins[0], "anonymous", "failure")?;
    by(&logins[1], "user:alice", "success")?;
    for login in &logins {
        assert_eq!(login["client"], "127.0.0.1");
        assert_eq!(login["detail"]["method"], "password");
    }

    let users = format!("/api/v1/users/{alice_id}");
    let quota = json!({"max_sessions": 3});
    call(
        &app.admin,
        Method::PUT,
        &format!("{users}/quota"),
        Some(quota),
        StatusCode::OK,
    )
    .await?;
    let set = the_one(&app, "user.quota", "user:alice").await?;
    by(&set, "user:admin", "success")?;
    assert_eq!(set["detail"]["quota"]["max_sessions"], 3);
    let role = json!({"role": "admin"});
    call(&app.admin, Method::PUT, &users, Some(role), StatusCode::OK).await?;
    let updated = the_one(&app, "user.update", "user:alice").await?;
    assert_eq!(updated["detail"]["role"], "admin");
    assert_eq!(updated["detail"]["password_set"], false);

    let change = json!({"current_password": "password-123", "new_password": "password-456"});
    call(
        &alice,
        Method::PUT,
        "/api/v1/users/me/password",
        Some(change),
        StatusCode::NO_CONTENT,
    )
    .await?;
    by(
        &the_one(&app, "user.password", "user:alice").await?,
        "user:alice",
        "success",
    )?;
    call(
        &alice,
        Method::POST,
        "/api/v1/auth/logout",
        None,
        StatusCode::NO_CONTENT,
    )
    .await?;
    by(
        &the_one(&app, "auth.logout", "user:alice").await?,
        "user:alice",
        "success",
    )?;
    let again = Api::login(&app.url, "alice", "password-456").await?;
    call(
        &again,
        Method::POST,
        "/api/v1/auth/logout-all",
        None,
        StatusCode::NO_CONTENT,
    )
    .await?;
    let all = the_one(&app, "auth.logout_all", "user:alice").await?;
    by(&all, "user:alice", "success")?;
    assert_eq!(all["detail"]["ended_logins"], 1);

    let demote = json!({"role": "user"});
    call(
        &app.admin,
        Method::PUT,
        &users,
        Some(demote),
        StatusCode::OK,
    )
    .await?;
    call(
        &app.admin,
        Method::DELETE,
        &users,
        None,
        StatusCode::NO_CONTENT,
    )
    .await?;
    by(
        &the_one(&app, "user.delete", "user:alice").await?,
        "user:admin",
        "success",
    )?;
    assert_eq!(
        events(&app, "kind=user.update&target=user:alice")
            .await?
            .len(),
        2
    );
    Ok(())
}

async fn templates_and_agents_are_recorded_once(app: TestApp) -> anyhow::Result<()> {
    let desktop = json!({"name": "desktop", "image": "streamspace/desktop:local"});
    let created = app.admin.create_template(desktop).await?;
    let id = created["id"].as_str().context("template id")?.to_owned();
    let renamed = json!({"name": "workstation", "image": "streamspace/desktop:local"});
    let path = format!("/api/v1/templates/{id}");
    call(
        &app.admin,
        Method::PUT,
        &path,
        Some(renamed),
        StatusCode::OK,
    )
    .await?;
    by(
        &the_one(&app, "template.create", "template:desktop").await?,
        "user:admin",
        "success",
    )?;
    let updated = the_one(&app, "template.update", "template:workstation").await?;
    assert_eq!(updated["detail"]["renamed_from"], "desktop");
    call(
        &app.admin,
        Method::DELETE,
        &path,
        None,
        StatusCode::NO_CONTENT,
    )
    .await?;
    by(
        &the_one(&app, "template.delete", "template:workstation").await?,
        "user:admin",
        "success",
    )?;

    let catalog = r#"{"version": 1, "templates": [{"name": "editor", "image": "streamspace/desktop:local"}]}"#;
    let import = |dry_run: bool| {
        let url = app
            .url
            .join(&format!("/api/v1/templates/import?dry_run={dry_run}"));
        let token = app.admin.token.clone().unwrap_or_default();
        async move {
            let response = reqwest::Client::new()
                .post(url?)
                .bearer_auth(token)
                .header("content-type", "application/json")
                .body(catalog)
                .send()
                .await?;
            ensure!(
                response.status() == StatusCode::OK,
                "{}",
                response.text().await?
            );
            anyhow::Ok(())
        }
    };
    import(true).await?;
    import(false).await?;
    let imported = the_one(&app, "template.import", "templates").await?;
    assert_eq!(
        imported["detail"]["created"], 1,
        "a dry run records nothing"
    );
    assert_eq!(imported["detail"]["created_names"], json!(["editor"]));

    let (agent_id, _secret) = enroll(&app.admin, "host-a").await?;
    by(
        &the_one(&app, "agent.enrollment_token", "agents").await?,
        "user:admin",
        "success",
    )?;
    let registered = the_one(&app, "agent.register", "agent:host-a").await?;
    by(&registered, "agent:host-a", "success")?;
    assert_eq!(registered["detail"]["id"], agent_id.as_str());
    let forged = json!({"enrollment_token": "sse_forged", "name": "host-b", "platform": "docker"});
    Api::new(&app.url)
        .refused(
            Method::POST,
            "/api/v1/agents/register",
            forged,
            StatusCode::UNAUTHORIZED,
        )
        .await?;
    by(
        &the_one(&app, "agent.register", "agent:host-b").await?,
        "anonymous",
        "failure",
    )?;

    let agent = format!("/api/v1/agents/{agent_id}");
    call(
        &app.admin,
        Method::POST,
        &format!("{agent}/drain"),
        None,
        StatusCode::OK,
    )
    .await?;
    call(
        &app.admin,
        Method::POST,
        &format!("{agent}/undrain"),
        None,
        StatusCode::OK,
    )
    .await?;
    call(
        &app.admin,
        Method::DELETE,
        &agent,
        None,
        StatusCode::NO_CONTENT,
    )
    .await?;
    for kind in ["agent.drain", "agent.undrain", "agent.delete"] {
        by(
            &the_one(&app, kind, "agent:host-a").await?,
            "user:admin",
            "success",
        )?;
    }
    Ok(())
}

async fn pages_stay_right_while_events_arrive(app: TestApp) -> anyhow::Result<()> {
    for _ in 0..12 {
        app.admin.clone().as_admin().await?;
    }
    let before = events(&app, "kind=auth.login").await?;
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        // A login between every two pages: recorded above the cursor.
        app.admin.clone().as_admin().await?;
        let after = cursor.map(|c| format!("&cursor={c}")).unwrap_or_default();
        let path = format!("/api/v1/audit?kind=auth.login&limit=5{after}");
        let page = app
            .admin
            .expect(Method::GET, &path, None, StatusCode::OK)
            .await?;
        let ids = page["events"].as_array().context("events")?;
        ensure!(ids.len() <= 5, "limit");
        seen.extend(
            ids.iter()
                .map(|e| e["id"].as_str().unwrap_or_default().to_owned()),
        );
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    // The first page also got the login made just before it.
    let expected: Vec<String> = before
        .iter()
        .map(|e| e["id"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(
        seen.len(),
        expected.len() + 1,
        "each event once, none skipped"
    );
    assert_eq!(seen[1..], expected[..], "newest first, in order");
    assert_eq!(seen.iter().collect::<HashSet<_>>().len(), seen.len());
    Ok(())
}

async fn the_export_and_bad_queries(app: TestApp) -> anyhow::Result<()> {
    let (_, alice) = user(&app, "alice", "user").await?;
    for _ in 0..3 {
        Api::login(&app.url, "alice", "password-123").await?;
    }
    let response = reqwest::Client::new()
        .get(
            app.url
                .join("/api/v1/audit/export?target=user:alice&kind=auth.login&limit=3")?,
        )
        .bearer_auth(app.admin.token.clone().unwrap_or_default())
        .send()
        .await?;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "application/x-ndjson");
    let text = response.text().await?;
    let lines: Vec<Value> = text
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    assert_eq!(lines.len(), 3, "{text}");
    assert!(
        lines
            .iter()
            .all(|l| l["kind"] == "auth.login" && l["target"] == "user:alice")
    );
    let exports = events(&app, "kind=audit.export").await?;
    assert_eq!(exports.len(), 1);
    by(&exports[0], "user:admin", "success")?;
    assert_eq!(exports[0]["detail"]["target"], "user:alice");

    for (query, field) in [
        ("limit=0", "limit"),
        ("limit=501", "limit"),
        ("limit=many", "limit"),
        ("since=yesterday", "since"),
        ("cursor=nope", "cursor"),
        ("kind=Auth%20Login", "kind"),
        (
            "since=2026-12-02T00:00:00Z&until=2026-12-01T00:00:00Z",
            "until",
        ),
    ] {
        let answer = app
            .admin
            .call(Method::GET, &format!("/api/v1/audit?{query}"), None)
            .await?;
        assert_eq!(
            answer.status,
            StatusCode::BAD_REQUEST,
            "{query}: {:?}",
            answer.body
        );
        assert_eq!(answer.body["field"], field, "{query}");
    }
    let unknown = app
        .admin
        .call(Method::GET, "/api/v1/audit?who=alice", None)
        .await?;
    assert_eq!(
        unknown.status,
        StatusCode::BAD_REQUEST,
        "{:?}",
        unknown.body
    );
    for path in ["/api/v1/audit", "/api/v1/audit/export"] {
        let answer = alice.call(Method::GET, path, None).await?;
        assert_eq!(answer.status, StatusCode::FORBIDDEN, "{path}");
    }
    Ok(())
}

async fn you_see_your_own_logins(app: TestApp) -> anyhow::Result<()> {
    let (_, alice) = user(&app, "alice", "user").await?;
    let (_, bob) = user(&app, "bob", "user").await?;
    let wrong = json!({"username": "alice", "password": "a-guess-at-it"});
    Api::new(&app.url)
        .refused(
            Method::POST,
            "/api/v1/auth/login",
            wrong,
            StatusCode::UNAUTHORIZED,
        )
        .await?;
    let mine = call(
        &alice,
        Method::GET,
        "/api/v1/users/me/logins",
        None,
        StatusCode::OK,
    )
    .await?;
    let logins = mine["logins"].as_array().context("logins")?;
    assert_eq!(logins.len(), 2, "{mine}");
    assert_eq!(logins[0]["outcome"], "failure");
    assert_eq!(logins[1]["outcome"], "success");
    assert!(
        logins
            .iter()
            .all(|l| l["target"] == "user:alice" && l["client"] == "127.0.0.1")
    );
    let bobs = call(
        &bob,
        Method::GET,
        "/api/v1/users/me/logins",
        None,
        StatusCode::OK,
    )
    .await?;
    assert_eq!(bobs["logins"].as_array().map(Vec::len), Some(1), "{bobs}");
    Ok(())
}

/// A host without a valid enrollment token is anonymous and unthrottled:
/// past the burst its refusals are counted, not written.
async fn anonymous_events_are_bounded(app: TestApp) -> anyhow::Result<()> {
    let (burst, attempts) = (100, 150);
    let started = std::time::Instant::now();
    for i in 0..attempts {
        let forged = json!({"enrollment_token": "sse_forged", "name": format!("h{i}"), "platform": "docker"});
        let answer = Api::new(&app.url)
            .call(Method::POST, "/api/v1/agents/register", Some(forged))
            .await?;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    }
    let recorded = events(&app, "kind=agent.register&actor=anonymous")
        .await?
        .len();
    // One more per 6 s the attempts took.
    let earned = (started.elapsed().as_secs() / 6 + 1) as usize;
    assert!(
        recorded >= burst && recorded <= burst + earned && recorded < attempts,
        "{recorded} of {attempts} recorded: the burst, then the rate"
    );
    // Logged-in users are never dropped.
    let (_, _alice) = user(&app, "alice", "user").await?;
    assert_eq!(
        events(&app, "kind=auth.login&target=user:alice")
            .await?
            .len(),
        1
    );
    Ok(())
}

on_both_engines!(
    logins_and_account_changes_are_recorded_once,
    templates_and_agents_are_recorded_once,
    pages_stay_right_while_events_arrive,
    the_export_and_bad_queries,
    you_see_your_own_logins,
    anonymous_events_are_bounded,
);

/// Events older than the retention setting are deleted (and the deletion
/// recorded); newer ones stay.
async fn retention_deletes_old_events(app: TestApp) -> anyhow::Result<()> {
    let day_ms: i64 = 24 * 3600 * 1000;
    let now = streamspace_server::store::now_ms();
    for (id, age) in [
        ("00000000-0000-7000-8000-00000000000a", 3),
        ("00000000-0000-7000-8000-00000000000b", 1),
    ] {
        run_sql(
            &app,
            &format!(
                "INSERT INTO audit_log (id, at, actor, kind, outcome) \
                 VALUES ('{id}', {}, 'system:test', 'test.old', 'success')",
                now - age * day_ms - 60_000
            ),
        )
        .await?;
    }
    let settings = app
        .admin
        .expect(Method::GET, "/api/v1/settings", None, StatusCode::OK)
        .await?;
    let mut changed = settings.clone();
    changed["audit_retention_days"] = json!(2);
    call(
        &app.admin,
        Method::PUT,
        "/api/v1/settings",
        Some(changed),
        StatusCode::OK,
    )
    .await?;
    let purge = eventually(Duration::from_secs(10), "the purge", || async {
        Ok(events(&app, "kind=audit.purge").await?.into_iter().next())
    })
    .await?;
    by(&purge, "system:retention", "success")?;
    assert_eq!(purge["detail"]["deleted"], 1);
    assert_eq!(purge["detail"]["retention_days"], 2);
    let left = events(&app, "kind=test.old").await?;
    assert_eq!(left.len(), 1, "the 1-day-old event stays: {left:#?}");
    ensure!(left[0]["id"] == "00000000-0000-7000-8000-00000000000b");
    Ok(())
}

mod retention {
    use super::*;
    use crate::Engine;

    fn quick(config: &mut streamspace_server::Config) {
        config.audit_purge_interval = Duration::from_millis(200);
    }

    #[tokio::test]
    async fn sqlite() -> anyhow::Result<()> {
        retention_deletes_old_events(spawn_app_with(Engine::Sqlite, quick, None).await).await
    }

    #[tokio::test]
    async fn postgres() -> anyhow::Result<()> {
        retention_deletes_old_events(spawn_app_with(Engine::Postgres, quick, None).await).await
    }
}
