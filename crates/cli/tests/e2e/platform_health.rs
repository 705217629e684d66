//! Platform health in placement, on the real engine. One agent reaches the
//! engine through a `socat` proxy on a UNIX socket, which the test freezes
//! (SIGSTOP: the engine hangs, as that agent sees it) and later kills (the
//! engine is down); a second agent talks to the engine directly. The frozen
//! agent turns `degraded` within two heartbeats with the reason, new
//! sessions go to the healthy one, a session waiting on the frozen one says
//! why, and the agent is `online` again when the proxy resumes or returns.
//! (Heartbeats are 2 s here, the health check's deadline.)

use crate::{RUNNING_LIMIT, bin, desktop_template, require_desktop_image};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use streamspace_testkit::docker::Cleanup;
use streamspace_testkit::{AgentProcess, Api, ControlPlane, Mode, Options, eventually};

const HEARTBEAT: Duration = Duration::from_secs(2);
/// What polling the API and a loaded machine add to "two heartbeats".
const SLACK: Duration = Duration::from_secs(2);

/// `socat` between a UNIX socket of its own and the engine's, in a process
/// group of its own: every connection is a forked child, so freezing the
/// engine means stopping the whole group.
struct Proxy {
    socket: PathBuf,
    child: Child,
}

impl Proxy {
    fn start(socket: &Path) -> anyhow::Result<Self> {
        let engine = std::env::var("DOCKER_HOST")
            .ok()
            .and_then(|h| h.strip_prefix("unix://").map(str::to_owned))
            .unwrap_or_else(|| "/var/run/docker.sock".into());
        let child = Command::new("socat")
            .arg(format!(
                "UNIX-LISTEN:{},fork,unlink-early",
                socket.display()
            ))
            .arg(format!("UNIX-CONNECT:{engine}"))
            .stdin(Stdio::null())
            .process_group(0)
            .spawn()
            .map_err(|e| anyhow::anyhow!("cannot run socat (scripts/install-deps.sh): {e}"))?;
        let proxy = Proxy {
            socket: socket.to_owned(),
            child,
        };
        let started = Instant::now();
        while !proxy.socket.exists() {
            anyhow::ensure!(
                started.elapsed() < Duration::from_secs(5),
                "socat did not listen"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(proxy)
    }

    fn signal(&self, signal: &str) -> anyhow::Result<()> {
        let group = format!("-{}", self.child.id());
        let status = Command::new("kill")
            .args([&format!("-{signal}"), "--", &group])
            .status()?;
        anyhow::ensure!(status.success(), "kill -{signal} {group} failed");
        Ok(())
    }

    fn kill(mut self) -> anyhow::Result<()> {
        self.signal("KILL")?;
        self.child.wait()?;
        Ok(())
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.signal("KILL");
        let _ = self.child.wait();
    }
}

async fn agent(admin: &Api, id: &str) -> anyhow::Result<Value> {
    let path = format!("/api/v1/agents/{id}");
    admin.expect(Method::GET, &path, None, StatusCode::OK).await
}

/// Waits for the agent's status; returns its view and how long it took.
async fn wait_status(
    admin: &Api,
    id: &str,
    want: &str,
    limit: Duration,
) -> anyhow::Result<(Value, Duration)> {
    let started = Instant::now();
    let view = eventually(limit, &format!("agent {want}"), || async {
        let view = agent(admin, id).await?;
        Ok((view["status"] == want).then_some(view))
    })
    .await?;
    Ok((view, started.elapsed()))
}

async fn start_agent(
    admin: &Api,
    cp: &ControlPlane,
    name: &str,
    env: Vec<(String, String)>,
) -> anyhow::Result<(AgentProcess, String)> {
    let token = admin.enrollment_token().await?;
    let options = Options {
        env,
        ..Options::default()
    };
    let agent = AgentProcess::start_with(bin(), &cp.url, &token, name, options).await?;
    let id = admin
        .wait_for_agent(name, Duration::from_secs(30))
        .await
        .map_err(|e| anyhow::anyhow!("{e:#}\nagent log:\n{}", agent.process.log()))?;
    Ok((agent, id))
}

#[tokio::test]
async fn a_frozen_or_stopped_engine_takes_its_agent_out_of_placement() -> anyhow::Result<()> {
    require_desktop_image();
    let options = Options {
        heartbeat_interval: "2s".into(),
        ..Options::default()
    };
    let cp = ControlPlane::start_with(bin(), Mode::Server, None, options).await?;
    let admin = Api::admin(&cp.url).await?;
    let dir = tempfile::tempdir()?;
    let socket = dir.path().join("engine.sock");
    let proxy = Proxy::start(&socket)?;
    let docker_host = ("DOCKER_HOST".into(), format!("unix://{}", socket.display()));
    let (flaky, flaky_id) = start_agent(&admin, &cp, "flaky-agent", vec![docker_host]).await?;
    let (_steady, steady_id) = start_agent(&admin, &cp, "steady-agent", Vec::new()).await?;
    let _cleanup = Cleanup(vec![flaky_id.clone(), steady_id.clone()]);
    admin.create_template(desktop_template("desktop")).await?;
    let healthy = agent(&admin, &flaky_id).await?;
    assert_eq!(healthy["status_reason"], Value::Null, "{healthy}");

    // Frozen: the engine hangs as the flaky agent sees it.
    proxy.signal("STOP")?;
    let pinned = json!({"template": "desktop", "agent_id": flaky_id});
    let waiting = admin
        .call(Method::POST, "/api/v1/sessions", Some(pinned.clone()))
        .await?;
    let two_beats = HEARTBEAT * 2 + SLACK;
    let (view, took) = wait_status(&admin, &flaky_id, "degraded", two_beats)
        .await
        .map_err(|e| anyhow::anyhow!("{e:#}\nagent log:\n{}", flaky.process.log()))?;
    println!(
        "degraded {took:?} after the engine froze: {}",
        view["status_reason"]
    );
    let reason = view["status_reason"].as_str().unwrap_or_default();
    assert!(reason.contains("did not answer"), "{view}");

    // The session placed just before the check noticed waits and says why
    // (had the check been quicker, the request was refused with the reason).
    let waiting_id = match waiting.status {
        StatusCode::CREATED => {
            let id = waiting.body["id"].as_str().unwrap_or_default().to_owned();
            let session = admin.session(&id).await?;
            let message = session["message"].as_str().unwrap_or_default();
            assert!(
                message.contains("flaky-agent, which is degraded") && message.contains(reason),
                "{session}"
            );
            assert_eq!(session["agent_status"], "degraded", "{session}");
            println!("a session placed as it froze waits: {message}");
            Some(id)
        }
        status => {
            assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{}", waiting.body);
            println!("refused as it froze: {}", waiting.body);
            None
        }
    };

    // New sessions go to the healthy agent; the degraded one is refused by
    // name, with its problem.
    let placed = admin.create_session(json!({"template": "desktop"})).await?;
    assert_eq!(placed["agent_id"], steady_id.as_str(), "{placed}");
    let refused = admin
        .refused(
            Method::POST,
            "/api/v1/sessions",
            pinned,
            StatusCode::SERVICE_UNAVAILABLE,
        )
        .await?;
    let error = refused["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("flaky-agent cannot take the session: it is degraded")
            && error.contains(reason),
        "{refused}"
    );
    let placed_id = placed["id"].as_str().unwrap_or_default();
    admin
        .wait_for_phase(placed_id, "Running", RUNNING_LIMIT)
        .await?;

    // Thawed: online again within two heartbeats, and the waiting session
    // goes on.
    proxy.signal("CONT")?;
    let (view, took) = wait_status(&admin, &flaky_id, "online", two_beats).await?;
    println!("online {took:?} after the engine thawed");
    assert_eq!(view["status_reason"], Value::Null, "{view}");
    if let Some(id) = &waiting_id {
        admin.wait_for_phase(id, "Running", RUNNING_LIMIT).await?;
        let session = admin.session(id).await?;
        assert_eq!(session["message"], Value::Null, "{session}");
    }

    // Stopped: the engine does not answer at all.
    proxy.kill()?;
    let (view, took) = wait_status(&admin, &flaky_id, "degraded", two_beats).await?;
    println!(
        "degraded {took:?} after the engine went down: {}",
        view["status_reason"]
    );
    let reason = view["status_reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("does not answer") && reason.contains("refused"),
        "{view}"
    );
    let placed = admin.create_session(json!({"template": "desktop"})).await?;
    assert_eq!(placed["agent_id"], steady_id.as_str(), "{placed}");

    // Back: online again.
    let _proxy = Proxy::start(&socket)?;
    let (_, took) = wait_status(&admin, &flaky_id, "online", two_beats).await?;
    println!("online {took:?} after the engine came back");
    Ok(())
}
