//! Tunnels across replicas: three control planes on one PostgreSQL, as
//! operators run them, the Docker agent connected to B. A viewer on B is
//! the direct path (the agent's data channel lands where the viewer waits);
//! a viewer on A is the relayed one (the data channel lands on B, which
//! relays it to A through A's internal endpoint); C takes its part in the
//! cluster (registry, notices) and carries no tunnel. Download throughput and small-message round
//! trips on both, interleaved so background load hits both alike; the
//! control planes' CPU per GB says what the extra hop costs.

use crate::Settings;
use crate::cluster::{Cluster, ECHO_IMAGE};
use crate::docker_cli::require_image;
use crate::procfs;
use crate::report::{BenchResult, Row};
use crate::stats::Summary;
use crate::viewer::Route;
use serde_json::json;
use std::time::Duration;
use streamspace_testkit::{Api, ControlPlane, Mode, postgres};
use tokio::time::Instant;

/// Replica B with the agent, replicas A and C without, and the two routes
/// to each of two sessions.
struct Setup {
    b: Cluster,
    a: ControlPlane,
    c: ControlPlane,
    /// `[relayed (via A), direct (via B)]` to the streaming session.
    source: [Route; 2],
    /// The same to the echoing session.
    echo: [Route; 2],
}

const NAMES: [&str; 2] = ["relayed", "direct"];

impl Setup {
    async fn start(settings: &Settings) -> anyhow::Result<Self> {
        require_image(ECHO_IMAGE, "images/echo/build.sh").await?;
        let database = postgres::fresh_database().await?;
        let b = Cluster::start_on(settings, "bench-replicas", &database).await?;
        let replica = || {
            let options = Cluster::cp_options(settings, &[]);
            ControlPlane::start_with(&settings.bin, Mode::Server, Some(&database), options)
        };
        let (a, c) = (replica().await?, replica().await?);
        let on_a = Api::new(&a.url).as_admin().await?;
        b.echo_template("source", "source").await?;
        b.echo_template("echo", "echo").await?;
        let source_id = b.running_session("source").await?;
        let echo_id = b.running_session("echo").await?;
        let via_a = |session_id: &str| Route::Ours {
            base: a.url.clone(),
            session_id: session_id.to_owned(),
            token: on_a.token.clone().unwrap_or_default(),
            channel: "vnc",
            tls: None,
        };
        Ok(Self {
            source: [via_a(&source_id), b.route(&source_id)],
            echo: [via_a(&echo_id), b.route(&echo_id)],
            b,
            a,
            c,
        })
    }

    /// Both control planes (A's CPU counts for the relayed path only).
    fn control_planes(&self) -> [u32; 2] {
        [self.a.process.pid(), self.b.cp_pid()]
    }

    async fn shutdown(mut self) -> anyhow::Result<()> {
        let _ = self.a.process.stop().await;
        let _ = self.c.process.stop().await;
        self.b.shutdown().await
    }
}

/// Throughput and round trips, relayed against direct.
pub async fn replicas(settings: &Settings) -> anyhow::Result<BenchResult> {
    let setup = Setup::start(settings).await?;
    let measured = measure(settings, &setup).await;
    if measured.is_err() {
        eprintln!("  logs kept: {}", setup.b.keep_logs("replicas"));
    }
    setup.shutdown().await?;
    measured
}

async fn measure(settings: &Settings, setup: &Setup) -> anyhow::Result<BenchResult> {
    let download = throughput(settings, setup).await?;
    let rtt = round_trips(settings, setup).await?;
    let mut result = BenchResult::new("replicas");
    let [relayed, direct] = download.mb_s.each_ref().map(|v| median(v));
    let ratio = if direct > 0.0 { relayed / direct } else { 0.0 };
    result.row(
        Row::new(
            "download through a relaying replica, median",
            "MB/s",
            relayed,
        )
        .peer("direct", direct)
        .target("≥ 0.8× direct", ratio >= 0.8, !settings.quick),
    );
    result.row(Row::new("ratio relayed / direct", "×", ratio));
    let [cpu_relayed, cpu_direct] = download.cp_cpu_s_per_gb.each_ref().map(|v| median(v));
    result.row(
        Row::new("control planes' CPU per GB, relayed", "s", cpu_relayed)
            .peer("direct", cpu_direct),
    );
    if let [Some(relayed), Some(direct)] = &rtt {
        result.row(
            Row::new(
                "32 B round trip through a relaying replica, p99",
                "µs",
                relayed.p99,
            )
            .peer("direct", direct.p99),
        );
        result.row(
            Row::new("32 B round trip, median", "µs", relayed.median).peer("direct", direct.median),
        );
    }
    result.detail(
        "mb_s",
        json!({"relayed": download.mb_s[0], "direct": download.mb_s[1]}),
    );
    result.detail(
        "cp_cpu_s_per_gb",
        json!({"relayed": download.cp_cpu_s_per_gb[0], "direct": download.cp_cpu_s_per_gb[1]}),
    );
    result.detail("rtt_us", json!({"relayed": rtt[0], "direct": rtt[1]}));
    result.detail(
        "relayed_by_b",
        setup
            .b
            .admin
            .metric("streamspace_tunnels_relayed_total")
            .await?,
    );
    Ok(result)
}

struct Download {
    /// Per route (`NAMES`), per repetition.
    mb_s: [Vec<f64>; 2],
    cp_cpu_s_per_gb: [Vec<f64>; 2],
}

/// Downloads from the streaming session, the routes interleaved.
async fn throughput(settings: &Settings, setup: &Setup) -> anyhow::Result<Download> {
    let (warmup, window, reps) = if settings.quick {
        (Duration::from_millis(100), Duration::from_millis(300), 1)
    } else {
        (Duration::from_secs(1), Duration::from_secs(5), 5)
    };
    let pids = setup.control_planes();
    let mut download = Download {
        mb_s: Default::default(),
        cp_cpu_s_per_gb: Default::default(),
    };
    for rep in 0..reps {
        for (i, route) in setup.source.iter().enumerate() {
            let mut viewer = route.connect().await?;
            viewer.drain_until(Instant::now() + warmup).await?;
            let before = procfs::cpu_time_of(&pids);
            let start = Instant::now();
            let bytes = viewer.drain_until(start + window).await?;
            let elapsed = start.elapsed().as_secs_f64();
            let cpu = procfs::cpu_time_of(&pids).saturating_sub(before);
            viewer.close().await;
            let mb_s = bytes as f64 / elapsed / 1e6;
            let per_gb = cpu.as_secs_f64() / (bytes as f64 / 1e9).max(1e-9);
            eprintln!(
                "  throughput rep {}/{reps} {:<8} {mb_s:>7.1} MB/s | control planes' CPU {per_gb:.2} s/GB",
                rep + 1,
                NAMES[i],
            );
            download.mb_s[i].push(mb_s);
            download.cp_cpu_s_per_gb[i].push(per_gb);
        }
    }
    Ok(download)
}

/// Round trips of 32 bytes through the echoing session, one viewer per
/// route, in interleaved blocks; µs.
async fn round_trips(settings: &Settings, setup: &Setup) -> anyhow::Result<[Option<Summary>; 2]> {
    let (blocks, per_block, warmup) = if settings.quick {
        (1, 50, 10)
    } else {
        (10, 1000, 200)
    };
    let message = [0x42u8; 32];
    let mut viewers = Vec::new();
    for route in &setup.echo {
        let mut viewer = route.connect().await?;
        for _ in 0..warmup {
            viewer.round_trip(&message).await?;
        }
        viewers.push(viewer);
    }
    let mut samples: [Vec<f64>; 2] = Default::default();
    for _ in 0..blocks {
        for (i, viewer) in viewers.iter_mut().enumerate() {
            for _ in 0..per_block {
                let rtt = viewer.round_trip(&message).await?;
                samples[i].push(rtt.as_secs_f64() * 1e6);
            }
        }
    }
    for viewer in viewers {
        viewer.close().await;
    }
    let summaries = samples.map(|s| Summary::of(&s));
    for (name, s) in NAMES.iter().zip(&summaries) {
        if let Some(s) = s {
            eprintln!(
                "  {name:<8} RTT µs: median {:.0} p99 {:.0} max {:.0} (n={})",
                s.median, s.p99, s.max, s.n
            );
        }
    }
    Ok(summaries)
}

fn median(values: &[f64]) -> f64 {
    Summary::of(values).map_or(0.0, |s| s.median)
}
