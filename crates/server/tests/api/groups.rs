//! Groups, agent pools, group quotas and `allowed_groups`, through the API
//! with protocol-level agents: a user of group A cannot get a session onto
//! group B's agent by any request, and the refusal says why; a user gets
//! the most generous of their own and their groups' limits; templates
//! limited to groups are hidden from and refused to everyone else.

use crate::fake_agent::FakeAgent;
use crate::{TestApp, on_both_engines};
use anyhow::Context;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::time::Duration;
use streamspace_protocol::{Action, Phase, SessionReport};
use streamspace_server::store::Store;
use streamspace_testkit::Api;

const PASSWORD: &str = "a-long-password";

/// The system audit log's `(actor, kind, target, outcome)` rows of kinds
/// starting with `prefix`, oldest first.
async fn audited(
    app: &TestApp,
    prefix: &str,
) -> anyhow::Result<Vec<(String, String, String, String)>> {
    use sqlx::Row;
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&app.database_url).await?;
    let rows = sqlx::query(
        "SELECT actor, kind, target, outcome FROM audit_log WHERE kind LIKE $1 ORDER BY id",
    )
    .bind(format!("{prefix}%"))
    .fetch_all(&pool)
    .await?;
    pool.close().await;
    rows.iter()
        .map(|r| {
            let text = |c: &str| {
                r.try_get::<Option<String>, _>(c)
                    .map(Option::unwrap_or_default)
            };
            Ok((
                text("actor")?,
                text("kind")?,
                text("target")?,
                text("outcome")?,
            ))
        })
        .collect()
}

fn event(kind: &str, target: &str) -> (String, String, String, String) {
    (
        "user:admin".into(),
        kind.into(),
        target.into(),
        "success".into(),
    )
}

/// Enrolls an agent into `pool` (the token's), sending `labels` of its
/// own, and connects it; returns it and its id.
async fn pool_agent(
    app: &TestApp,
    name: &str,
    pool: &str,
    labels: Value,
) -> anyhow::Result<(FakeAgent, String)> {
    let admin = &app.admin;
    let token = admin
        .expect(
            Method::POST,
            "/api/v1/agents/enrollment-tokens",
            Some(json!({"pool": pool})),
            StatusCode::CREATED,
        )
        .await?;
    assert_eq!(token["pool"], pool);
    let body = json!({"enrollment_token": token["token"], "name": name, "platform": "docker",
                      "region": format!("region-{name}"), "labels": labels});
    let answer = Api::new(&app.url)
        .expect(
            Method::POST,
            "/api/v1/agents/register",
            Some(body),
            StatusCode::CREATED,
        )
        .await?;
    let id = answer["agent_id"].as_str().context("agent_id")?.to_owned();
    let secret = answer["secret"].as_str().context("secret")?;
    let agent = FakeAgent::connect_with_capacity(&app.url, &id, secret, 5).await?;
    admin.wait_for_agent(name, Duration::from_secs(10)).await?;
    Ok((agent, id))
}

/// A group named `name` with `pools`, holding a new user of that name;
/// returns the user's client and id.
async fn member(app: &TestApp, name: &str, group: Value) -> anyhow::Result<(Api, String)> {
    let admin = &app.admin;
    let group = admin
        .expect(
            Method::POST,
            "/api/v1/groups",
            Some(group),
            StatusCode::CREATED,
        )
        .await?;
    let user = admin.create_user(name, PASSWORD).await?;
    let user_id = user["id"].as_str().context("user id")?.to_owned();
    let path = format!(
        "/api/v1/groups/{}/members/{user_id}",
        group["id"].as_str().unwrap_or_default()
    );
    admin
        .expect(Method::PUT, &path, None, StatusCode::OK)
        .await?;
    Ok((Api::login(&app.url, name, PASSWORD).await?, user_id))
}

/// A user (made if need be) whose login's groups claim named `groups`: the
/// foundation's own sync, as the OIDC login runs it.
async fn claimed_member(app: &TestApp, name: &str, groups: &[&str]) -> anyhow::Result<String> {
    let users = app
        .admin
        .expect(Method::GET, "/api/v1/users", None, StatusCode::OK)
        .await?;
    let existing = users
        .as_array()
        .into_iter()
        .flatten()
        .find(|u| u["username"] == name)
        .cloned();
    let user = match existing {
        Some(user) => user,
        None => app.admin.create_user(name, PASSWORD).await?,
    };
    let id = user["id"].as_str().context("user id")?.to_owned();
    let store = Store::connect(&app.database_url).await?;
    let names: Vec<String> = groups.iter().map(|g| (*g).to_owned()).collect();
    store
        .replace_claimed_groups(&id.clone().into(), &names)
        .await?;
    store.close().await;
    Ok(id)
}

async fn create(api: &Api, body: Value) -> anyhow::Result<streamspace_testkit::api::Answer> {
    api.call(Method::POST, "/api/v1/sessions", Some(body)).await
}

fn error(answer: &streamspace_testkit::api::Answer) -> String {
    answer.body["error"].as_str().unwrap_or_default().to_owned()
}

async fn no_request_reaches_another_groups_agent(app: TestApp) -> anyhow::Result<()> {
    let admin = &app.admin;
    admin
        .create_template(json!({"name": "desktop", "image": "streamspace/desktop:local"}))
        .await?;
    // Host B claims pool "a" in its own labels: that must not count.
    let (_b, host_b) = pool_agent(&app, "host-b", "team-b", json!({"pool": "team-a"})).await?;
    let (mut a, host_a) = pool_agent(&app, "host-a", "team-a", json!({})).await?;
    let (alice, _) = member(
        &app,
        "alice",
        json!({"name": "team-a", "pools": ["team-a"]}),
    )
    .await?;

    // No hint: host A, every time.
    for _ in 0..2 {
        let placed = create(&alice, json!({"template": "desktop"})).await?;
        assert_eq!(placed.status, StatusCode::CREATED, "{}", placed.body);
        assert_eq!(placed.body["agent_id"], host_a.as_str());
        a.expect_command().await?;
    }
    // By id: refused, naming the agent's pool and hers.
    let by_id = create(&alice, json!({"template": "desktop", "agent_id": host_b})).await?;
    assert_eq!(by_id.status, StatusCode::FORBIDDEN, "{}", by_id.body);
    let why = error(&by_id);
    assert!(
        why.contains("host-b is in pool \"team-b\"") && why.contains("\"team-a\""),
        "{why}"
    );
    // By selector: its own "pool" label does not match; its region does,
    // and is refused, naming both pools.
    let by_label = create(
        &alice,
        json!({"template": "desktop", "agent_selector": {"pool": "team-a"}}),
    )
    .await?;
    assert_eq!(
        by_label.body["agent_id"],
        host_a.as_str(),
        "{}",
        by_label.body
    );
    a.expect_command().await?;
    let by_region = create(
        &alice,
        json!({"template": "desktop", "agent_selector": {"region": "region-host-b"}}),
    )
    .await?;
    assert_eq!(
        by_region.status,
        StatusCode::FORBIDDEN,
        "{}",
        by_region.body
    );
    let why = error(&by_region);
    assert!(
        why.contains("\"team-a\"") && why.contains("\"team-b\""),
        "{why}"
    );
    let by_pool = create(
        &alice,
        json!({"template": "desktop", "agent_selector": {"pool": "team-b"}}),
    )
    .await?;
    assert_eq!(by_pool.status, StatusCode::FORBIDDEN, "{}", by_pool.body);
    // Her own host drained: no hint does not spill over onto host B.
    admin
        .expect(
            Method::POST,
            &format!("/api/v1/agents/{host_a}/drain"),
            None,
            StatusCode::OK,
        )
        .await?;
    let spill = create(&alice, json!({"template": "desktop"})).await?;
    assert_eq!(
        spill.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        spill.body
    );
    assert!(error(&spill).contains("1 draining"), "{}", spill.body);
    // An admin may place anywhere.
    let anywhere = create(admin, json!({"template": "desktop", "agent_id": host_b})).await?;
    assert_eq!(anywhere.status, StatusCode::CREATED, "{}", anywhere.body);
    Ok(())
}

/// A warm session on another group's agent is not handed over; once an
/// admin gives the group that pool, it is.
async fn warm_sessions_come_only_from_the_users_pools(app: TestApp) -> anyhow::Result<()> {
    let admin = &app.admin;
    admin
        .create_template(
            json!({"name": "warm", "image": "streamspace/desktop:local", "warm_pool": 1}),
        )
        .await?;
    let (mut b, host_b) = pool_agent(&app, "host-b", "team-b", json!({})).await?;
    let start = b.expect_command().await?;
    assert!(matches!(start.action, Action::Start { .. }), "{start:?}");
    b.complete(&start).await?;
    b.report(SessionReport::new(
        start.session_id.as_str(),
        Phase::Running,
    ))
    .await?;
    let (alice, _) = member(
        &app,
        "alice",
        json!({"name": "team-a", "pools": ["team-a"]}),
    )
    .await?;

    // Give the refill a moment to see it running: still refused.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let refused = create(&alice, json!({"template": "warm"})).await?;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.body);
    assert!(error(&refused).contains("\"team-b\""), "{}", refused.body);

    admin
        .expect(
            Method::PATCH,
            "/api/v1/groups/team-a",
            Some(json!({"pools": ["team-a", "team-b"]})),
            StatusCode::OK,
        )
        .await?;
    let taken = create(&alice, json!({"template": "warm"})).await?;
    assert_eq!(taken.status, StatusCode::CREATED, "{}", taken.body);
    assert_eq!(taken.body["id"], start.session_id.as_str());
    assert_eq!(taken.body["agent_id"], host_b.as_str());
    Ok(())
}

/// Per dimension, the most generous of the user's own and their groups'.
async fn the_most_generous_quota_applies(app: TestApp) -> anyhow::Result<()> {
    let admin = &app.admin;
    admin
        .create_template(
            json!({"name": "desktop", "image": "streamspace/desktop:local",
                                "resources": {"cpu": "1"}}),
        )
        .await?;
    let (_a, _) = pool_agent(&app, "host-a", "default", json!({})).await?;
    let group = json!({"name": "big", "quota": {"max_sessions": 3, "cpu": "1"}});
    let (alice, alice_id) = member(&app, "alice", group).await?;
    admin
        .expect(
            Method::PUT,
            &format!("/api/v1/users/{alice_id}/quota"),
            Some(json!({"max_sessions": 1, "cpu": "2"})),
            StatusCode::OK,
        )
        .await?;
    let quota = alice
        .expect(Method::GET, "/api/v1/users/me/quota", None, StatusCode::OK)
        .await?;
    assert_eq!(quota["limits"]["max_sessions"], 3, "{quota}");
    assert_eq!(quota["limits"]["cpu"], "2", "{quota}");
    assert_eq!(quota["own"]["max_sessions"], 1, "{quota}");
    assert_eq!(quota["groups"][0]["group"], "big", "{quota}");
    assert_eq!(quota["groups"][0]["limits"]["max_sessions"], 3, "{quota}");
    // Two sessions fit the cpu (2), the third does not, though the
    // group's sessions limit (3) would allow it.
    for _ in 0..2 {
        alice.create_session(json!({"template": "desktop"})).await?;
    }
    let third = create(&alice, json!({"template": "desktop"})).await?;
    assert_eq!(third.status, StatusCode::FORBIDDEN, "{}", third.body);
    assert!(error(&third).contains("cpu"), "{}", third.body);
    Ok(())
}

async fn template_names(api: &Api) -> anyhow::Result<Vec<String>> {
    let list = api
        .expect(Method::GET, "/api/v1/templates", None, StatusCode::OK)
        .await?;
    Ok(list
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t["name"].as_str().map(str::to_owned))
        .collect())
}

async fn allowed_groups_hide_and_refuse_templates(app: TestApp) -> anyhow::Result<()> {
    let admin = &app.admin;
    let (_a, _) = pool_agent(&app, "host-a", "default", json!({})).await?;
    admin
        .create_template(
            json!({"name": "secret-app", "image": "streamspace/desktop:local",
                                "allowed_groups": ["finance"]}),
        )
        .await?;
    admin
        .create_template(json!({"name": "open-app", "image": "streamspace/desktop:local"}))
        .await?;
    let (alice, _) = member(&app, "alice", json!({"name": "finance"})).await?;
    admin.create_user("bob", PASSWORD).await?;
    let bob = Api::login(&app.url, "bob", PASSWORD).await?;

    assert_eq!(template_names(&bob).await?, ["open-app"]);
    assert_eq!(template_names(&alice).await?, ["open-app", "secret-app"]);
    assert_eq!(template_names(admin).await?, ["open-app", "secret-app"]);
    bob.expect(
        Method::GET,
        "/api/v1/templates/secret-app",
        None,
        StatusCode::NOT_FOUND,
    )
    .await?;
    let refused = create(&bob, json!({"template": "secret-app"})).await?;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.body);
    assert!(
        error(&refused).contains("limited to groups"),
        "{}",
        refused.body
    );
    // A membership from the identity provider's claim counts the same.
    claimed_member(&app, "carol", &["finance"]).await?;
    let carol = Api::login(&app.url, "carol", PASSWORD).await?;
    assert_eq!(template_names(&carol).await?, ["open-app", "secret-app"]);
    let allowed = create(&alice, json!({"template": "secret-app"})).await?;
    assert_eq!(allowed.status, StatusCode::CREATED, "{}", allowed.body);
    // Bad names are refused with the field.
    let bad = admin
        .refused(Method::POST, "/api/v1/templates",
                 json!({"name": "x", "image": "streamspace/desktop:local", "allowed_groups": ["a", "a"]}),
                 StatusCode::BAD_REQUEST)
        .await?;
    assert_eq!(bad["field"], "allowed_groups[1]");
    Ok(())
}

/// Admin CRUD; a membership from the identity provider is not removed
/// without `force`; only admins; bad input names its field.
async fn admins_manage_groups_and_claimed_memberships_need_force(
    app: TestApp,
) -> anyhow::Result<()> {
    let admin = &app.admin;
    let (alice, _) = member(&app, "alice", json!({"name": "eng", "pools": ["b", "a"]})).await?;
    let group = admin
        .expect(Method::GET, "/api/v1/groups/eng", None, StatusCode::OK)
        .await?;
    assert_eq!(group["pools"], json!(["a", "b"]));
    assert_eq!(group["source"], "local");
    assert_eq!(group["members"][0]["username"], "alice");
    let id = group["id"].as_str().context("id")?.to_owned();

    alice
        .expect(Method::GET, "/api/v1/groups", None, StatusCode::FORBIDDEN)
        .await?;
    alice
        .refused(
            Method::POST,
            "/api/v1/groups",
            json!({"name": "mine"}),
            StatusCode::FORBIDDEN,
        )
        .await?;
    for (body, field) in [
        (json!({"name": ""}), "name"),
        (json!({"name": "x", "pools": ["Not A Slug"]}), "pools[0]"),
        (json!({"name": "x", "pools": ["a", "a"]}), "pools[1]"),
    ] {
        let refused = admin
            .refused(
                Method::POST,
                "/api/v1/groups",
                body,
                StatusCode::BAD_REQUEST,
            )
            .await?;
        assert_eq!(refused["field"], field);
    }
    admin
        .refused(
            Method::POST,
            "/api/v1/groups",
            json!({"name": "eng"}),
            StatusCode::CONFLICT,
        )
        .await?;
    let renamed = admin
        .expect(
            Method::PATCH,
            &format!("/api/v1/groups/{id}"),
            Some(json!({"name": "engineering", "quota": {"max_sessions": 4}})),
            StatusCode::OK,
        )
        .await?;
    assert_eq!(
        (
            renamed["name"].as_str(),
            renamed["quota"]["max_sessions"].as_u64()
        ),
        (Some("engineering"), Some(4))
    );
    assert_eq!(renamed["pools"], json!(["a", "b"]), "pools unchanged");

    // Bob is in it by the identity provider's claim, as his login writes it.
    let bob_id = claimed_member(&app, "bob", &["engineering", "from-idp"]).await?;
    let member_path = format!("/api/v1/groups/{id}/members/{bob_id}");
    let refused = admin.call(Method::DELETE, &member_path, None).await?;
    assert_eq!(refused.status, StatusCode::CONFLICT, "{}", refused.body);
    assert!(error(&refused).contains("next login"), "{}", refused.body);
    let removed = admin
        .expect(
            Method::DELETE,
            &format!("{member_path}?force=true"),
            None,
            StatusCode::OK,
        )
        .await?;
    assert_eq!(removed["members"][0]["username"], "alice", "only bob left");
    assert_eq!(removed["members"].as_array().map(Vec::len), Some(1));
    admin
        .expect(Method::DELETE, &member_path, None, StatusCode::NOT_FOUND)
        .await?;
    // What the refusal said: his next login brings him back.
    claimed_member(&app, "bob", &["engineering", "from-idp"]).await?;
    let back = admin
        .expect(
            Method::GET,
            &format!("/api/v1/groups/{id}"),
            None,
            StatusCode::OK,
        )
        .await?;
    assert_eq!(back["members"].as_array().map(Vec::len), Some(2), "{back}");

    // A group the claim made keeps its name, and is deleted only by force.
    let idp = admin
        .expect(Method::GET, "/api/v1/groups/from-idp", None, StatusCode::OK)
        .await?;
    assert_eq!(idp["source"], "oidc");
    let rename = admin
        .refused(
            Method::PATCH,
            "/api/v1/groups/from-idp",
            json!({"name": "mine"}),
            StatusCode::CONFLICT,
        )
        .await?;
    assert!(rename.to_string().contains("identity provider"), "{rename}");
    admin
        .expect(
            Method::PATCH,
            "/api/v1/groups/from-idp",
            Some(json!({"pools": ["idp"]})),
            StatusCode::OK,
        )
        .await?;
    admin
        .expect(
            Method::DELETE,
            "/api/v1/groups/from-idp",
            None,
            StatusCode::CONFLICT,
        )
        .await?;
    admin
        .expect(
            Method::DELETE,
            "/api/v1/groups/from-idp?force=true",
            None,
            StatusCode::NO_CONTENT,
        )
        .await?;
    admin
        .expect(
            Method::DELETE,
            &format!("/api/v1/groups/{id}"),
            None,
            StatusCode::NO_CONTENT,
        )
        .await?;
    admin
        .expect(
            Method::GET,
            &format!("/api/v1/groups/{id}"),
            None,
            StatusCode::NOT_FOUND,
        )
        .await?;
    // Each change once, by whom, to what; refusals changed nothing.
    assert_eq!(
        audited(&app, "group.").await?,
        [
            event("group.create", "group:eng"),
            event("group.member_add", "group:eng"),
            event("group.update", "group:eng"),
            event("group.member_remove", "group:engineering"),
            event("group.update", "group:from-idp"),
            event("group.delete", "group:from-idp"),
            event("group.delete", "group:engineering"),
        ]
    );
    Ok(())
}

/// Only an admin moves an agent between pools.
async fn admins_move_agents_between_pools(app: TestApp) -> anyhow::Result<()> {
    let admin = &app.admin;
    let (_a, host) = pool_agent(&app, "host-a", "team-a", json!({})).await?;
    let path = format!("/api/v1/agents/{host}");
    let shown = admin
        .expect(Method::GET, &path, None, StatusCode::OK)
        .await?;
    assert_eq!(shown["pool"], "team-a");
    let bad = admin
        .refused(
            Method::PATCH,
            &path,
            json!({"pool": "Team A"}),
            StatusCode::BAD_REQUEST,
        )
        .await?;
    assert_eq!(bad["field"], "pool");
    admin
        .refused(
            Method::PATCH,
            &path,
            json!({"labels": {}}),
            StatusCode::BAD_REQUEST,
        )
        .await?;
    admin.create_user("bob", PASSWORD).await?;
    let bob = Api::login(&app.url, "bob", PASSWORD).await?;
    bob.refused(
        Method::PATCH,
        &path,
        json!({"pool": "default"}),
        StatusCode::FORBIDDEN,
    )
    .await?;
    let moved = admin
        .expect(
            Method::PATCH,
            &path,
            Some(json!({"pool": "team-b"})),
            StatusCode::OK,
        )
        .await?;
    assert_eq!(moved["pool"], "team-b");
    let bad_token = admin
        .refused(
            Method::POST,
            "/api/v1/agents/enrollment-tokens",
            json!({"pool": "a b"}),
            StatusCode::BAD_REQUEST,
        )
        .await?;
    assert_eq!(bad_token["field"], "pool");
    assert_eq!(
        audited(&app, "agent.update").await?,
        [event("agent.update", "agent:host-a")]
    );
    Ok(())
}

on_both_engines!(
    no_request_reaches_another_groups_agent,
    warm_sessions_come_only_from_the_users_pools,
    the_most_generous_quota_applies,
    allowed_groups_hide_and_refuse_templates,
    admins_manage_groups_and_claimed_memberships_need_force,
    admins_move_agents_between_pools,
);
