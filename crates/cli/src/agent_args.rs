//! The flags every `streamspace agent <platform>` takes, whatever its
//! platform: where the control plane is and how to trust it, how to enroll,
//! what to call the agent and where it keeps its identity. Each platform's
//! command flattens [`AgentArgs`] and adds only its own flags.

use crate::tracing_args::TracingArgs;
use crate::trust::CaCertArg;
use anyhow::Context;
use clap::Args;
use std::path::PathBuf;
use streamspace_agent::{ClientTls, Enrollment, Identity, Platform};
use url::Url;

#[derive(Args, Debug)]
pub struct AgentArgs {
    /// URL of the control plane, e.g. https://streamspace.example.com
    // Optional to clap's types only, so that a subcommand that needs no
    // control plane (`agent kubernetes render`) can lift the requirement.
    #[arg(long, env = "STREAMSPACE_CONTROL_PLANE", required = true)]
    control_plane: Option<Url>,
    /// Single-use token from an admin; needed only the first time.
    #[arg(long, env = "STREAMSPACE_ENROLLMENT_TOKEN", hide_env_values = true)]
    enrollment_token: Option<String>,
    /// Name shown to admins (default: this host's name).
    #[arg(long, env = "STREAMSPACE_AGENT_NAME")]
    name: Option<String>,
    /// Where the agent keeps its identity (agent.json, mode 0600).
    #[arg(
        long,
        env = "STREAMSPACE_STATE_DIR",
        default_value = "./streamspace-agent"
    )]
    pub state_dir: PathBuf,
    /// Region label shown to admins and usable for placement.
    #[arg(long, env = "STREAMSPACE_REGION")]
    region: Option<String>,
    #[command(flatten)]
    ca: CaCertArg,
    #[command(flatten)]
    pub tracing: TracingArgs,
}

impl AgentArgs {
    /// What to trust on an `https://` control plane. Read before the
    /// platform is tried, so a bad `--ca-cert` is the first thing said.
    pub fn client_tls(&self) -> anyhow::Result<ClientTls> {
        self.ca.client_tls()
    }

    /// The identity saved in the state directory, or a new one from
    /// enrolling what `probe` (the platform, checked to work) says about
    /// itself, named `--name` or else `default_name()`.
    pub async fn load_or_enroll(
        &self,
        tls: ClientTls,
        probe: &dyn Platform,
        default_name: impl FnOnce() -> String,
    ) -> anyhow::Result<Identity> {
        let control_plane = self
            .control_plane
            .clone()
            .context("--control-plane is required")?;
        let enrollment = Enrollment {
            control_plane,
            token: self.enrollment_token.clone(),
            name: self.name.clone().unwrap_or_else(default_name),
            platform: probe.name().to_owned(),
            region: self.region.clone(),
            capacity: probe.capacity().await.unwrap_or_default(),
            capabilities: probe.capabilities(),
            tls,
        };
        Identity::load_or_enroll(&self.state_dir, &enrollment).await
    }
}

/// `--allow-capability`, shared by the Docker and Kubernetes agents.
#[derive(Args, Debug, Clone, Default)]
pub struct AllowCapabilityArg {
    /// Let templates give sessions this capability although it undoes
    /// their isolation or reaches into the host (NET_RAW, NET_ADMIN,
    /// SYS_ADMIN, …: see docs/IMAGES.md); refused otherwise. Repeatable.
    #[arg(
        long = "allow-capability",
        value_name = "NAME",
        env = "STREAMSPACE_ALLOW_CAPABILITIES",
        value_delimiter = ',',
        value_parser = parse_capability
    )]
    pub allowed: Vec<String>,
}

fn parse_capability(name: &str) -> Result<String, String> {
    streamspace_agent::confinement::check_name(name).map(|()| name.to_owned())
}

/// This host's name as a valid agent name, or `fallback` when nothing of
/// it is left (the default `--name` of agents that run on a host).
pub fn host_agent_name(fallback: &str) -> String {
    let raw = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let slug = agent_name(raw.trim());
    if slug.is_empty() {
        fallback.to_owned()
    } else {
        slug
    }
}

/// `text` as a valid agent name (lowercase letters, digits, '-'), for a
/// platform's default name; empty if nothing of it is left.
pub fn agent_name(text: &str) -> String {
    let slug: String = text
        .to_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .take(63)
        .collect();
    slug.trim_matches('-').to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Command {
        #[command(flatten)]
        agent: AgentArgs,
    }

    #[test]
    fn every_agent_needs_a_control_plane_and_defaults_the_rest() {
        assert!(Command::try_parse_from(["agent"]).is_err());
        let args = Command::parse_from(["agent", "--control-plane", "http://127.0.0.1:8080"]).agent;
        assert_eq!(args.state_dir, PathBuf::from("./streamspace-agent"));
        assert_eq!(args.name, None);
    }

    #[test]
    fn every_agent_can_export_traces() {
        let base = ["agent", "--control-plane", "http://127.0.0.1:8080"];
        let off = Command::parse_from(base).agent.tracing.otlp_endpoint;
        assert_eq!(off, None, "off by default");
        let on =
            Command::try_parse_from([&base[..], &["--otlp-endpoint", "http://c:4318"]].concat());
        let endpoint = on.expect("parses").agent.tracing.otlp_endpoint;
        assert_eq!(
            endpoint.map(String::from).as_deref(),
            Some("http://c:4318/")
        );
        let bad = Command::try_parse_from([&base[..], &["--otlp-endpoint", "c:4318"]].concat());
        assert!(bad.is_err(), "not an http URL");
    }

    #[test]
    fn agent_names_are_slugs() {
        assert_eq!(agent_name("Build Host_7."), "build-host-7");
        assert_eq!(agent_name("--"), "");
    }
}
