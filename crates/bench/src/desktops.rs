//! Many real desktop sessions on one agent, each of which must complete the
//! RFB handshake and send a framebuffer update through `/vnc`, all viewers
//! open at once.

use crate::Settings;
use crate::cluster::{Cluster, DESKTOP_IMAGE, DESKTOP_PORT};
use crate::docker_cli::{docker, require_image};
use crate::procfs;
use crate::report::{BenchResult, Row};
use crate::stats::Summary;
use anyhow::Context;
use futures::StreamExt;
use reqwest::{Method, StatusCode};
use serde_json::json;
use std::time::Duration;
use streamspace_testkit::rfb::VncSocket;
use tokio::time::{Instant, sleep};

const TEMPLATE: &str = "desktop-bench";

pub async fn desktops(settings: &Settings) -> anyhow::Result<BenchResult> {
    let n = if settings.quick { 3 } else { settings.desktops };
    require_image(DESKTOP_IMAGE, "images/desktop/build.sh").await?;
    let max = (n + 10).to_string();
    let cluster = Cluster::start(settings, "bench-desktops", &["--max-sessions", &max]).await?;
    cluster
        .template(TEMPLATE, DESKTOP_IMAGE, DESKTOP_PORT, json!({}))
        .await?;
    let outcome = run(settings, &cluster, n).await;
    let removed = cluster.shutdown().await;
    let result = outcome?;
    removed.context("cleaning up the desktops")?;
    Ok(result)
}

async fn run(settings: &Settings, cluster: &Cluster, n: usize) -> anyhow::Result<BenchResult> {
    let start = Instant::now();
    let ids: Vec<String> = futures::stream::iter(0..n)
        .map(|_| async {
            let session = cluster
                .admin
                .create_session(json!({"template": TEMPLATE, "agent_id": cluster.agent_id}))
                .await?;
            session["id"]
                .as_str()
                .map(str::to_owned)
                .context("session without id")
        })
        .buffered(8)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<anyhow::Result<_>>()?;
    let created = start.elapsed();
    eprintln!("  created {n} sessions in {:.1} s", created.as_secs_f64());
    let (running, failed) = wait_all_running(cluster, n).await?;
    let all_running = start.elapsed();
    eprintln!(
        "  {running}/{n} Running after {:.1} s ({failed} failed)",
        all_running.as_secs_f64()
    );

    // Every viewer open at once: handshake + one framebuffer update each.
    let token = cluster.admin.token.clone().unwrap_or_default();
    let base = cluster.cp.url.clone();
    let attempts = futures::stream::iter(ids.iter())
        .map(|id| {
            let (base, token) = (&base, &token);
            async move {
                let begin = Instant::now();
                let mut vnc = VncSocket::connect(base, id, token, &[])
                    .await
                    .map_err(|r| anyhow::anyhow!("/vnc refused: {} {}", r.status, r.error))?;
                let init = vnc.handshake().await?;
                let rects = vnc.framebuffer_update(&init).await?;
                anyhow::ensure!(rects > 0, "framebuffer update without rectangles");
                anyhow::Ok((vnc, begin.elapsed()))
            }
        })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await;
    let mut viewers = Vec::new();
    let mut handshakes = Vec::new();
    let mut errors = Vec::new();
    for attempt in attempts {
        match attempt {
            Ok((vnc, took)) => {
                viewers.push(vnc);
                handshakes.push(took);
            }
            Err(e) => errors.push(format!("{e:#}")),
        }
    }
    let answered = viewers.len();
    eprintln!("  {answered}/{n} answered RFB through /vnc, all viewers open");
    let cp_rss = procfs::rss_kib(cluster.cp_pid())?;
    let agent_rss = procfs::rss_kib(cluster.agent_pid())?;
    let container_mib = container_memory_mib(&ids).await.unwrap_or_default();
    let load = procfs::loadavg();
    futures::future::join_all(viewers.into_iter().map(VncSocket::close)).await;

    let handshake = Summary::of_durations_ms(&handshakes);
    let mut result = BenchResult::new("desktops");
    result.row(
        Row::new(
            "desktops answering RFB via /vnc, all open",
            "sessions",
            answered as f64,
        )
        .target(
            &format!("{} (all)", settings.desktops),
            answered == n && n >= settings.desktops,
            !settings.quick,
        ),
    );
    result.row(Row::new(
        "POST ×N → all Running",
        "s",
        all_running.as_secs_f64(),
    ));
    if let Some(h) = &handshake {
        result.row(Row::new(
            "RFB handshake + update via /vnc, p99",
            "ms",
            h.p99,
        ));
    }
    result.row(Row::new(
        "agent RSS, all viewers open",
        "MiB",
        agent_rss as f64 / 1024.0,
    ));
    result.row(Row::new(
        "control plane RSS, all viewers open",
        "MiB",
        cp_rss as f64 / 1024.0,
    ));
    if let Some(m) = Summary::of(&container_mib) {
        result.row(Row::new(
            "desktop container memory, median",
            "MiB",
            m.median,
        ));
    }
    result.detail("sessions", n);
    result.detail("failed_to_run", failed);
    result.detail("create_s", created.as_secs_f64());
    result.detail("handshake_ms", &handshake);
    result.detail("loadavg_with_all_open", load);
    if !errors.is_empty() {
        errors.truncate(5);
        result.note(format!(
            "{} viewers failed, the first 5: {}; logs kept: {}",
            n - answered,
            errors.join(" | "),
            cluster.keep_logs("desktops")
        ));
    }
    Ok(result)
}

/// Polls the session list until every session is Running or Failed.
async fn wait_all_running(cluster: &Cluster, n: usize) -> anyhow::Result<(usize, usize)> {
    let limit = Duration::from_secs(60 + 3 * n as u64);
    let deadline = Instant::now() + limit;
    loop {
        let list = cluster
            .admin
            .expect(Method::GET, "/api/v1/sessions", None, StatusCode::OK)
            .await?;
        let sessions = list.as_array().cloned().unwrap_or_default();
        let count = |phase: &str| sessions.iter().filter(|s| s["phase"] == phase).count();
        let (running, failed) = (count("Running"), count("Failed"));
        if running + failed >= n {
            return Ok((running, failed));
        }
        if Instant::now() > deadline {
            anyhow::bail!("after {limit:?} only {running}/{n} sessions run ({failed} failed)");
        }
        sleep(Duration::from_millis(500)).await;
    }
}

/// Memory each session container uses now (`docker stats`), in MiB.
async fn container_memory_mib(ids: &[String]) -> anyhow::Result<Vec<f64>> {
    let names: Vec<String> = ids.iter().map(|id| format!("streamspace-{id}")).collect();
    let mut args = vec!["stats", "--no-stream", "--format", "{{.MemUsage}}"];
    args.extend(names.iter().map(String::as_str));
    let out = docker(&args).await?;
    Ok(out
        .lines()
        .filter_map(|l| parse_mib(l.split('/').next()?.trim()))
        .collect())
}

fn parse_mib(text: &str) -> Option<f64> {
    let split = text.find(|c: char| c.is_ascii_alphabetic())?;
    let (value, unit) = text.split_at(split);
    let value: f64 = value.trim().parse().ok()?;
    let factor = match unit {
        "B" => 1.0 / 1048576.0,
        "KiB" | "kB" => 1.0 / 1024.0,
        "MiB" | "MB" => 1.0,
        "GiB" | "GB" => 1024.0,
        _ => return None,
    };
    Some(value * factor)
}

#[cfg(test)]
mod tests {
    #[test]
    fn parses_docker_memory_units() {
        assert_eq!(super::parse_mib("15.5MiB"), Some(15.5));
        assert_eq!(super::parse_mib("1GiB"), Some(1024.0));
        assert_eq!(super::parse_mib("512KiB"), Some(0.5));
        assert_eq!(super::parse_mib("n/a"), None);
    }
}
