//! The topology every benchmark but the hub one uses: `streamspace server`
//! and a separate `streamspace agent docker` process (so each one's RSS and
//! CPU time can be read from /proc), real Docker, templates and sessions.

use crate::Settings;
use crate::docker_cli;
use crate::viewer::Route;
use anyhow::Context;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use streamspace_testkit::tls::{ServerCert, TestCa};
use streamspace_testkit::{AgentProcess, Api, ControlPlane, Mode, Options};

pub const ECHO_IMAGE: &str = "streamspace/echo:local";
pub const ECHO_PORT: u16 = 5900;
pub const DESKTOP_IMAGE: &str = "streamspace/desktop:local";
pub const DESKTOP_PORT: u16 = 5901;
const RUNNING_LIMIT: Duration = Duration::from_secs(120);

pub struct Cluster {
    pub cp: ControlPlane,
    pub admin: Api,
    pub agent: AgentProcess,
    pub agent_id: String,
    /// Set when the control plane serves HTTPS.
    pub tls: Option<Arc<BenchTls>>,
}

/// HTTPS for a benchmark: a private CA, the certificate the control plane
/// (and websockify) serve, and a client configuration trusting the CA.
pub struct BenchTls {
    pub ca: TestCa,
    pub cert: ServerCert,
    pub client: Arc<rustls::ClientConfig>,
}

impl BenchTls {
    pub fn new() -> anyhow::Result<Arc<Self>> {
        let ca = TestCa::new("bench")?;
        let cert = ca.server_cert("server")?;
        let client = ca.client_config()?;
        Ok(Arc::new(Self { ca, cert, client }))
    }
}

impl Cluster {
    /// A control plane (default heartbeat interval) and one Docker agent
    /// started with `agent_args`.
    pub async fn start(
        settings: &Settings,
        name: &str,
        agent_args: &[&str],
    ) -> anyhow::Result<Self> {
        Self::start_with(settings, name, agent_args, None).await
    }

    /// `start`, with the control plane serving HTTPS and the agent
    /// trusting its CA when `tls` is given.
    pub async fn start_with(
        settings: &Settings,
        name: &str,
        agent_args: &[&str],
        tls: Option<Arc<BenchTls>>,
    ) -> anyhow::Result<Self> {
        Self::start_full(settings, name, agent_args, &[], tls).await
    }

    /// `start_with`, with `cp_extra` added to the control plane's flags.
    pub async fn start_full(
        settings: &Settings,
        name: &str,
        agent_args: &[&str],
        cp_extra: &[&str],
        tls: Option<Arc<BenchTls>>,
    ) -> anyhow::Result<Self> {
        Self::launch(settings, name, agent_args, cp_extra, tls, None).await
    }

    /// A control plane on the PostgreSQL database at `database` (which
    /// other replicas may share) and one Docker agent connected to it.
    pub async fn start_on(settings: &Settings, name: &str, database: &str) -> anyhow::Result<Self> {
        Self::launch(settings, name, &[], &[], None, Some(database)).await
    }

    /// The flags every benchmark's control plane gets, and `extra`.
    pub fn cp_options(settings: &Settings, extra: &[&str]) -> Options {
        // The benchmarks open hundreds of tunnels as one admin to measure
        // what each costs; the per-user stream budget is a policy, not a
        // cost, so it is lifted here.
        let mut args = vec!["--max-streams-per-user".into(), "1000000".into()];
        args.extend(extra.iter().map(|a| (*a).to_owned()));
        Options {
            heartbeat_interval: "5s".into(),
            log_filter: settings.log_filter.clone(),
            args,
            ..Options::default()
        }
    }

    async fn launch(
        settings: &Settings,
        name: &str,
        agent_args: &[&str],
        cp_extra: &[&str],
        tls: Option<Arc<BenchTls>>,
        database: Option<&str>,
    ) -> anyhow::Result<Self> {
        let mut cp_options = Self::cp_options(settings, cp_extra);
        let mut agent_args: Vec<String> = agent_args.iter().map(|a| (*a).to_owned()).collect();
        if let Some(tls) = &tls {
            let (cert, key) = (&tls.cert.cert, &tls.cert.key);
            cp_options.args.extend([
                "--tls-cert".into(),
                path(cert),
                "--tls-key".into(),
                path(key),
            ]);
            agent_args.extend(["--ca-cert".into(), path(&tls.ca.ca_pem)]);
        }
        let cp =
            ControlPlane::start_with(&settings.bin, Mode::Server, database, cp_options).await?;
        let admin = match &tls {
            Some(tls) => Api::with_tls(&cp.url, tls.client.clone())?,
            None => Api::new(&cp.url),
        }
        .as_admin()
        .await?;
        let token = admin.enrollment_token().await?;
        let agent_options = Options {
            log_filter: settings.log_filter.clone(),
            args: agent_args,
            ..Options::default()
        };
        let agent =
            AgentProcess::start_with(&settings.bin, &cp.url, &token, name, agent_options).await?;
        let agent_id = admin
            .wait_for_agent(name, Duration::from_secs(60))
            .await
            .map_err(|e| anyhow::anyhow!("{e:#}\nagent log:\n{}", agent.process.log()))?;
        Ok(Self {
            cp,
            admin,
            agent,
            agent_id,
            tls,
        })
    }

    pub fn cp_pid(&self) -> u32 {
        self.cp.process.pid()
    }

    pub fn agent_pid(&self) -> u32 {
        self.agent.process.pid()
    }

    pub async fn template(
        &self,
        name: &str,
        image: &str,
        port: u16,
        env: Value,
    ) -> anyhow::Result<()> {
        self.admin
            .create_template(json!({
                "name": name,
                "image": image,
                "ports": [{"name": "vnc", "port": port, "protocol": "vnc"}],
                "env": env,
                "platforms": ["docker"],
            }))
            .await
            .map(|_| ())
    }

    /// The echo target in `mode` ("echo" or "source") as template `name`.
    pub async fn echo_template(&self, name: &str, mode: &str) -> anyhow::Result<()> {
        self.template(name, ECHO_IMAGE, ECHO_PORT, json!({"MODE": mode}))
            .await
    }

    /// Creates a session on our agent and waits until it runs.
    pub async fn running_session(&self, template: &str) -> anyhow::Result<String> {
        let session = self
            .admin
            .create_session(json!({"template": template, "agent_id": self.agent_id}))
            .await?;
        let id = session["id"]
            .as_str()
            .context("session without id")?
            .to_owned();
        self.admin
            .wait_for_phase(&id, "Running", RUNNING_LIMIT)
            .await
            .map_err(|e| {
                anyhow::anyhow!(
                    "{e:#}\nagent log tail:\n{}",
                    tail(&self.agent.process.log())
                )
            })?;
        Ok(id)
    }

    /// Our route to a session: `/vnc/{id}` as admin.
    pub fn route(&self, session_id: &str) -> Route {
        Route::Ours {
            base: self.cp.url.clone(),
            session_id: session_id.to_owned(),
            token: self.admin.token.clone().unwrap_or_default(),
            channel: "vnc",
            tls: self.tls.as_ref().map(|tls| tls.client.clone()),
        }
    }

    /// The host port of a session's container port (for the peers).
    pub async fn host_port(&self, session_id: &str, port: u16) -> anyhow::Result<u16> {
        docker_cli::published_port(&format!("streamspace-{session_id}"), port).await
    }

    /// Copies both processes' logs next to the JSON results' temp files (the
    /// processes' own directories go away with them); returns the paths.
    pub fn keep_logs(&self, tag: &str) -> String {
        let dir = std::env::temp_dir();
        let mut kept = Vec::new();
        for (who, log) in [
            ("cp", self.cp.process.log()),
            ("agent", self.agent.process.log()),
        ] {
            let path = dir.join(format!("streamspace-bench-{tag}-{who}.log"));
            if std::fs::write(&path, log).is_ok() {
                kept.push(path.display().to_string());
            }
        }
        kept.join(", ")
    }

    /// Stops the agent and the control plane and removes every container
    /// the agent made.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        let _ = self.agent.process.stop().await;
        let _ = self.cp.process.stop().await;
        docker_cli::remove_agent_containers(&self.agent_id).await?;
        Ok(())
    }
}

impl Drop for Cluster {
    /// On an early error: containers must not outlive the benchmark.
    fn drop(&mut self) {
        let filter = format!("label=io.streamspace.agent={}", self.agent_id);
        if let Ok(out) = std::process::Command::new("docker")
            .args(["ps", "-aq", "--filter", &filter])
            .output()
        {
            let ids = String::from_utf8_lossy(&out.stdout).into_owned();
            let ids: Vec<&str> = ids.split_whitespace().collect();
            if !ids.is_empty() {
                let _ = std::process::Command::new("docker")
                    .args(["rm", "-f"])
                    .args(&ids)
                    .output();
            }
        }
    }
}

fn path(path: &std::path::Path) -> String {
    path.display().to_string()
}

/// The last lines of a log, for error messages.
pub fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}
