//! `streamspace agent libvirt`: an agent next to a libvirt host that runs
//! each session as a virtual machine (docs/VM.md).

use crate::agent_args::{AgentArgs, host_agent_name};
use crate::shutdown;
use anyhow::Context;
use clap::{Args, ValueEnum};
use std::path::PathBuf;
use std::sync::Arc;
use streamspace_libvirt::{
    AccelerationChoice, DEFAULT_LOG_DIR, DEFAULT_POOL, DEFAULT_POOL_PATH, DEFAULT_URI,
    LibvirtOptions, LibvirtPlatform,
};

#[derive(Args, Debug)]
pub struct LibvirtAgentArgs {
    #[command(flatten)]
    pub agent: AgentArgs,
    /// libvirt connection URI (the host's system daemon by default).
    #[arg(long, env = "STREAMSPACE_LIBVIRT_URI", default_value = DEFAULT_URI)]
    connect: String,
    /// Storage pool for session overlays and home disks; a directory pool
    /// at --pool-path is defined and started if it is missing.
    #[arg(long, env = "STREAMSPACE_LIBVIRT_POOL", default_value = DEFAULT_POOL)]
    pool: String,
    /// Directory of the storage pool when the agent creates it.
    #[arg(long, env = "STREAMSPACE_LIBVIRT_POOL_PATH", default_value = DEFAULT_POOL_PATH)]
    pool_path: PathBuf,
    /// Where each VM's serial console is logged (read by `logs`).
    #[arg(long, env = "STREAMSPACE_LIBVIRT_LOG_DIR", default_value = DEFAULT_LOG_DIR)]
    log_dir: PathBuf,
    /// KVM or QEMU's TCG; `auto` starts a tiny KVM probe domain and falls
    /// back to TCG when it cannot run.
    #[arg(long, env = "STREAMSPACE_LIBVIRT_ACCELERATION", value_enum, default_value_t = Acceleration::Auto)]
    acceleration: Acceleration,
    /// libvirt network VMs join (e.g. `default`); without it a VM has no
    /// network at all.
    #[arg(long, env = "STREAMSPACE_LIBVIRT_NETWORK")]
    network: Option<String>,
    /// Most sessions this host runs at once.
    #[arg(long, default_value_t = 20)]
    max_sessions: u32,
    /// CPU capacity offered is the host's cores times this (vCPUs of
    /// desktops mostly idle); memory is never overcommitted.
    #[arg(long, default_value_t = 4)]
    cpu_overcommit: u32,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Acceleration {
    Auto,
    Kvm,
    Tcg,
}

fn libvirt_options(args: &LibvirtAgentArgs) -> LibvirtOptions {
    LibvirtOptions {
        uri: args.connect.clone(),
        pool: args.pool.clone(),
        pool_path: args.pool_path.clone(),
        log_dir: args.log_dir.clone(),
        acceleration: match args.acceleration {
            Acceleration::Auto => AccelerationChoice::Auto,
            Acceleration::Kvm => AccelerationChoice::Kvm,
            Acceleration::Tcg => AccelerationChoice::Tcg,
        },
        network: args.network.clone(),
        max_sessions: args.max_sessions,
        cpu_overcommit: args.cpu_overcommit,
    }
}

pub async fn run(args: LibvirtAgentArgs) -> anyhow::Result<()> {
    let shutdown = shutdown::on_signal();
    let tls = args.agent.client_tls()?;
    let options = libvirt_options(&args);
    // Check libvirt before enrolling, so a broken host does not use up a
    // single-use token.
    let probe = LibvirtPlatform::connect(&"enrollment-probe".into(), options.clone())
        .await
        .with_context(|| format!("cannot use libvirt at {}", options.uri))?;
    let identity = args
        .agent
        .load_or_enroll(tls, &probe, || host_agent_name("libvirt-agent"))
        .await?;
    drop(probe);
    let platform = LibvirtPlatform::connect(&identity.agent_id, options).await?;
    tracing::info!(
        agent_id = %identity.agent_id,
        name = %identity.name,
        acceleration = ?platform.acceleration(),
        "libvirt agent starting"
    );
    streamspace_agent::run(identity, Arc::new(platform), shutdown).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Command {
        #[command(flatten)]
        libvirt: LibvirtAgentArgs,
    }

    fn options(flags: &[&str]) -> LibvirtOptions {
        let mut argv = vec!["agent", "--control-plane", "http://127.0.0.1:8080"];
        argv.extend_from_slice(flags);
        libvirt_options(&Command::parse_from(argv).libvirt)
    }

    #[test]
    fn the_system_daemon_and_the_streamspace_pool_unless_told_otherwise() {
        let defaults = options(&[]);
        assert_eq!(defaults, LibvirtOptions::default());
        let chosen = options(&[
            "--connect",
            "qemu+ssh://vmhost/system",
            "--pool",
            "fast",
            "--pool-path",
            "/srv/vm",
            "--acceleration",
            "tcg",
            "--network",
            "default",
        ]);
        assert_eq!(chosen.uri, "qemu+ssh://vmhost/system");
        assert_eq!(chosen.pool, "fast");
        assert_eq!(chosen.pool_path, PathBuf::from("/srv/vm"));
        assert_eq!(chosen.acceleration, AccelerationChoice::Tcg);
        assert_eq!(chosen.network.as_deref(), Some("default"));
        let argv = [
            "agent",
            "--control-plane",
            "http://x",
            "--acceleration",
            "hvf",
        ];
        assert!(Command::try_parse_from(argv).is_err());
    }
}
