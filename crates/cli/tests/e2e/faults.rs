//! Faults injected into real processes on the real engine: the lifecycle
//! must converge by itself. (Heartbeats are 1 s in these tests, so an agent
//! is offline after 3 s of silence.)

use crate::{Cluster, RUNNING_LIMIT, assert_vnc_works, desktop_template};
use reqwest::{Method, StatusCode};
use serde_json::json;
use std::time::{Duration, Instant};
use streamspace_testkit::rfb::VncSocket;
use streamspace_testkit::{Api, docker, eventually};

const AGENT_LIMIT: Duration = Duration::from_secs(20);

async fn agent_status(admin: &Api, agent_id: &str) -> anyhow::Result<String> {
    let agent = admin
        .expect(
            Method::GET,
            &format!("/api/v1/agents/{agent_id}"),
            None,
            StatusCode::OK,
        )
        .await?;
    Ok(agent["status"].as_str().unwrap_or_default().to_owned())
}

async fn wait_agent_status(admin: &Api, agent_id: &str, want: &str) -> anyhow::Result<()> {
    eventually(AGENT_LIMIT, &format!("agent {want}"), || async {
        Ok((agent_status(admin, agent_id).await? == want).then_some(()))
    })
    .await
}

fn running_containers(session_id: &str) -> anyhow::Result<Vec<String>> {
    Ok(docker::session_containers(session_id)?
        .into_iter()
        .filter(|(_, state)| state == "running")
        .map(|(name, _)| name)
        .collect())
}

#[tokio::test]
async fn control_plane_killed_with_three_sessions_running() -> anyhow::Result<()> {
    let mut c = Cluster::start("crash-agent").await?;
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(
            c.running_session(&c.admin, json!({"template": "desktop"}))
                .await?,
        );
    }
    c.cp.process.kill9().await?;
    c.cp.restart().await?;
    let restarted = Instant::now();
    c.admin.wait_for_agent("crash-agent", AGENT_LIMIT).await?;
    println!(
        "agent reconnected {:?} after the control plane was back",
        restarted.elapsed()
    );
    for id in &ids {
        c.admin.wait_for_phase(id, "Running", RUNNING_LIMIT).await?;
        assert_eq!(
            running_containers(id)?.len(),
            1,
            "session {id} kept its container"
        );
        assert_vnc_works(&c.admin, id).await?;
    }
    Ok(())
}

#[tokio::test]
async fn agent_killed_and_restarted_adopts_its_containers() -> anyhow::Result<()> {
    let mut c = Cluster::start("adopt-agent").await?;
    let a = c
        .running_session(&c.admin, json!({"template": "desktop"}))
        .await?;
    let b = c
        .running_session(&c.admin, json!({"template": "desktop"}))
        .await?;
    c.agent.process.kill9().await?;
    wait_agent_status(&c.admin, &c.agent_id, "offline").await?;
    c.agent.restart()?;
    c.admin.wait_for_agent("adopt-agent", AGENT_LIMIT).await?;
    for id in [&a, &b] {
        c.admin.wait_for_phase(id, "Running", RUNNING_LIMIT).await?;
        assert_eq!(
            docker::session_containers(id)?.len(),
            1,
            "no duplicate for {id}"
        );
    }
    assert_eq!(
        docker::agent_containers(&c.agent_id)?.len(),
        2,
        "nothing orphaned or added"
    );
    assert_vnc_works(&c.admin, &a).await?;
    Ok(())
}

#[tokio::test]
async fn hibernate_while_the_agent_is_down_runs_when_it_returns() -> anyhow::Result<()> {
    let mut c = Cluster::start("down-agent").await?;
    let id = c
        .running_session(&c.admin, json!({"template": "desktop"}))
        .await?;
    c.agent.process.kill9().await?;
    wait_agent_status(&c.admin, &c.agent_id, "offline").await?;
    let session = c.admin.set_state(&id, "hibernated").await?;
    assert_eq!(session["phase"], "Hibernating");
    assert_eq!(session["agent_status"], "offline");
    assert_eq!(
        running_containers(&id)?.len(),
        1,
        "nothing happens without the agent"
    );
    c.agent.restart()?;
    c.admin
        .wait_for_phase(&id, "Hibernated", RUNNING_LIMIT)
        .await?;
    assert!(running_containers(&id)?.is_empty());
    assert_eq!(
        docker::session_containers(&id)?.len(),
        1,
        "stopped, not removed"
    );
    Ok(())
}

#[tokio::test]
async fn container_removed_behind_our_back_fails_the_session() -> anyhow::Result<()> {
    let c = Cluster::start("rm-agent").await?;
    let id = c
        .running_session(&c.admin, json!({"template": "desktop"}))
        .await?;
    docker::remove_container(&format!("streamspace-{id}"))?;
    let removed = Instant::now();
    // Docker's event stream reports it at once; the limit is generous.
    let failed = c
        .admin
        .wait_for_phase(&id, "Failed", Duration::from_secs(10))
        .await?;
    println!("session Failed {:?} after docker rm -f", removed.elapsed());
    let message = failed["message"].as_str().unwrap_or_default();
    assert!(message.contains("removed outside StreamSpace"), "{message}");
    // Failed needs a person: the reconciler does not resurrect it by itself.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(c.admin.session(&id).await?["phase"], "Failed");
    // Waking it recreates the container.
    c.admin.set_state(&id, "running").await?;
    c.admin
        .wait_for_phase(&id, "Running", RUNNING_LIMIT)
        .await?;
    assert_vnc_works(&c.admin, &id).await?;
    Ok(())
}

#[tokio::test]
async fn agent_cut_off_goes_offline_and_comes_back_consistent() -> anyhow::Result<()> {
    let c = Cluster::start("stop-agent").await?;
    let id = c
        .running_session(&c.admin, json!({"template": "desktop"}))
        .await?;
    c.agent.process.signal("STOP")?;
    let result = async {
        wait_agent_status(&c.admin, &c.agent_id, "offline").await?;
        let session = c.admin.session(&id).await?;
        assert_eq!(session["phase"], "Running", "sessions are untouched");
        assert_eq!(session["agent_status"], "offline");
        assert_eq!(running_containers(&id)?.len(), 1);
        anyhow::Ok(())
    }
    .await;
    c.agent.process.signal("CONT")?;
    result?;
    wait_agent_status(&c.admin, &c.agent_id, "online").await?;
    let session = c
        .admin
        .wait_for_phase(&id, "Running", RUNNING_LIMIT)
        .await?;
    assert_eq!(session["agent_status"], "online");
    assert_vnc_works(&c.admin, &id).await?;
    Ok(())
}

#[tokio::test]
async fn idle_sessions_hibernate_and_a_viewer_wakes_them() -> anyhow::Result<()> {
    let c = Cluster::start("idle-agent").await?;
    let mut template = desktop_template("sleepy");
    template["idle_timeout"] = json!("4s");
    c.admin.create_template(template).await?;
    let id = c
        .running_session(&c.admin, json!({"template": "sleepy"}))
        .await?;
    c.admin
        .wait_for_phase(&id, "Hibernated", Duration::from_secs(60))
        .await?;
    assert!(running_containers(&id)?.is_empty(), "compute released");
    let events = c
        .admin
        .expect(
            Method::GET,
            &format!("/api/v1/sessions/{id}/events"),
            None,
            StatusCode::OK,
        )
        .await?;
    let idle = events
        .as_array()
        .and_then(|e| e.iter().find(|e| e["actor"] == "system:idle"));
    let idle = idle.ok_or_else(|| anyhow::anyhow!("no idle event in {events}"))?;
    assert!(
        idle["message"]
            .as_str()
            .unwrap_or_default()
            .contains("idle for 4s"),
        "{idle}"
    );

    // Opening the viewer wakes it and holds the connection until RFB flows.
    let token = c.admin.token.clone().unwrap_or_default();
    let mut vnc = VncSocket::connect(&c.cp.url, &id, &token, &[])
        .await
        .map_err(|r| anyhow::anyhow!("auto-wake refused: {} {}", r.status, r.error))?;
    let init = vnc.handshake().await?;
    vnc.framebuffer_update(&init).await?;
    vnc.close().await;
    let session = c.admin.session(&id).await?;
    assert_eq!(session["state"], "running");
    let events = c
        .admin
        .expect(
            Method::GET,
            &format!("/api/v1/sessions/{id}/events"),
            None,
            StatusCode::OK,
        )
        .await?;
    assert!(
        events
            .as_array()
            .is_some_and(|e| e.iter().any(|e| e["actor"] == "viewer:admin")),
        "the wake is attributed to the viewer: {events}"
    );
    // The system audit log has both: the idle detector's hibernation and
    // the viewer's wake (by the user, through the viewer).
    let path = format!("/api/v1/audit?kind=session.state&target=session:{id}");
    let log = c
        .admin
        .expect(Method::GET, &path, None, StatusCode::OK)
        .await?;
    let changes: Vec<(&str, &str)> = log["events"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            let actor = e["actor"].as_str().unwrap_or_default();
            (actor, e["detail"]["state"].as_str().unwrap_or_default())
        })
        .collect();
    assert_eq!(
        changes,
        [("user:admin", "running"), ("system:idle", "hibernated")],
        "{log}"
    );
    Ok(())
}

#[tokio::test]
async fn quotas_refuse_extra_sessions_and_wakes_over_the_cpu_limit() -> anyhow::Result<()> {
    let c = Cluster::start("quota-agent").await?;
    let quinn = c.admin.create_user("quinn", "quinn-password").await?;
    let path = format!(
        "/api/v1/users/{}/quota",
        quinn["id"].as_str().unwrap_or_default()
    );
    let limits = json!({"max_sessions": 2, "cpu": "1"});
    c.admin
        .expect(Method::PUT, &path, Some(limits), StatusCode::OK)
        .await?;
    let quinn = Api::login(&c.cp.url, "quinn", "quinn-password").await?;
    let one_core = json!({"template": "desktop", "resources": {"cpu": "1"}});

    let a = c.running_session(&quinn, one_core.clone()).await?;
    let refused = quinn
        .call(Method::POST, "/api/v1/sessions", Some(one_core.clone()))
        .await?;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert_eq!(
        refused.body["error"],
        "quota exceeded: cpu: 1 in use + 1 requested > 1 allowed"
    );

    // Hibernation releases CPU, so a second session fits…
    quinn.set_state(&a, "hibernated").await?;
    quinn
        .wait_for_phase(&a, "Hibernated", RUNNING_LIMIT)
        .await?;
    let b = c.running_session(&quinn, one_core.clone()).await?;
    // …but the session count includes hibernated ones,
    let third = quinn
        .call(Method::POST, "/api/v1/sessions", Some(one_core))
        .await?;
    assert_eq!(third.status, StatusCode::FORBIDDEN);
    assert!(
        third.body["error"]
            .as_str()
            .unwrap_or_default()
            .contains("2 of 2 sessions")
    );
    // and waking the first would exceed the CPU limit.
    let wake = quinn
        .call(
            Method::PUT,
            &format!("/api/v1/sessions/{a}/state"),
            Some(json!({"state": "running"})),
        )
        .await?;
    assert_eq!(wake.status, StatusCode::FORBIDDEN, "{}", wake.body);
    assert!(
        wake.body["error"]
            .as_str()
            .unwrap_or_default()
            .starts_with("quota exceeded: cpu")
    );

    // Nothing was created or changed by the refusals.
    let session = quinn.session(&a).await?;
    assert_eq!(
        (session["state"].as_str(), session["phase"].as_str()),
        (Some("hibernated"), Some("Hibernated"))
    );
    let listed = quinn
        .expect(Method::GET, "/api/v1/sessions", None, StatusCode::OK)
        .await?;
    assert_eq!(listed.as_array().map(Vec::len), Some(2));
    assert!(running_containers(&a)?.is_empty());
    assert_eq!(running_containers(&b)?.len(), 1);
    let usage = quinn
        .expect(Method::GET, "/api/v1/users/me/quota", None, StatusCode::OK)
        .await?;
    assert_eq!(
        usage["usage"],
        json!({"sessions": 2, "cpu": "1", "memory": "256Mi"})
    );
    assert_eq!(usage["limits"]["max_sessions"], 2);
    Ok(())
}
