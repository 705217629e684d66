//! Tunnels across replicas: two control planes of the real binary on one
//! PostgreSQL, a real Docker agent connected to B, a viewer on A. The
//! agent's data channel lands on B (its control plane), which relays it to
//! A through A's internal endpoint; the refusals of that endpoint; and the
//! fast 503 when the agent is online nowhere.

use crate::{RUNNING_LIMIT, assert_vnc_works, bin, desktop_template, require_desktop_image};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use streamspace_testkit::docker::Cleanup;
use streamspace_testkit::{AgentProcess, Api, ControlPlane, Mode, postgres};
use url::Url;

struct Replicas {
    database: String,
    a: ControlPlane,
    b: ControlPlane,
    on_a: Api,
    on_b: Api,
}

impl Replicas {
    async fn start() -> anyhow::Result<Self> {
        let database = postgres::fresh_database().await?;
        let a = ControlPlane::start(bin(), Mode::Server, Some(&database)).await?;
        let b = ControlPlane::start(bin(), Mode::Server, Some(&database)).await?;
        let (on_a, on_b) = (Api::admin(&a.url).await?, Api::admin(&b.url).await?);
        Ok(Self {
            database,
            a,
            b,
            on_a,
            on_b,
        })
    }

    /// The ids of the running replicas, from the registry.
    async fn replica_ids(&self) -> anyhow::Result<Vec<String>> {
        let pool = sqlx::PgPool::connect(&self.database).await?;
        let ids = sqlx::query_scalar("SELECT id FROM replicas ORDER BY started_at")
            .fetch_all(&pool)
            .await?;
        Ok(ids)
    }

    fn logs(&self) -> String {
        format!(
            "replica A log:\n{}\nreplica B log:\n{}",
            self.a.process.log(),
            self.b.process.log()
        )
    }
}

/// A raw upgrade request to the tunnel protocol, as an agent or a replica
/// sends it; the refusal's status and body.
async fn upgrade(
    base: &Url,
    path: &str,
    headers: &[(&str, &str)],
) -> anyhow::Result<(StatusCode, Value)> {
    let mut request = reqwest::Client::new()
        .get(base.join(path)?)
        .header("connection", "upgrade")
        .header("upgrade", "streamspace-tunnel/1");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await?;
    let status = response.status();
    Ok((status, response.json().await.unwrap_or(Value::Null)))
}

#[tokio::test]
async fn a_viewer_on_one_replica_sees_a_desktop_whose_agent_is_on_another() -> anyhow::Result<()> {
    require_desktop_image();
    let replicas = Replicas::start().await?;
    let (on_a, on_b) = (&replicas.on_a, &replicas.on_b);
    let token = on_b.enrollment_token().await?;
    let mut agent = AgentProcess::start(bin(), &replicas.b.url, &token, "relay-agent").await?;
    let agent_id = on_b
        .wait_for_agent("relay-agent", Duration::from_secs(30))
        .await
        .map_err(|e| anyhow::anyhow!("{e:#}\nagent log:\n{}", agent.process.log()))?;
    let _cleanup = Cleanup(vec![agent_id.clone()]);
    on_b.create_template(desktop_template("desktop")).await?;
    let session = on_b.create_session(json!({"template": "desktop"})).await?;
    let id = session["id"].as_str().unwrap_or_default().to_owned();
    on_b.wait_for_phase(&id, "Running", RUNNING_LIMIT).await?;

    // Through A: the agent's data channel reaches B, which relays it to A.
    assert_vnc_works(on_a, &id)
        .await
        .map_err(|e| anyhow::anyhow!("{e:#}\n{}", replicas.logs()))?;
    let relayed = on_b.metric("streamspace_tunnels_relayed_total").await?;
    let bytes = on_b
        .metric("streamspace_tunnel_relayed_bytes_total")
        .await?;
    assert_eq!(relayed, 1.0, "B relayed the one tunnel A waited for");
    assert!(
        bytes > 1_000.0,
        "the framebuffer crossed the relay: {bytes}"
    );
    assert!(
        replicas
            .b
            .process
            .log()
            .contains("splicing a relayed tunnel"),
        "plain TCP on both sides: B relays in the kernel\n{}",
        replicas.logs()
    );
    // Through B itself: no relay.
    assert_vnc_works(on_b, &id).await?;
    assert_eq!(on_b.metric("streamspace_tunnels_relayed_total").await?, 1.0);
    assert_eq!(on_a.metric("streamspace_tunnels_relayed_total").await?, 0.0);
    logs_and_files_through_a(on_a, &id).await?;
    let relayed = on_b.metric("streamspace_tunnels_relayed_total").await?;
    assert!(
        relayed >= 3.0,
        "the file transfers were relayed too: {relayed}"
    );

    refusals(&replicas, &agent).await?;

    // Online nowhere: a 503 at once, not a wait for the tunnel time limit.
    agent.process.stop().await?;
    streamspace_testkit::eventually(Duration::from_secs(15), "agent offline", || async {
        let agents = on_a.agents().await?;
        Ok(agents
            .iter()
            .any(|a| a["id"] == agent_id.as_str() && a["status"] != "online")
            .then_some(()))
    })
    .await?;
    let started = Instant::now();
    let refused = streamspace_testkit::rfb::VncSocket::connect_tls(
        &on_a.base,
        &id,
        on_a.token.as_deref().unwrap_or_default(),
        &[],
        None,
    )
    .await
    .err()
    .ok_or_else(|| anyhow::anyhow!("/vnc opened with the agent stopped"))?;
    assert_eq!(refused.status, 503, "{}", refused.error);
    assert!(
        refused
            .error
            .contains("not connected to any control-plane replica"),
        "{}",
        refused.error
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "refused in {:?}",
        started.elapsed()
    );
    Ok(())
}

/// The session's logs and its files, through A: their data channels land
/// on B and are relayed as the viewer's is.
async fn logs_and_files_through_a(on_a: &Api, id: &str) -> anyhow::Result<()> {
    let logs = on_a
        .text(&format!("/api/v1/sessions/{id}/logs?tail=200"))
        .await?;
    anyhow::ensure!(
        logs.contains("TigerVNC"),
        "the session's console output, through A: {logs}"
    );
    let upload = crate::files::sample(200_000);
    let (status, body) = crate::files::put(on_a, id, "relayed.bin", upload.clone()).await;
    anyhow::ensure!(
        status == StatusCode::CREATED,
        "upload through A: {status} {body}"
    );
    let (status, downloaded) = crate::files::get(on_a, id, "relayed.bin").await;
    anyhow::ensure!(status == StatusCode::OK, "download through A: {status}");
    anyhow::ensure!(
        downloaded == upload,
        "downloaded {} bytes through A, not the {} uploaded",
        downloaded.len(),
        upload.len()
    );
    Ok(())
}

/// What the relay refuses: a data channel for a tunnel nobody waits for
/// (the waiting replica says 404, through B), for a replica that is gone,
/// and a call to the internal endpoint without a replica's secret.
async fn refusals(replicas: &Replicas, agent: &AgentProcess) -> anyhow::Result<()> {
    let identity: Value =
        serde_json::from_slice(&std::fs::read(agent.state_dir.join("agent.json"))?)?;
    let bearer = format!("Bearer {}", identity["secret"].as_str().unwrap_or_default());
    let ids = replicas.replica_ids().await?;
    anyhow::ensure!(ids.len() == 2, "two replicas registered: {ids:?}");
    let a_id = &ids[0];
    let random = "0123456789abcdef0123456789abcdef";
    let (a, b) = (&replicas.a.url, &replicas.b.url);

    // To A through B: A is asked, with B's credentials, and has no such tunnel.
    let unknown = format!("/api/v1/agents/tunnels/{a_id}{random}");
    let auth = [("authorization", bearer.as_str())];
    let not_found = StatusCode::NOT_FOUND;
    refused(b, &unknown, &auth, not_found, "waiting for it says").await?;
    let gone = format!("/api/v1/agents/tunnels/{}{random}", "f".repeat(16));
    refused(b, &gone, &auth, not_found, "is gone").await?;
    // A data channel needs an agent's secret, even for a relayed tunnel.
    let stranger = "Bearer ssa_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    let stranger = [("authorization", stranger)];
    refused(b, &unknown, &stranger, StatusCode::UNAUTHORIZED, "agent").await?;

    // The internal endpoint: a replica's id with a secret that is not its
    // own, an unknown replica, no replica at all.
    let internal = format!("/internal/v1/tunnels/{a_id}{random}");
    let forged = "Bearer ssr_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    for replica in [ids[1].as_str(), "0000000000000000"] {
        let headers = [
            ("authorization", forged),
            ("x-streamspace-replica", replica),
            ("x-streamspace-agent", "any"),
        ];
        let unauthorized = StatusCode::UNAUTHORIZED;
        refused(a, &internal, &headers, unauthorized, "no running replica").await?;
    }
    let anonymous = [("x-streamspace-agent", "any")];
    let bad_request = StatusCode::BAD_REQUEST;
    refused(
        a,
        &internal,
        &anonymous,
        bad_request,
        "x-streamspace-replica",
    )
    .await
}

/// Asserts that the upgrade is refused with `status` and an error naming
/// `phrase`.
async fn refused(
    base: &Url,
    path: &str,
    headers: &[(&str, &str)],
    status: StatusCode,
    phrase: &str,
) -> anyhow::Result<()> {
    let (got, body) = upgrade(base, path, headers).await?;
    let error = body["error"].as_str().unwrap_or_default();
    anyhow::ensure!(
        got == status && error.contains(phrase),
        "{path}: expected {status} naming {phrase:?}, got {got} {body}"
    );
    Ok(())
}
