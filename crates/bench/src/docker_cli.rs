//! The `docker` CLI, as the peer benchmarks use it (`docker run`, `stop`,
//! `start`) and for cleanup, plus a banner probe on a published port.

use anyhow::{Context, bail};
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::process::Command;
use tokio::time::{Instant, sleep, timeout};

/// Runs `docker ARGS…`; returns stdout.
pub async fn docker(args: &[&str]) -> anyhow::Result<String> {
    let output = Command::new("docker")
        .args(args)
        .output()
        .await
        .context("cannot run docker")?;
    if !output.status.success() {
        bail!(
            "docker {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

pub async fn require_image(tag: &str, build: &str) -> anyhow::Result<()> {
    if docker(&["image", "inspect", "--format", "{{.Id}}", tag])
        .await
        .is_err()
    {
        bail!("image {tag} is missing: run {build} (scripts/bench.sh does)");
    }
    Ok(())
}

/// The host port Docker published container port `port` of `container` on.
pub async fn published_port(container: &str, port: u16) -> anyhow::Result<u16> {
    let out = docker(&["port", container, &port.to_string()]).await?;
    out.lines()
        .find_map(|l| l.trim().rsplit_once(':')?.1.parse().ok())
        .with_context(|| format!("{container} publishes no port for {port}: {out:?}"))
}

/// Removes every container an agent owns, in one command.
pub async fn remove_agent_containers(agent_id: &str) -> anyhow::Result<usize> {
    let filter = format!("label=io.streamspace.agent={agent_id}");
    let ids = docker(&["ps", "-aq", "--filter", &filter]).await?;
    let ids: Vec<&str> = ids.split_whitespace().collect();
    if !ids.is_empty() {
        let mut args = vec!["rm", "-f"];
        args.extend(&ids);
        docker(&args).await?;
    }
    Ok(ids.len())
}

/// Connects to `127.0.0.1:port` until the 12-byte RFB banner arrives, every
/// `every`; returns when it did (Docker's proxy accepts before the server
/// inside listens, so an accepted connection proves nothing).
pub async fn wait_for_banner(port: u16, every: Duration, limit: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    loop {
        if probe(port).await {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("no RFB banner on port {port} within {limit:?}");
        }
        sleep(every).await;
    }
}

async fn probe(port: u16) -> bool {
    let Ok(mut tcp) = TcpStream::connect(("127.0.0.1", port)).await else {
        return false;
    };
    let mut banner = [0u8; 12];
    matches!(
        timeout(Duration::from_secs(2), tcp.read_exact(&mut banner)).await,
        Ok(Ok(_)) if banner.starts_with(b"RFB ")
    )
}
