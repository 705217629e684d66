//! `streamspace agent docker`: an agent next to a Docker engine;
//! `streamspace agent kubernetes` lives in `kubernetes.rs`, `… libvirt` in
//! `libvirt.rs`, the flags every agent takes in `agent_args.rs`.

use crate::agent_args::{AgentArgs, AllowCapabilityArg, host_agent_name};
use crate::shutdown;
use anyhow::Context;
use clap::{Args, Subcommand};
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use streamspace_docker::{DEFAULT_NETWORK, DockerOptions, DockerPlatform, RegistryAuths};

use crate::{kubernetes, libvirt};

#[derive(Subcommand, Debug)]
pub enum AgentCommand {
    /// Run sessions as containers on this host's Docker engine.
    Docker(DockerAgentArgs),
    /// Run sessions as pods in a Kubernetes namespace (or `render` the
    /// objects a template becomes).
    Kubernetes(kubernetes::KubernetesAgentArgs),
    /// Run sessions as virtual machines on this host's libvirt (QEMU/KVM),
    /// hibernated with their memory.
    Libvirt(libvirt::LibvirtAgentArgs),
}

impl AgentCommand {
    /// Where the agent exports its traces (`kubernetes render` exports none).
    pub fn tracing(&self) -> crate::tracing_args::TracingArgs {
        match self {
            AgentCommand::Docker(args) => args.agent.tracing.clone(),
            AgentCommand::Kubernetes(args) => args.tracing(),
            AgentCommand::Libvirt(args) => args.agent.tracing.clone(),
        }
    }
}

#[derive(Args, Debug)]
pub struct DockerAgentArgs {
    #[command(flatten)]
    agent: AgentArgs,
    /// Most sessions this host runs at once.
    #[arg(long, default_value_t = 50)]
    max_sessions: u32,
    /// CPU capacity offered is the host's cores times this (session CPU is a
    /// limit, and desktops mostly idle); memory is never overcommitted.
    #[arg(long, default_value_t = 4)]
    cpu_overcommit: u32,
    /// Address session ports are published on; the agent dials it. Keep it
    /// on loopback: anywhere else, other sessions and the network reach them.
    #[arg(long, default_value = "127.0.0.1")]
    publish_host: IpAddr,
    /// Docker network for session containers: a bridge with inter-container
    /// traffic off (`-o com.docker.network.bridge.enable_icc=false`), so no
    /// session can connect to another. Created if missing; an existing
    /// network that lets containers talk is refused.
    #[arg(long, env = "STREAMSPACE_DOCKER_NETWORK", default_value = DEFAULT_NETWORK)]
    network: String,
    #[command(flatten)]
    capabilities: AllowCapabilityArg,
    /// Registry credentials for pulls: a Docker `config.json` (`auths` by
    /// registry, as `docker login` writes it), read at start; keep it mode
    /// 0600. A template's own `registry_auth` wins for its registry.
    #[arg(long, value_name = "FILE", env = "STREAMSPACE_REGISTRY_AUTH")]
    registry_auth: Option<PathBuf>,
    /// Never pull a missing image: a session whose image is not on this
    /// host fails and says so (for hosts whose images are built or loaded
    /// there).
    #[arg(long)]
    no_pull: bool,
    /// Least milliseconds between two progress reports of one pull
    /// (default 1000); for tests, which pull small images quickly.
    #[arg(long, hide = true, value_name = "MS", value_parser = clap::value_parser!(u64).range(0..=60_000))]
    pull_report_interval_ms: Option<u64>,
    /// NVIDIA GPUs sessions may be given, instead of those found in
    /// /proc/driver/nvidia/gpus: for hosts where detection fails (a remote
    /// engine), to keep some back, or to test GPU placement without a GPU
    /// (sessions that get one then fail: the engine cannot hand it out).
    #[arg(long, value_parser = clap::value_parser!(u32).range(0..=1024))]
    gpus: Option<u32>,
    /// The GPUs' model as agents report it ("NVIDIA A10"); detected by
    /// default.
    #[arg(long, value_parser = gpu_model)]
    gpu_model: Option<String>,
}

/// A model name people read in the agent list: printable, at most 100
/// characters.
fn gpu_model(text: &str) -> Result<String, String> {
    let ok = !text.trim().is_empty() && text.chars().count() <= 100;
    match ok && !text.chars().any(char::is_control) {
        true => Ok(text.trim().to_owned()),
        false => Err("write 1 to 100 printable characters, e.g. \"NVIDIA A10\"".to_owned()),
    }
}

pub async fn run(command: AgentCommand) -> anyhow::Result<()> {
    match command {
        AgentCommand::Docker(args) => run_docker(args).await,
        AgentCommand::Kubernetes(args) => kubernetes::run(args).await,
        AgentCommand::Libvirt(args) => libvirt::run(args).await,
    }
}

/// What the flags make of the platform's options; the error says what is
/// wrong with `--registry-auth`'s file.
fn docker_options(args: &DockerAgentArgs) -> anyhow::Result<DockerOptions> {
    let registry_auths = match &args.registry_auth {
        None => RegistryAuths::default(),
        Some(path) => {
            let auths =
                RegistryAuths::load(path).map_err(|e| anyhow::anyhow!("--registry-auth: {e}"))?;
            let registries: Vec<&str> = auths.registries().collect();
            tracing::info!(?registries, "registry credentials loaded");
            auths
        }
    };
    Ok(DockerOptions {
        publish_host: args.publish_host,
        network: args.network.clone(),
        max_sessions: args.max_sessions,
        cpu_overcommit: args.cpu_overcommit,
        allowed_capabilities: args.capabilities.allowed.clone(),
        pull_missing_images: !args.no_pull,
        registry_auths,
        gpus: args.gpus,
        gpu_model: args.gpu_model.clone(),
        ..DockerOptions::default()
    })
}

async fn run_docker(args: DockerAgentArgs) -> anyhow::Result<()> {
    let shutdown = shutdown::on_signal();
    let tls = args.agent.client_tls()?;
    let options = docker_options(&args)?;
    if let Some(ms) = args.pull_report_interval_ms {
        streamspace_agent::pulls::set_report_every(std::time::Duration::from_millis(ms));
    }
    // Check the engine before enrolling, so a broken host does not use up
    // a single-use token.
    let probe = DockerPlatform::connect(&"enrollment-probe".into(), options.clone())
        .await
        .context("cannot use the Docker engine")?;
    let identity = args
        .agent
        .load_or_enroll(tls, &probe, || host_agent_name("docker-agent"))
        .await?;
    let platform = DockerPlatform::connect(&identity.agent_id, options).await?;
    tracing::info!(agent_id = %identity.agent_id, name = %identity.name, "docker agent starting");
    streamspace_agent::run(identity, Arc::new(platform), shutdown).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Command {
        #[command(flatten)]
        docker: DockerAgentArgs,
    }

    fn options(flags: &[&str]) -> DockerOptions {
        let mut argv = vec!["agent", "--control-plane", "http://127.0.0.1:8080"];
        argv.extend_from_slice(flags);
        docker_options(&Command::parse_from(argv).docker).expect("options")
    }

    #[test]
    fn sessions_join_the_isolated_network_unless_told_otherwise() {
        assert_eq!(options(&[]).network, "streamspace-sessions");
        assert_eq!(options(&["--network", "lab"]).network, "lab");
        assert_eq!(options(&[]).publish_host.to_string(), "127.0.0.1");
    }

    #[test]
    fn missing_images_are_pulled_with_the_credentials_file_unless_told_not_to() {
        assert!(options(&[]).pull_missing_images);
        assert!(!options(&["--no-pull"]).pull_missing_images);
        let dir = tempfile::tempdir().expect("dir");
        let file = dir.path().join("config.json");
        std::fs::write(
            &file,
            r#"{"auths": {"127.0.0.1:5000": {"username": "u", "password": "p"}}}"#,
        )
        .expect("write");
        let path = file.to_str().expect("utf-8");
        let auths = options(&["--registry-auth", path]).registry_auths;
        assert!(auths.get("127.0.0.1:5000").is_some());
        std::fs::write(&file, "{").expect("write");
        let argv = [
            "agent",
            "--control-plane",
            "http://x",
            "--registry-auth",
            path,
        ];
        let err = docker_options(&Command::parse_from(argv).docker).expect_err("broken file");
        assert!(err.to_string().starts_with("--registry-auth: "), "{err}");
    }

    #[test]
    fn gpus_are_detected_unless_declared() {
        assert_eq!((options(&[]).gpus, options(&[]).gpu_model), (None, None));
        let declared = options(&["--gpus", "2", "--gpu-model", "Fake GPU"]);
        assert_eq!(declared.gpus, Some(2));
        assert_eq!(declared.gpu_model.as_deref(), Some("Fake GPU"));
        let argv = ["agent", "--control-plane", "http://127.0.0.1:8080"];
        for bad in [["--gpus", "-1"], ["--gpus", "5000"], ["--gpu-model", ""]] {
            assert!(
                Command::try_parse_from(argv.iter().chain(&bad)).is_err(),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn capabilities_that_weaken_isolation_are_allowed_one_by_one() {
        assert!(options(&[]).allowed_capabilities.is_empty());
        let flags = [
            "--allow-capability",
            "NET_RAW",
            "--allow-capability",
            "SYS_PTRACE",
        ];
        assert_eq!(
            options(&flags).allowed_capabilities,
            ["NET_RAW", "SYS_PTRACE"]
        );
        let argv = ["agent", "--control-plane", "http://127.0.0.1:8080"];
        let err =
            Command::try_parse_from(argv.iter().chain(&["--allow-capability", "CAP_NET_RAW"]))
                .err()
                .expect("a prefixed name is refused")
                .to_string();
        assert!(err.contains("write \"NET_RAW\""), "{err}");
    }
}
