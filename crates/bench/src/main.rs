//! `streamspace-bench`: measures the real `streamspace` binary, on the real
//! Docker engine (and libvirt), side by side with the real alternatives (websockify, raw
//! TCP, the `docker` CLI) in the same run. One subcommand per benchmark and
//! `all`; prints a table and writes JSON. `--quick` runs every benchmark at
//! a small size and judges no target: CI's smoke test, so none of them rots.

mod audio;
mod cluster;
mod desktops;
mod docker_cli;
mod events;
mod hub;
mod hub_replicas;
mod procfs;
mod recording;
mod replicas;
mod report;
mod sim_agent;
mod startup;
mod stats;
mod tunnel;
mod viewer;
mod virsh;
mod vm;
mod websockify;

use clap::{Parser, Subcommand, ValueEnum};
use report::{BenchResult, Report};
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "streamspace-bench",
    about = "Benchmarks of StreamSpace against the real alternatives"
)]
struct Cli {
    /// The streamspace binary [default: $CARGO_TARGET_DIR/release/streamspace]
    #[arg(long, global = true)]
    bin: Option<PathBuf>,
    /// Also write the results as JSON to this file.
    #[arg(long, global = true)]
    json: Option<PathBuf>,
    /// Small sizes, short windows, no targets judged (CI's smoke test).
    #[arg(long, global = true)]
    quick: bool,
    /// The websockify program (websockify 0.13 from PyPI).
    #[arg(long, global = true, default_value = "websockify")]
    websockify: PathBuf,
    /// STREAMSPACE_LOG of the processes under test.
    #[arg(long, global = true, default_value = "info")]
    log_filter: String,
    /// Simulated agents in `hub`.
    #[arg(long, global = true, default_value_t = 10_000)]
    agents: usize,
    /// Desktop sessions in `desktops`.
    #[arg(long, global = true, default_value_t = 200)]
    desktops: usize,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Clone, Copy)]
enum Command {
    /// Every benchmark, in order.
    All,
    #[command(flatten)]
    One(Bench),
}

#[derive(Subcommand, ValueEnum, Clone, Copy, Debug)]
enum Bench {
    /// Download throughput through /vnc vs websockify vs raw TCP.
    TunnelThroughput,
    /// The same over TLS: /vnc on HTTPS (agent too) vs websockify --cert.
    TunnelTlsThroughput,
    /// Small-message round trips through /vnc vs websockify vs raw TCP.
    TunnelLatency,
    /// Control plane + agent memory per idle open tunnel vs websockify.
    TunnelMemory,
    /// POST /sessions → banner via /vnc vs docker run → banner.
    SessionStart,
    /// Launch from a warm pool → banner via /vnc vs a cold launch and docker run.
    WarmStart,
    /// Hibernate and wake vs docker stop and docker start.
    HibernateWake,
    /// Simulated agents heartbeating on one control plane; dispatch latency.
    Hub,
    /// Simulated agents over 3 replicas on PostgreSQL; cross-replica dispatch latency.
    HubReplicas,
    /// Many real desktops on one agent, each answering RFB through /vnc.
    Desktops,
    /// A tone started in a desktop session → its onset at a /audio client.
    AudioLatency,
    /// Throughput with recording on vs off; disk bytes per minute of a desktop.
    Recording,
    /// Three replicas on PostgreSQL: /vnc through a relaying replica vs direct.
    Replicas,
    /// VM session start, hibernate and wake on libvirt vs virsh by hand.
    Vm,
}

impl Bench {
    const ALL: [Bench; 14] = [
        Bench::TunnelThroughput,
        Bench::TunnelTlsThroughput,
        Bench::TunnelLatency,
        Bench::TunnelMemory,
        Bench::SessionStart,
        Bench::WarmStart,
        Bench::HibernateWake,
        Bench::Hub,
        Bench::HubReplicas,
        Bench::Desktops,
        Bench::AudioLatency,
        Bench::Recording,
        Bench::Replicas,
        Bench::Vm,
    ];

    fn name(self) -> String {
        self.to_possible_value()
            .map(|v| v.get_name().to_owned())
            .unwrap_or_default()
    }

    async fn run(self, settings: &Settings) -> anyhow::Result<BenchResult> {
        match self {
            Bench::TunnelThroughput => tunnel::throughput(settings).await,
            Bench::TunnelTlsThroughput => tunnel::tls_throughput(settings).await,
            Bench::TunnelLatency => tunnel::latency(settings).await,
            Bench::TunnelMemory => tunnel::memory(settings).await,
            Bench::SessionStart => startup::session_start(settings).await,
            Bench::WarmStart => startup::warm_start(settings).await,
            Bench::HibernateWake => startup::hibernate_wake(settings).await,
            Bench::Hub => hub::hub(settings).await,
            Bench::HubReplicas => hub_replicas::hub_replicas(settings).await,
            Bench::Desktops => desktops::desktops(settings).await,
            Bench::AudioLatency => audio::latency(settings).await,
            Bench::Recording => recording::recording(settings).await,
            Bench::Replicas => replicas::replicas(settings).await,
            Bench::Vm => vm::vm(settings).await,
        }
    }
}

/// What every benchmark is given.
pub struct Settings {
    pub bin: PathBuf,
    pub websockify: PathBuf,
    pub quick: bool,
    pub log_filter: String,
    pub agents: usize,
    pub desktops: usize,
}

fn default_bin() -> PathBuf {
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| PathBuf::from("target"), PathBuf::from);
    target.join("release").join("streamspace")
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    streamspace_testkit::init();
    let cli = Cli::parse();
    let settings = Settings {
        bin: cli.bin.unwrap_or_else(default_bin),
        websockify: cli.websockify,
        quick: cli.quick,
        log_filter: cli.log_filter,
        agents: cli.agents,
        desktops: cli.desktops,
    };
    if !settings.bin.is_file() {
        eprintln!(
            "error: no streamspace binary at {} (build it with `cargo build --release -p streamspace-cli`, or pass --bin)",
            settings.bin.display()
        );
        return std::process::ExitCode::FAILURE;
    }
    let benches = match cli.command {
        Command::All => Bench::ALL.to_vec(),
        Command::One(bench) => vec![bench],
    };
    let machine = procfs::machine();
    eprintln!("machine: {machine}");
    let mut report = Report::new(machine, settings.quick, cli.json.as_deref());
    for bench in benches {
        let name = bench.name();
        eprintln!(
            "\n== {name}{} ==",
            if settings.quick { " (quick)" } else { "" }
        );
        let started = std::time::Instant::now();
        let measured = bench
            .run(&settings)
            .await
            .and_then(|result| result.check().map(|()| result));
        let outcome = match measured {
            Ok(mut result) => {
                result.detail("seconds", started.elapsed().as_secs_f64());
                result.detail("loadavg_after", procfs::loadavg());
                report.add(result)
            }
            Err(error) => report.fail(&name, &error),
        };
        if let Err(error) = outcome {
            eprintln!("error: cannot write the results: {error:#}");
            return std::process::ExitCode::FAILURE;
        }
    }
    report.print_summary();
    if report.failures.is_empty() {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    }
}
