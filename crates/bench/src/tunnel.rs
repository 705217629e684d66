//! The VNC tunnel against websockify and raw TCP, on the same session port of
//! the echo target: download throughput, small-message round trips, and the
//! memory an idle open tunnel costs.

use crate::Settings;
use crate::cluster::{Cluster, ECHO_IMAGE, ECHO_PORT};
use crate::docker_cli::require_image;
use crate::procfs;
use crate::report::{BenchResult, Row};
use crate::stats::Summary;
use crate::viewer::{Route, Viewer};
use crate::websockify::Websockify;
use serde_json::json;
use std::time::Duration;
use tokio::time::{Instant, sleep};

/// The echo target twice (one session streaming, one echoing), with a
/// websockify in front of each one's published port.
struct Setup {
    cluster: Cluster,
    source: [Route; 3],
    echo: [Route; 3],
    _websockify: [Websockify; 2],
}

impl Setup {
    async fn start(settings: &Settings, name: &str) -> anyhow::Result<Self> {
        require_image(ECHO_IMAGE, "images/echo/build.sh").await?;
        let cluster = Cluster::start(settings, name, &[]).await?;
        cluster.echo_template("source", "source").await?;
        cluster.echo_template("echo", "echo").await?;
        let source_id = cluster.running_session("source").await?;
        let echo_id = cluster.running_session("echo").await?;
        let source_port = cluster.host_port(&source_id, ECHO_PORT).await?;
        let echo_port = cluster.host_port(&echo_id, ECHO_PORT).await?;
        let ws_source = Websockify::start(&settings.websockify, source_port).await?;
        let ws_echo = Websockify::start(&settings.websockify, echo_port).await?;
        Ok(Self {
            source: [
                cluster.route(&source_id),
                Route::Websockify {
                    port: ws_source.port,
                },
                Route::Raw { port: source_port },
            ],
            echo: [
                cluster.route(&echo_id),
                Route::Websockify { port: ws_echo.port },
                Route::Raw { port: echo_port },
            ],
            cluster,
            _websockify: [ws_source, ws_echo],
        })
    }
}

/// Download throughput: the client reads as fast as it can from the source
/// target, for a fixed time after a warm-up, repeated with the routes
/// interleaved so background load hits all of them alike.
pub async fn throughput(settings: &Settings) -> anyhow::Result<BenchResult> {
    let setup = Setup::start(settings, "bench-throughput").await?;
    let (warmup, window, reps) = if settings.quick {
        (Duration::from_millis(100), Duration::from_millis(300), 1)
    } else {
        (Duration::from_secs(1), Duration::from_secs(5), 5)
    };
    let ours_pids = [setup.cluster.cp_pid(), setup.cluster.agent_pid()];
    let ws_pid = setup._websockify[0].pid();
    let mut rates: [Vec<f64>; 3] = Default::default();
    let mut cpu_per_gb: [Vec<f64>; 3] = Default::default();
    for rep in 0..reps {
        for (i, route) in setup.source.iter().enumerate() {
            let mut viewer = route.connect().await?;
            viewer.drain_until(Instant::now() + warmup).await?;
            let proxy_pids = match route {
                Route::Ours { .. } => ours_pids.to_vec(),
                Route::Websockify { .. } => procfs::tree(ws_pid),
                Route::Raw { .. } => Vec::new(),
            };
            let cpu_before = procfs::cpu_time_of(&proxy_pids);
            let start = Instant::now();
            let bytes = viewer.drain_until(start + window).await?;
            let elapsed = start.elapsed().as_secs_f64();
            let cpu = procfs::cpu_time_of(&proxy_pids).saturating_sub(cpu_before);
            viewer.close().await;
            let mb_s = bytes as f64 / elapsed / 1e6;
            rates[i].push(mb_s);
            if bytes > 0 && !proxy_pids.is_empty() {
                cpu_per_gb[i].push(cpu.as_secs_f64() / (bytes as f64 / 1e9));
            }
            eprintln!(
                "  throughput rep {}/{reps} {:<11} {mb_s:>8.1} MB/s  proxy CPU {:.2} s",
                rep + 1,
                route.name(),
                cpu.as_secs_f64()
            );
        }
    }
    let median = |v: &[f64]| Summary::of(v).map_or(0.0, |s| s.median);
    let [ours, ws, raw] = [median(&rates[0]), median(&rates[1]), median(&rates[2])];
    let mut result = BenchResult::new("tunnel-throughput");
    result.row(
        Row::new("download, median", "MB/s", ours)
            .peer("websockify", ws)
            .peer("raw TCP", raw)
            .target("≥ 1.5× websockify", ours >= 1.5 * ws, !settings.quick),
    );
    result
        .row(Row::new("ratio to websockify", "×", ratio(ours, ws)).peer("raw TCP", ratio(raw, ws)));
    result.row(
        Row::new("proxy CPU per GB (CP + agent)", "s", median(&cpu_per_gb[0]))
            .peer("websockify", median(&cpu_per_gb[1])),
    );
    result.detail("window_s", window.as_secs_f64());
    result.detail(
        "mb_s",
        json!({"streamspace": rates[0], "websockify": rates[1], "raw": rates[2]}),
    );
    result.detail(
        "cpu_s_per_gb",
        json!({"streamspace": cpu_per_gb[0], "websockify": cpu_per_gb[1]}),
    );
    setup.cluster.shutdown().await?;
    Ok(result)
}

fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 { a / b } else { 0.0 }
}

/// Round trips of small messages through the echo target, one connection per
/// route, in interleaved blocks.
pub async fn latency(settings: &Settings) -> anyhow::Result<BenchResult> {
    let setup = Setup::start(settings, "bench-latency").await?;
    let (blocks, per_block, warmup) = if settings.quick {
        (1, 50, 10)
    } else {
        (10, 1000, 200)
    };
    let message = [0x42u8; 32];
    let mut viewers: Vec<Viewer> = Vec::new();
    for route in &setup.echo {
        let mut viewer = route.connect().await?;
        for _ in 0..warmup {
            viewer.round_trip(&message).await?;
        }
        viewers.push(viewer);
    }
    let mut samples: [Vec<Duration>; 3] = Default::default();
    for _ in 0..blocks {
        for (i, viewer) in viewers.iter_mut().enumerate() {
            for _ in 0..per_block {
                samples[i].push(viewer.round_trip(&message).await?);
            }
        }
    }
    for viewer in viewers {
        viewer.close().await;
    }
    let summaries: Vec<Summary> = samples
        .iter()
        .map(|s| Summary::of_durations_ms(s).map(|s| scale(s, 1e3)))
        .collect::<Option<_>>()
        .unwrap_or_default();
    let mut result = BenchResult::new("tunnel-latency");
    if let [ours, ws, raw] = summaries.as_slice() {
        for (name, s) in [("streamspace", ours), ("websockify", ws), ("raw TCP", raw)] {
            eprintln!(
                "  {name:<11} RTT µs: median {:.0} p99 {:.0} max {:.0} (n={})",
                s.median, s.p99, s.max, s.n
            );
        }
        result.row(
            Row::new("32 B round trip, p99", "µs", ours.p99)
                .peer("websockify", ws.p99)
                .peer("raw TCP", raw.p99)
                .target("p99 ≤ websockify's", ours.p99 <= ws.p99, !settings.quick),
        );
        result.row(
            Row::new("32 B round trip, median", "µs", ours.median)
                .peer("websockify", ws.median)
                .peer("raw TCP", raw.median),
        );
        result.detail(
            "rtt_us",
            json!({"streamspace": ours, "websockify": ws, "raw": raw}),
        );
    }
    setup.cluster.shutdown().await?;
    Ok(result)
}

fn scale(mut s: Summary, k: f64) -> Summary {
    for v in [
        &mut s.min,
        &mut s.median,
        &mut s.p99,
        &mut s.max,
        &mut s.mean,
    ] {
        *v *= k;
    }
    s
}

/// RSS the control plane and the agent gain per open, idle tunnel (after
/// the banner), against websockify's whole process tree.
pub async fn memory(settings: &Settings) -> anyhow::Result<BenchResult> {
    let setup = Setup::start(settings, "bench-memory").await?;
    let n = if settings.quick { 10 } else { 500 };
    let settle = Duration::from_secs(if settings.quick { 1 } else { 3 });
    let pids = [setup.cluster.cp_pid(), setup.cluster.agent_pid()];
    let ours_rss =
        || -> anyhow::Result<u64> { Ok(procfs::rss_kib(pids[0])? + procfs::rss_kib(pids[1])?) };

    // Warm up allocator arenas and lazily initialised state with one tunnel.
    setup.echo[0].connect().await?.close().await;
    sleep(settle).await;
    let before = ours_rss()?;
    let (cp_before, agent_before) = (procfs::rss_kib(pids[0])?, procfs::rss_kib(pids[1])?);
    let viewers = open_many(&setup.echo[0], n).await?;
    sleep(settle).await;
    let after = ours_rss()?;
    let (cp_after, agent_after) = (procfs::rss_kib(pids[0])?, procfs::rss_kib(pids[1])?);
    let ours = after.saturating_sub(before) as f64 / n as f64;
    eprintln!(
        "  streamspace: {n} idle tunnels, CP {cp_before}→{cp_after} KiB, agent {agent_before}→{agent_after} KiB: {ours:.1} KiB each"
    );
    close_all(viewers).await;

    let ws = &setup._websockify[1];
    let (rss0, pss0) = ws.memory_kib();
    let viewers = open_many(&setup.echo[1], n).await?;
    sleep(settle).await;
    let (rss1, pss1) = ws.memory_kib();
    let processes = ws.processes();
    let ws_pss = pss1.saturating_sub(pss0) as f64 / n as f64;
    let ws_rss = rss1.saturating_sub(rss0) as f64 / n as f64;
    eprintln!(
        "  websockify: {n} idle connections, {processes} processes, RSS {rss0}→{rss1} KiB, PSS {pss0}→{pss1} KiB: {ws_pss:.0} KiB PSS each"
    );
    close_all(viewers).await;

    let mut result = BenchResult::new("tunnel-memory");
    result.row(
        Row::new("per idle tunnel (CP + agent RSS)", "KiB", ours)
            .peer("websockify PSS", ws_pss)
            .peer("websockify RSS", ws_rss)
            .target("≤ 64 KiB", ours <= 64.0, !settings.quick),
    );
    result.detail("tunnels", n);
    result.detail(
        "streamspace_kib",
        json!({"cp": [cp_before, cp_after], "agent": [agent_before, agent_after]}),
    );
    result.detail(
        "websockify_kib",
        json!({"rss": [rss0, rss1], "pss": [pss0, pss1], "processes": processes}),
    );
    setup.cluster.shutdown().await?;
    Ok(result)
}

/// Opens `n` viewers, 16 at a time, each past its banner.
async fn open_many(route: &Route, n: usize) -> anyhow::Result<Vec<Viewer>> {
    use futures::{StreamExt, TryStreamExt};
    futures::stream::iter(0..n)
        .map(|_| route.connect())
        .buffer_unordered(16)
        .try_collect()
        .await
}

async fn close_all(viewers: Vec<Viewer>) {
    futures::future::join_all(viewers.into_iter().map(Viewer::close)).await;
}
