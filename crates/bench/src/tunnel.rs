//! The VNC tunnel against websockify and raw TCP, on the same session port of
//! the echo target: download throughput, small-message round trips, and the
//! memory an idle open tunnel costs.

use crate::Settings;
use crate::cluster::{BenchTls, Cluster, ECHO_IMAGE, ECHO_PORT};
use crate::docker_cli::require_image;
use crate::procfs;
use crate::report::{BenchResult, Row};
use crate::stats::Summary;
use crate::viewer::{Route, Viewer};
use crate::websockify::Websockify;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::{Instant, sleep};

/// The echo target twice (one session streaming, one echoing), with a
/// websockify in front of each one's published port.
struct Setup {
    cluster: Cluster,
    source: [Route; 3],
    echo: [Route; 3],
    websockify: [Websockify; 2],
}

impl Setup {
    /// With `tls`, the control plane serves HTTPS (the agent's data
    /// channels too) and websockify serves with `--cert`.
    async fn start(
        settings: &Settings,
        name: &str,
        tls: Option<Arc<BenchTls>>,
    ) -> anyhow::Result<Self> {
        require_image(ECHO_IMAGE, "images/echo/build.sh").await?;
        let cluster = Cluster::start_with(settings, name, &[], tls.clone()).await?;
        cluster.echo_template("source", "source").await?;
        cluster.echo_template("echo", "echo").await?;
        let source_id = cluster.running_session("source").await?;
        let echo_id = cluster.running_session("echo").await?;
        let source_port = cluster.host_port(&source_id, ECHO_PORT).await?;
        let echo_port = cluster.host_port(&echo_id, ECHO_PORT).await?;
        let program = &settings.websockify;
        let ws_source = Websockify::start(program, source_port, tls.as_deref()).await?;
        let ws_echo = Websockify::start(program, echo_port, tls.as_deref()).await?;
        let client = tls.as_ref().map(|tls| tls.client.clone());
        Ok(Self {
            source: [
                cluster.route(&source_id),
                Route::Websockify {
                    port: ws_source.port,
                    tls: client.clone(),
                },
                Route::Raw { port: source_port },
            ],
            echo: [
                cluster.route(&echo_id),
                Route::Websockify {
                    port: ws_echo.port,
                    tls: client,
                },
                Route::Raw { port: echo_port },
            ],
            cluster,
            websockify: [ws_source, ws_echo],
        })
    }
}

/// CPU seconds per GB moved, by who spent them, over one window.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
struct CpuBudget {
    /// Every process on the machine (both cores).
    machine: f64,
    client: f64,
    /// Control plane + agent, or websockify (and its children).
    proxy: f64,
    /// The control plane alone (ours only).
    control_plane: f64,
    docker_proxy: f64,
    /// Context switches of the proxy processes per MB.
    proxy_switches_per_mb: f64,
}

/// Download throughput: the client reads as fast as it can from the source
/// target, for a fixed time after a warm-up, repeated with the routes
/// interleaved so background load hits all of them alike. The CPU time of
/// every party on the path is recorded per GB: on a small machine the path
/// is CPU-bound, and that budget is what limits it.
pub async fn throughput(settings: &Settings) -> anyhow::Result<BenchResult> {
    download(settings, None).await
}

/// `throughput` with TLS on both WebSocket routes: the viewer and the
/// agent reach the control plane over HTTPS (so both hops copy and
/// encrypt), websockify serves with `--cert`. Raw TCP stays plain: the
/// ceiling. No target: the figure is reported.
pub async fn tls_throughput(settings: &Settings) -> anyhow::Result<BenchResult> {
    download(settings, Some(BenchTls::new()?)).await
}

async fn download(settings: &Settings, tls: Option<Arc<BenchTls>>) -> anyhow::Result<BenchResult> {
    let over_tls = tls.is_some();
    let setup = Setup::start(settings, "bench-throughput", tls).await?;
    let (warmup, window, reps) = if settings.quick {
        (Duration::from_millis(100), Duration::from_millis(300), 1)
    } else {
        (Duration::from_secs(1), Duration::from_secs(5), 5)
    };
    let ours_pids = [setup.cluster.cp_pid(), setup.cluster.agent_pid()];
    let ws_pid = setup.websockify[0].pid();
    let host_port = match setup.source[2] {
        Route::Raw { port } => port,
        _ => 0,
    };
    let docker_proxy: Vec<u32> = procfs::docker_proxy(host_port).into_iter().collect();
    let client = [std::process::id()];
    let mut rates: [Vec<f64>; 3] = Default::default();
    let mut budgets: [Vec<CpuBudget>; 3] = Default::default();
    for rep in 0..reps {
        for (i, route) in setup.source.iter().enumerate() {
            let mut viewer = route.connect().await?;
            viewer.drain_until(Instant::now() + warmup).await?;
            let proxy_pids = match route {
                Route::Ours { .. } => ours_pids.to_vec(),
                Route::Websockify { .. } => procfs::tree(ws_pid),
                Route::Raw { .. } => Vec::new(),
            };
            let cpu = || {
                [
                    procfs::machine_busy(),
                    procfs::cpu_time_of(&client),
                    procfs::cpu_time_of(&proxy_pids),
                    procfs::cpu_time_of(&docker_proxy),
                    match route {
                        Route::Ours { .. } => procfs::cpu_time_of(&ours_pids[..1]),
                        _ => Duration::ZERO,
                    },
                ]
            };
            let before = cpu();
            let switches = procfs::context_switches(&proxy_pids);
            let start = Instant::now();
            let bytes = viewer.drain_until(start + window).await?;
            let elapsed = start.elapsed().as_secs_f64();
            let after = cpu();
            let switches = procfs::context_switches(&proxy_pids).saturating_sub(switches);
            viewer.close().await;
            let gb = (bytes as f64 / 1e9).max(1e-9);
            let per_gb = |k: usize| after[k].saturating_sub(before[k]).as_secs_f64() / gb;
            let budget = CpuBudget {
                machine: per_gb(0),
                client: per_gb(1),
                proxy: per_gb(2),
                docker_proxy: per_gb(3),
                control_plane: per_gb(4),
                proxy_switches_per_mb: switches as f64 / (gb * 1e3),
            };
            let mb_s = bytes as f64 / elapsed / 1e6;
            eprintln!(
                "  throughput rep {}/{reps} {:<11} {mb_s:>7.1} MB/s | CPU s/GB: all {:.2}, client {:.2}, proxy {:.2}, docker-proxy {:.2} | proxy switches/MB {:.1}",
                rep + 1,
                route.name(),
                budget.machine,
                budget.client,
                budget.proxy,
                budget.docker_proxy,
                budget.proxy_switches_per_mb,
            );
            rates[i].push(mb_s);
            budgets[i].push(budget);
        }
    }
    let median = |v: &[f64]| Summary::of(v).map_or(0.0, |s| s.median);
    let budget =
        |i: usize, f: fn(&CpuBudget) -> f64| median(&budgets[i].iter().map(f).collect::<Vec<_>>());
    let [ours, ws, raw] = [median(&rates[0]), median(&rates[1]), median(&rates[2])];
    let (name, label) = match over_tls {
        true => ("tunnel-tls-throughput", "download over TLS, median"),
        false => ("tunnel-throughput", "download, median"),
    };
    let mut result = BenchResult::new(name);
    let download = Row::new(label, "MB/s", ours)
        .peer("websockify", ws)
        .peer("raw TCP", raw);
    result.row(match over_tls {
        true => download,
        false => download.target("≥ 1.5× websockify", ours >= 1.5 * ws, !settings.quick),
    });
    result
        .row(Row::new("ratio to websockify", "×", ratio(ours, ws)).peer("raw TCP", ratio(raw, ws)));
    result.row(
        Row::new("proxy CPU per GB (CP + agent)", "s", budget(0, |b| b.proxy))
            .peer("websockify", budget(1, |b| b.proxy)),
    );
    result.row(Row::new(
        "  of which control plane",
        "s",
        budget(0, |b| b.control_plane),
    ));
    result.row(
        Row::new(
            "proxy context switches per MB",
            "",
            budget(0, |b| b.proxy_switches_per_mb),
        )
        .peer("websockify", budget(1, |b| b.proxy_switches_per_mb)),
    );
    result.row(
        Row::new(
            "machine CPU per GB (all processes)",
            "s",
            budget(0, |b| b.machine),
        )
        .peer("websockify", budget(1, |b| b.machine))
        .peer("raw TCP", budget(2, |b| b.machine)),
    );
    result.detail("window_s", window.as_secs_f64());
    result.detail("tls", over_tls);
    result.detail(
        "mb_s",
        json!({"streamspace": rates[0], "websockify": rates[1], "raw": rates[2]}),
    );
    result.detail(
        "cpu_s_per_gb",
        json!({"streamspace": budgets[0], "websockify": budgets[1], "raw": budgets[2]}),
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
    let setup = Setup::start(settings, "bench-latency", None).await?;
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
/// the banner), against websockify's whole process tree (PSS, since its
/// forked children share pages). Each is read with none, half and all of
/// the connections open: the second half's slope is the marginal cost,
/// free of allocator slack the first connections may reuse.
pub async fn memory(settings: &Settings) -> anyhow::Result<BenchResult> {
    let setup = Setup::start(settings, "bench-memory", None).await?;
    let (ours_n, ws_n) = if settings.quick {
        (10, 10)
    } else {
        (1000, 300)
    };
    let settle = Duration::from_secs(if settings.quick { 1 } else { 3 });
    let pids = [setup.cluster.cp_pid(), setup.cluster.agent_pid()];
    // Warm up allocator arenas and lazily initialised state with one tunnel.
    setup.echo[0].connect().await?.close().await;
    sleep(settle).await;
    let tcp_before = procfs::tcp_kernel_kib();
    let ours = steps(&setup.echo[0], ours_n, settle, || {
        [pids[0], pids[1]].map(|p| procfs::rss_kib(p).unwrap_or(0))
    })
    .await?;
    let tcp_with_all = ours.tcp_kib_all;
    let ws_process = &setup.websockify[1];
    let ws = steps(&setup.echo[1], ws_n, settle, || {
        let (rss, pss) = ws_process.memory_kib();
        [rss, pss]
    })
    .await?;
    let (cp, agent) = (ours.marginal(0), ours.marginal(1));
    eprintln!(
        "  streamspace: {ours_n} idle tunnels, CP {:?} KiB, agent {:?} KiB: {:.1} + {:.1} KiB each (marginal), {:.1} KiB (average)",
        ours.readings.map(|r| r[0]),
        ours.readings.map(|r| r[1]),
        cp,
        agent,
        ours.average(0) + ours.average(1)
    );
    eprintln!(
        "  websockify: {ws_n} idle connections, RSS {:?} KiB, PSS {:?} KiB: {:.0} KiB PSS each (marginal)",
        ws.readings.map(|r| r[0]),
        ws.readings.map(|r| r[1]),
        ws.marginal(1)
    );
    let per_tunnel = cp + agent;
    let mut result = BenchResult::new("tunnel-memory");
    result.row(
        Row::new("per idle tunnel (CP + agent RSS)", "KiB", per_tunnel)
            .peer("websockify (PSS)", ws.marginal(1))
            .target("≤ 64 KiB", per_tunnel <= 64.0, !settings.quick),
    );
    result.row(Row::new("  of which control plane", "KiB", cp));
    result.row(Row::new("  of which agent", "KiB", agent));
    result.detail(
        "tunnels",
        json!({"streamspace": ours_n, "websockify": ws_n}),
    );
    // Idle sockets hold (almost) no kernel buffers; this shows it.
    result.detail(
        "kernel_tcp_kib_before_and_with_all_tunnels",
        [tcp_before, tcp_with_all],
    );
    result.detail(
        "streamspace_rss_kib_at_0_half_all",
        json!({"cp": ours.readings.map(|r| r[0]), "agent": ours.readings.map(|r| r[1])}),
    );
    result.detail(
        "websockify_kib_at_0_half_all",
        json!({"rss": ws.readings.map(|r| r[0]), "pss": ws.readings.map(|r| r[1]),
               "processes": ws_process.processes()}),
    );
    setup.cluster.shutdown().await?;
    Ok(result)
}

/// Two memory figures read with 0, n/2 and n connections open.
struct Steps {
    n: usize,
    readings: [[u64; 2]; 3],
    /// Kernel TCP memory with all of them open.
    tcp_kib_all: u64,
}

impl Steps {
    /// KiB per connection over the second half.
    fn marginal(&self, k: usize) -> f64 {
        let half = self.n / 2;
        let grown = self.readings[2][k].saturating_sub(self.readings[1][k]);
        grown as f64 / (self.n - half).max(1) as f64
    }

    /// KiB per connection over all of them.
    fn average(&self, k: usize) -> f64 {
        self.readings[2][k].saturating_sub(self.readings[0][k]) as f64 / self.n.max(1) as f64
    }
}

async fn steps(
    route: &Route,
    n: usize,
    settle: Duration,
    read: impl Fn() -> [u64; 2],
) -> anyhow::Result<Steps> {
    let zero = read();
    let mut viewers = open_many(route, n / 2).await?;
    sleep(settle).await;
    let half = read();
    viewers.extend(open_many(route, n - n / 2).await?);
    sleep(settle).await;
    let all = read();
    let tcp_kib_all = procfs::tcp_kernel_kib();
    close_all(viewers).await;
    Ok(Steps {
        n,
        readings: [zero, half, all],
        tcp_kib_all,
    })
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
