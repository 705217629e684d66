//! The real binary as child processes: a control plane (`server` or `up`)
//! and Docker agents, each with its own temporary directory and log file.

use crate::ADMIN_PASSWORD;
use anyhow::{Context, bail};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tempfile::TempDir;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use url::Url;

/// A child process whose stderr goes to a log file, killed when dropped.
pub struct Spawned {
    child: Child,
    log: PathBuf,
}

impl Spawned {
    /// A process started elsewhere in the harness, logging to `log`.
    pub fn from_child(child: Child, log: PathBuf) -> Self {
        Self { child, log }
    }

    pub fn pid(&self) -> u32 {
        self.child.id().unwrap_or_default()
    }

    /// The process's log so far (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn signal(&self, signal: &str) -> anyhow::Result<()> {
        let status = std::process::Command::new("kill")
            .args([format!("-{signal}"), self.pid().to_string()])
            .status()?;
        if !status.success() {
            bail!("kill -{signal} {} failed", self.pid());
        }
        Ok(())
    }

    /// `kill -9`: no chance to clean up, as in a crash.
    pub async fn kill9(&mut self) -> anyhow::Result<()> {
        self.child.kill().await?;
        Ok(())
    }

    /// Waits up to `limit` for the process to exit by itself.
    pub async fn exited(&mut self, limit: Duration) -> anyhow::Result<std::process::ExitStatus> {
        tokio::time::timeout(limit, self.child.wait())
            .await
            .with_context(|| format!("still running after {limit:?}"))?
            .map_err(Into::into)
    }

    /// SIGTERM, then wait for a graceful exit.
    pub async fn stop(&mut self) -> anyhow::Result<std::process::ExitStatus> {
        self.signal("TERM")?;
        tokio::time::timeout(Duration::from_secs(15), self.child.wait())
            .await
            .context("did not exit within 15 s of SIGTERM")?
            .map_err(Into::into)
    }
}

/// What a spawned process gets beyond its defaults: benchmarks want quieter
/// logs, the default heartbeat interval, or extra flags.
#[derive(Debug, Clone)]
pub struct Options {
    /// `--heartbeat-interval` of a control plane (tests: 1 s).
    pub heartbeat_interval: String,
    /// `STREAMSPACE_LOG`.
    pub log_filter: String,
    /// Appended to the command line.
    pub args: Vec<String>,
    /// Extra environment (an agent's `DOCKER_HOST`).
    pub env: Vec<(String, String)>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            heartbeat_interval: "1s".into(),
            log_filter: "info,streamspace=debug".into(),
            args: Vec::new(),
            env: Vec::new(),
        }
    }
}

fn spawn(
    mut command: Command,
    log: PathBuf,
    options: &Options,
) -> anyhow::Result<(Spawned, tokio::process::ChildStdout)> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)?;
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(file)
        .args(&options.args)
        .envs(options.env.iter().map(|(k, v)| (k, v)))
        .env("STREAMSPACE_LOG", &options.log_filter)
        .kill_on_drop(true)
        .spawn()
        .context("cannot start the streamspace binary")?;
    let stdout = child.stdout.take().context("no stdout")?;
    Ok((Spawned { child, log }, stdout))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `streamspace server`: control plane only.
    Server,
    /// `streamspace up`: control plane plus an embedded Docker agent.
    Up,
}

/// A running control plane on a free loopback port.
pub struct ControlPlane {
    pub process: Spawned,
    pub url: Url,
    pub data_dir: PathBuf,
    bin: PathBuf,
    mode: Mode,
    database_url: Option<String>,
    options: Options,
    /// One of several behind a load balancer (`start_replica`).
    replica: bool,
    _dir: TempDir,
}

impl ControlPlane {
    pub async fn start(bin: &Path, mode: Mode, database_url: Option<&str>) -> anyhow::Result<Self> {
        Self::start_with(bin, mode, database_url, Options::default()).await
    }

    pub async fn start_with(
        bin: &Path,
        mode: Mode,
        database_url: Option<&str>,
        options: Options,
    ) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let data_dir = dir.path().join("data");
        let (process, url) =
            Self::launch(bin, mode, &data_dir, database_url, "127.0.0.1:0", &options).await?;
        Ok(Self {
            process,
            url,
            data_dir,
            bin: bin.to_owned(),
            mode,
            database_url: database_url.map(str::to_owned),
            options,
            replica: false,
            _dir: dir,
        })
    }

    /// A replica among several on `database_url` (`server` mode), on a
    /// loopback port of its own, telling users and agents that they reach
    /// it at `public_url` (the load balancer in front of all replicas).
    pub async fn start_replica(
        bin: &Path,
        database_url: &str,
        public_url: &Url,
        mut options: Options,
    ) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let data_dir = dir.path().join("data");
        let port = free_port()?;
        let listen = format!("127.0.0.1:{port}");
        options
            .args
            .extend(["--public-url".to_owned(), public_url.to_string()]);
        let (process, _public) = Self::launch(
            bin,
            Mode::Server,
            &data_dir,
            Some(database_url),
            &listen,
            &options,
        )
        .await?;
        Ok(Self {
            process,
            url: Url::parse(&format!("http://{listen}"))?,
            data_dir,
            bin: bin.to_owned(),
            mode: Mode::Server,
            database_url: Some(database_url.to_owned()),
            options,
            replica: true,
            _dir: dir,
        })
    }

    async fn launch(
        bin: &Path,
        mode: Mode,
        data_dir: &Path,
        database_url: Option<&str>,
        listen: &str,
        options: &Options,
    ) -> anyhow::Result<(Spawned, Url)> {
        let mut command = Command::new(bin);
        command
            .arg(match mode {
                Mode::Server => "server",
                Mode::Up => "up",
            })
            .args(["--listen", listen, "--data-dir"])
            .arg(data_dir)
            .args(["--heartbeat-interval", &options.heartbeat_interval])
            .env("STREAMSPACE_ADMIN_PASSWORD", ADMIN_PASSWORD);
        if let Some(db) = database_url {
            command.args(["--database-url", db]);
        }
        let log = data_dir.with_extension("log");
        std::fs::create_dir_all(data_dir.parent().unwrap_or(data_dir))?;
        let (process, stdout) = spawn(command, log, options)?;
        let url = tokio::time::timeout(Duration::from_secs(120), read_url(stdout))
            .await
            .ok()
            .flatten()
            .with_context(|| format!("the control plane did not start:\n{}", process.log()))?;
        Ok((process, url))
    }

    /// Starts the control plane again on the same port and data, as after a
    /// crash or an upgrade.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        let listen = format!(
            "{}:{}",
            self.url.host_str().unwrap_or("127.0.0.1"),
            self.url.port().unwrap_or_default()
        );
        let (process, url) = Self::launch(
            &self.bin,
            self.mode,
            &self.data_dir,
            self.database_url.as_deref(),
            &listen,
            &self.options,
        )
        .await?;
        self.process = process;
        // A replica prints the load balancer's URL; it still listens here.
        if !self.replica {
            self.url = url;
        }
        Ok(())
    }
}

/// A TCP port free on loopback now (for a process that must be told its
/// port before it starts; another process could take it in between, which
/// on a test machine does not happen).
pub fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// Reads the banner line `StreamSpace is running at URL` from stdout and
/// keeps draining stdout afterwards so the child never blocks on it.
async fn read_url(stdout: tokio::process::ChildStdout) -> Option<Url> {
    let mut lines = BufReader::new(stdout).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        if let Some(url) = line.strip_prefix("StreamSpace is running at ") {
            let url = Url::parse(url.trim()).ok();
            tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
            return url;
        }
    }
    None
}

/// A separate `streamspace agent docker` (or other platform's) process.
pub struct AgentProcess {
    pub process: Spawned,
    pub state_dir: PathBuf,
    launch: AgentLaunch,
    _dir: TempDir,
}

/// How an agent process is started, again on restart.
struct AgentLaunch {
    bin: PathBuf,
    control_plane: Url,
    name: String,
    /// The platform subcommand and its own flags (`["docker"]`).
    platform: Vec<String>,
    state_dir: PathBuf,
    options: Options,
}

impl AgentProcess {
    pub async fn start(
        bin: &Path,
        control_plane: &Url,
        enrollment_token: &str,
        name: &str,
    ) -> anyhow::Result<Self> {
        Self::start_with(
            bin,
            control_plane,
            enrollment_token,
            name,
            Options::default(),
        )
        .await
    }

    pub async fn start_with(
        bin: &Path,
        control_plane: &Url,
        enrollment_token: &str,
        name: &str,
        options: Options,
    ) -> anyhow::Result<Self> {
        Self::start_on(
            bin,
            control_plane,
            enrollment_token,
            name,
            &["docker"],
            options,
        )
        .await
    }

    /// An agent of `platform` (`["libvirt", "--pool", "…"]`): the
    /// subcommand of `streamspace agent` and its own flags.
    pub async fn start_on(
        bin: &Path,
        control_plane: &Url,
        enrollment_token: &str,
        name: &str,
        platform: &[&str],
        options: Options,
    ) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let launch = AgentLaunch {
            bin: bin.to_owned(),
            control_plane: control_plane.clone(),
            name: name.to_owned(),
            platform: platform.iter().map(|&arg| arg.to_owned()).collect(),
            state_dir: dir.path().join("state"),
            options,
        };
        Ok(Self {
            process: launch.spawn(Some(enrollment_token))?,
            state_dir: launch.state_dir.clone(),
            launch,
            _dir: dir,
        })
    }

    /// Starts the agent again from its state dir (no enrollment token).
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.process = self.launch.spawn(None)?;
        Ok(())
    }
}

impl AgentLaunch {
    fn spawn(&self, token: Option<&str>) -> anyhow::Result<Spawned> {
        let state_dir = &self.state_dir;
        let mut command = Command::new(&self.bin);
        command
            .arg("agent")
            .args(&self.platform)
            .args(["--control-plane", self.control_plane.as_str()])
            .args(["--name", &self.name, "--state-dir"])
            .arg(state_dir);
        if let Some(token) = token {
            command.args(["--enrollment-token", token]);
        }
        let log = state_dir.with_extension("log");
        std::fs::create_dir_all(state_dir.parent().unwrap_or(state_dir))?;
        let (process, _stdout) = spawn(command, log, &self.options)?;
        Ok(process)
    }
}
