//! Session start (`POST /sessions` → RFB banner through `/vnc`) against
//! `docker run` of the same image → banner on its published port; the same
//! from a warm pool, against a cold start and `docker run` in the same run;
//! and hibernate / wake against `docker stop` / `docker start` → banner.

use crate::Settings;
use crate::cluster::{Cluster, DESKTOP_IMAGE, DESKTOP_PORT};
use crate::docker_cli::{docker, require_image, wait_for_banner};
use crate::events::PhaseWatch;
use crate::report::{BenchResult, Row};
use crate::stats::Summary;
use crate::websockify::free_port;
use reqwest::{Method, StatusCode};
use serde_json::json;
use std::time::Duration;
use tokio::time::Instant;

const LIMIT: Duration = Duration::from_secs(120);
/// How often the peer's stopwatch looks for the banner (our agent probes
/// every 50 ms; the peer gets a finer clock, to its advantage).
const PEER_PROBE: Duration = Duration::from_millis(10);
const TEMPLATE: &str = "desktop-bench";

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn median(v: &[f64]) -> f64 {
    Summary::of(v).map_or(0.0, |s| s.median)
}

async fn desktop_cluster(settings: &Settings, name: &str) -> anyhow::Result<Cluster> {
    require_image(DESKTOP_IMAGE, "images/desktop/build.sh").await?;
    let cluster = Cluster::start(settings, name, &[]).await?;
    cluster
        .template(TEMPLATE, DESKTOP_IMAGE, DESKTOP_PORT, json!({}))
        .await?;
    Ok(cluster)
}

/// A peer container of the desktop image on a fixed loopback port (fixed so
/// that `docker start` keeps it).
struct PeerContainer {
    name: String,
    port: u16,
}

impl PeerContainer {
    fn new(tag: &str) -> anyhow::Result<Self> {
        Ok(Self {
            name: format!("streamspace-bench-peer-{tag}-{}", std::process::id()),
            port: free_port()?,
        })
    }

    /// `docker run -d` → banner.
    async fn run(&self) -> anyhow::Result<Duration> {
        let publish = format!("127.0.0.1:{}:{DESKTOP_PORT}", self.port);
        let start = Instant::now();
        docker(&[
            "run",
            "-d",
            "--name",
            &self.name,
            "-p",
            &publish,
            DESKTOP_IMAGE,
        ])
        .await?;
        wait_for_banner(self.port, PEER_PROBE, LIMIT).await?;
        Ok(start.elapsed())
    }

    /// `docker run` → banner of a fresh container, removed afterwards.
    async fn run_once(tag: &str) -> anyhow::Result<Duration> {
        let container = Self::new(tag)?;
        let took = container.run().await;
        container.remove().await;
        took
    }

    async fn stop(&self) -> anyhow::Result<Duration> {
        let start = Instant::now();
        docker(&["stop", &self.name]).await?;
        Ok(start.elapsed())
    }

    /// `docker start` → banner.
    async fn start(&self) -> anyhow::Result<Duration> {
        let start = Instant::now();
        docker(&["start", &self.name]).await?;
        wait_for_banner(self.port, PEER_PROBE, LIMIT).await?;
        Ok(start.elapsed())
    }

    async fn remove(&self) {
        let _ = docker(&["rm", "-f", &self.name]).await;
    }
}

pub async fn session_start(settings: &Settings) -> anyhow::Result<BenchResult> {
    let cluster = desktop_cluster(settings, "bench-start").await?;
    let watch = PhaseWatch::start(&cluster.admin).await?;
    let reps = if settings.quick { 1 } else { 7 };
    let (mut ours, mut to_running, mut peer) = (Vec::new(), Vec::new(), Vec::new());
    for rep in 0..reps {
        let start = Instant::now();
        let session = cluster
            .admin
            .create_session(json!({"template": TEMPLATE, "agent_id": cluster.agent_id}))
            .await?;
        let id = session["id"].as_str().unwrap_or_default().to_owned();
        let viewer = cluster.route(&id).connect().await?;
        let total = start.elapsed();
        let running = watch.wait(&id, "Running", LIMIT).await? - start;
        viewer.close().await;
        end(&cluster, &session).await?;
        let peer_time = PeerContainer::run_once("start").await?;
        eprintln!(
            "  start rep {}/{reps}: streamspace {:.0} ms (Running seen at {:.0} ms), docker run {:.0} ms",
            rep + 1,
            ms(total),
            ms(running),
            ms(peer_time)
        );
        ours.push(ms(total));
        to_running.push(ms(running));
        peer.push(ms(peer_time));
    }
    let (o, p) = (median(&ours), median(&peer));
    let mut result = BenchResult::new("session-start");
    result.row(
        Row::new("POST /sessions → banner via /vnc, median", "ms", o)
            .peer("docker run → banner", p)
            .target("≤ docker run + 150 ms", o <= p + 150.0, !settings.quick),
    );
    result.row(Row::new(
        "POST → phase Running (SSE), median",
        "ms",
        median(&to_running),
    ));
    result.detail(
        "ms",
        json!({"streamspace": Summary::of(&ours), "running": Summary::of(&to_running),
               "docker_run": Summary::of(&peer)}),
    );
    cluster.shutdown().await?;
    Ok(result)
}

pub async fn hibernate_wake(settings: &Settings) -> anyhow::Result<BenchResult> {
    let cluster = desktop_cluster(settings, "bench-hibernate").await?;
    let watch = PhaseWatch::start(&cluster.admin).await?;
    let id = cluster.running_session(TEMPLATE).await?;
    let container = PeerContainer::new("hibernate")?;
    let outcome = async {
        container.run().await?;
        let reps = if settings.quick { 1 } else { 7 };
        let mut times: [Vec<f64>; 4] = Default::default();
        for rep in 0..reps {
            watch.forget(&id);
            let start = Instant::now();
            cluster.admin.set_state(&id, "hibernated").await?;
            let hibernate = watch.wait(&id, "Hibernated", LIMIT).await? - start;
            let start = Instant::now();
            cluster.admin.set_state(&id, "running").await?;
            let viewer = cluster.route(&id).connect().await?;
            let wake = start.elapsed();
            viewer.close().await;
            let stop = container.stop().await?;
            let docker_start = container.start().await?;
            eprintln!(
                "  rep {}/{reps}: hibernate {:.0} ms, wake→banner {:.0} ms | docker stop {:.0} ms, docker start→banner {:.0} ms",
                rep + 1,
                ms(hibernate),
                ms(wake),
                ms(stop),
                ms(docker_start)
            );
            for (i, d) in [hibernate, wake, stop, docker_start].into_iter().enumerate() {
                times[i].push(ms(d));
            }
        }
        anyhow::Ok(times)
    }
    .await;
    container.remove().await;
    let times = outcome?;
    let [h, w, s, st] = [0, 1, 2, 3].map(|i| median(&times[i]));
    let mut result = BenchResult::new("hibernate-wake");
    result.row(
        Row::new("hibernate → phase Hibernated, median", "ms", h)
            .peer("docker stop", s)
            .target("< 1 s", h < 1000.0, !settings.quick),
    );
    result.row(
        Row::new("wake → banner via /vnc, median", "ms", w)
            .peer("docker start → banner", st)
            .target("< 1.5 s", w < 1500.0, !settings.quick),
    );
    result.detail(
        "ms",
        json!({"hibernate": Summary::of(&times[0]), "wake": Summary::of(&times[1]),
               "docker_stop": Summary::of(&times[2]), "docker_start": Summary::of(&times[3])}),
    );
    cluster.shutdown().await?;
    Ok(result)
}

const WARM_TEMPLATE: &str = "desktop-warm";

/// `POST /sessions` with `body` → the banner through `/vnc`: how long, and
/// the session as the POST answered it.
async fn launch_to_banner(
    cluster: &Cluster,
    body: serde_json::Value,
) -> anyhow::Result<(Duration, serde_json::Value)> {
    let start = Instant::now();
    let session = cluster.admin.create_session(body).await?;
    let id = session["id"].as_str().unwrap_or_default().to_owned();
    let viewer = cluster.route(&id).connect().await?;
    let took = start.elapsed();
    viewer.close().await;
    Ok((took, session))
}

async fn end(cluster: &Cluster, session: &serde_json::Value) -> anyhow::Result<()> {
    let id = session["id"].as_str().unwrap_or_default();
    let path = format!("/api/v1/sessions/{id}");
    cluster
        .admin
        .expect(Method::DELETE, &path, None, StatusCode::OK)
        .await?;
    cluster
        .admin
        .wait_for_phase(id, "Terminated", LIMIT)
        .await?;
    Ok(())
}

/// Until the warm pool has a session ready.
async fn pool_ready(cluster: &Cluster) -> anyhow::Result<()> {
    let path = format!("/api/v1/templates/{WARM_TEMPLATE}/pool");
    let deadline = Instant::now() + LIMIT;
    while Instant::now() < deadline {
        let pool = cluster
            .admin
            .expect(Method::GET, &path, None, StatusCode::OK)
            .await?;
        if pool["ready"].as_u64().unwrap_or_default() > 0 {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    anyhow::bail!("the warm pool had no session ready within {LIMIT:?}")
}

pub async fn warm_start(settings: &Settings) -> anyhow::Result<BenchResult> {
    let cluster = desktop_cluster(settings, "bench-warm").await?;
    cluster
        .admin
        .create_template(json!({
            "name": WARM_TEMPLATE, "image": DESKTOP_IMAGE, "warm_pool": 1,
            "ports": [{"name": "vnc", "port": DESKTOP_PORT, "protocol": "vnc"}],
            "platforms": ["docker"],
        }))
        .await?;
    let reps = if settings.quick { 1 } else { 7 };
    let (mut warm, mut cold, mut peer) = (Vec::new(), Vec::new(), Vec::new());
    for rep in 0..reps {
        pool_ready(&cluster).await?;
        let (took, session) =
            launch_to_banner(&cluster, json!({"template": WARM_TEMPLATE})).await?;
        anyhow::ensure!(
            session["phase"] == "Running",
            "the launch was not served from the warm pool: {session}"
        );
        end(&cluster, &session).await?;
        let cold_body = json!({"template": TEMPLATE, "agent_id": cluster.agent_id});
        let (cold_took, session) = launch_to_banner(&cluster, cold_body).await?;
        end(&cluster, &session).await?;
        let peer_time = PeerContainer::run_once("warm").await?;
        eprintln!(
            "  rep {}/{reps}: warm pool {:.1} ms, cold {:.0} ms, docker run {:.0} ms",
            rep + 1,
            ms(took),
            ms(cold_took),
            ms(peer_time)
        );
        warm.push(ms(took));
        cold.push(ms(cold_took));
        peer.push(ms(peer_time));
    }
    let (w, c, p) = (median(&warm), median(&cold), median(&peer));
    let mut result = BenchResult::new("warm-start");
    result.row(
        Row::new("launch from a warm pool → banner via /vnc, median", "ms", w)
            .peer("docker run → banner", p)
            .target("< 50 ms", w < 50.0, !settings.quick),
    );
    result.row(Row::new(
        "cold launch → banner via /vnc, same run, median",
        "ms",
        c,
    ));
    result.detail(
        "ms",
        json!({"warm": Summary::of(&warm), "cold": Summary::of(&cold), "docker_run": Summary::of(&peer)}),
    );
    cluster.shutdown().await?;
    Ok(result)
}
