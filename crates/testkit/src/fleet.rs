//! Several control-plane replicas of the real binary on one PostgreSQL
//! database, behind a real HAProxy (Debian's package) configured as
//! `deploy/haproxy/haproxy.cfg` recommends: what the replica tests and the
//! fleet benchmark run against. Users and agents are given the balancer's
//! URL; a test may still call one replica directly (`replicas[i].url`).

use crate::process::{ControlPlane, Options, Spawned, free_port};
use anyhow::Context;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;
use tempfile::TempDir;
use tokio::process::Command;
use url::Url;

pub struct Fleet {
    pub replicas: Vec<ControlPlane>,
    pub balancer: Balancer,
    pub database_url: String,
}

impl Fleet {
    /// `n` replicas on a fresh database, then the balancer in front of them.
    pub async fn start(bin: &Path, n: usize, options: Options) -> anyhow::Result<Self> {
        crate::init();
        let database_url = crate::postgres::fresh_database().await?;
        let port = free_port()?;
        let public = Url::parse(&format!("http://127.0.0.1:{port}"))?;
        let mut replicas = Vec::with_capacity(n);
        for _ in 0..n {
            let replica =
                ControlPlane::start_replica(bin, &database_url, &public, options.clone()).await?;
            replicas.push(replica);
        }
        let servers: Vec<String> = replicas
            .iter()
            .map(|r| format!("127.0.0.1:{}", r.url.port().unwrap_or_default()))
            .collect();
        let balancer = Balancer::start(port, &servers).await?;
        Ok(Self {
            replicas,
            balancer,
            database_url,
        })
    }

    /// Where users and agents reach the fleet.
    pub fn url(&self) -> &Url {
        &self.balancer.url
    }
}

/// HAProxy in the foreground, killed when dropped.
pub struct Balancer {
    pub process: Spawned,
    pub url: Url,
    _dir: TempDir,
}

impl Balancer {
    pub async fn start(port: u16, servers: &[String]) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let config = dir.path().join("haproxy.cfg");
        std::fs::write(&config, config_text(port, servers))?;
        let log = dir.path().join("haproxy.log");
        let file = std::fs::File::create(&log)?;
        let child = Command::new("haproxy")
            .arg("-db")
            .arg("-f")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .kill_on_drop(true)
            .spawn()
            .context("cannot start haproxy (scripts/install-deps.sh installs it)")?;
        let process = Spawned::from_child(child, log);
        let url = Url::parse(&format!("http://127.0.0.1:{port}"))?;
        let healthz = url.join("healthz")?;
        let client = reqwest::Client::new();
        crate::eventually(Duration::from_secs(20), "HAProxy serving", || {
            let (client, healthz) = (client.clone(), healthz.clone());
            async move {
                match client.get(healthz).send().await {
                    Ok(r) if r.status().is_success() => Ok(Some(())),
                    Ok(r) => Err(anyhow::anyhow!("{}", r.status())),
                    Err(e) => Err(e.into()),
                }
            }
        })
        .await
        .with_context(|| process.log())?;
        Ok(Self {
            process,
            url,
            _dir: dir,
        })
    }
}

/// The recommended configuration (deploy/haproxy/haproxy.cfg) for these
/// servers: `/readyz` health checks every 500 ms so a draining replica
/// leaves the rotation at once; `redispatch` so a request whose replica
/// refuses the connection goes to another; long tunnel timeouts for VNC
/// and agent channels.
fn config_text(port: u16, servers: &[String]) -> String {
    let servers: String = servers
        .iter()
        .enumerate()
        .map(|(i, addr)| format!("    server replica{i} {addr} check\n"))
        .collect();
    format!(
        "global\n    maxconn 4000\n\
         defaults\n    mode http\n    timeout connect 2s\n    timeout client 60s\n    \
         timeout server 60s\n    timeout tunnel 1h\n    retries 3\n    option redispatch\n\
         frontend streamspace\n    bind 127.0.0.1:{port}\n    default_backend replicas\n\
         backend replicas\n    balance roundrobin\n    option httpchk GET /readyz\n    \
         http-check expect status 200\n    default-server inter 500ms fall 1 rise 2\n{servers}"
    )
}
