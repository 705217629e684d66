//! Warm pools on the real Docker engine: a template with `warm_pool: 1`
//! keeps one desktop running for nobody; a launch takes it (Running at
//! once, its VNC answering through `/vnc` for its new owner), the pool
//! refills, pooled sessions are in no one's list, and shrinking the pool
//! ends what it no longer needs.

use crate::{Cluster, RUNNING_LIMIT, assert_vnc_works, desktop_template};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use streamspace_testkit::{Api, docker, eventually};

/// Containers of `template` (by its id label) on the engine, by state.
fn containers_of(template_id: &str) -> anyhow::Result<Vec<String>> {
    let filter = format!("label=io.streamspace.template-id={template_id}");
    let out = docker::docker(&["ps", "-a", "--filter", &filter, "--format", "{{.State}}"])?;
    Ok(out.lines().map(str::to_owned).collect())
}

async fn ready(admin: &Api, template: &str) -> anyhow::Result<u64> {
    let pool = admin
        .expect(
            Method::GET,
            &format!("/api/v1/templates/{template}/pool"),
            None,
            StatusCode::OK,
        )
        .await?;
    Ok(pool["ready"].as_u64().unwrap_or_default())
}

#[tokio::test]
async fn a_launch_takes_a_warm_session_and_the_pool_refills() -> anyhow::Result<()> {
    let cluster = Cluster::start("pool-agent").await?;
    let admin = &cluster.admin;
    let mut template = desktop_template("pooled");
    template["warm_pool"] = json!(1);
    let created = admin.create_template(template.clone()).await?;
    let template_id = created["id"].as_str().unwrap_or_default().to_owned();
    eventually(RUNNING_LIMIT, "a warm session", || async {
        Ok((ready(admin, "pooled").await? == 1).then_some(()))
    })
    .await?;
    admin.create_user("carol", "carol-password-1").await?;
    let carol = Api::login(&cluster.cp.url, "carol", "carol-password-1").await?;
    let mine = carol
        .expect(Method::GET, "/api/v1/sessions", None, StatusCode::OK)
        .await?;
    assert_eq!(mine, json!([]), "a pooled session is nobody's");
    let all = admin
        .expect(
            Method::GET,
            "/api/v1/sessions?all=true",
            None,
            StatusCode::OK,
        )
        .await?;
    assert_eq!(all, json!([]), "nor in the admin's list");

    let session = carol.create_session(json!({"template": "pooled"})).await?;
    assert_eq!(session["phase"], "Running", "taken warm: {session}");
    assert_eq!(session["user"], "carol");
    let id = session["id"].as_str().unwrap_or_default().to_owned();
    assert_vnc_works(&carol, &id).await?;
    let events = carol
        .expect(
            Method::GET,
            &format!("/api/v1/sessions/{id}/events"),
            None,
            StatusCode::OK,
        )
        .await?;
    let taken = events.as_array().into_iter().flatten().any(|e: &Value| {
        e["message"]
            .as_str()
            .is_some_and(|m| m.contains("warm pool"))
    });
    assert!(taken, "the audit trail says where it came from: {events}");

    eventually(RUNNING_LIMIT, "the pool refilled", || async {
        Ok((ready(admin, "pooled").await? == 1).then_some(()))
    })
    .await?;
    assert_eq!(
        containers_of(&template_id)?.len(),
        2,
        "carol's and the new warm one"
    );

    // A launch that asks for its own resources starts cold.
    let cold = carol
        .create_session(json!({"template": "pooled", "resources": {"cpu": "1"}}))
        .await?;
    assert_eq!(cold["phase"], "Pending");
    let cold_id = cold["id"].as_str().unwrap_or_default().to_owned();
    carol
        .wait_for_phase(&cold_id, "Running", RUNNING_LIMIT)
        .await?;

    // A pool made smaller ends the sessions it no longer needs.
    template["warm_pool"] = json!(0);
    admin
        .expect(
            Method::PUT,
            "/api/v1/templates/pooled",
            Some(template),
            StatusCode::OK,
        )
        .await?;
    // Carol's two sessions stay; the warm one goes.
    eventually(RUNNING_LIMIT, "the warm session ended", || async {
        let gone = containers_of(&template_id)?.len() == 2 && ready(admin, "pooled").await? == 0;
        Ok(gone.then_some(()))
    })
    .await?;
    Ok(())
}
