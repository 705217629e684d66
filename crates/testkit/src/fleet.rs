//! Several control-plane replicas of the real binary on one PostgreSQL
//! database, behind a real HAProxy (Debian's package) running
//! `deploy/haproxy/haproxy.cfg` as operators are given it: what the replica
//! tests and the fleet benchmark run against. Users and agents are given the balancer's
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
        let mut replicas: Vec<ControlPlane> = Vec::with_capacity(n);
        for _ in 0..n {
            // Every replica seals and opens with one key, as the manifests
            // mount one: the first one's.
            let mut options = options.clone();
            if let Some(first) = replicas.first() {
                let key = first.data_dir.join("mfa-key");
                options
                    .args
                    .extend(["--mfa-key-file".to_owned(), key.display().to_string()]);
            }
            let replica = ControlPlane::start_replica(bin, &database_url, &public, options).await?;
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
    /// HAProxy on `port`, running `deploy/haproxy/haproxy.cfg` as it is
    /// (its addresses from the environment, as the file says) in front of
    /// `servers`, the three replicas' `host:port`.
    pub async fn start(port: u16, servers: &[String]) -> anyhow::Result<Self> {
        anyhow::ensure!(
            servers.len() == 3,
            "the example configuration fronts 3 replicas"
        );
        let dir = tempfile::tempdir()?;
        let log = dir.path().join("haproxy.log");
        let file = std::fs::File::create(&log)?;
        let mut command = Command::new("haproxy");
        command
            .arg("-db")
            .arg("-f")
            .arg(example_config())
            .env("STREAMSPACE_LB_BIND", format!("127.0.0.1:{port}"))
            // 20000 needs 40,000 open files, more than test machines allow.
            .env("STREAMSPACE_LB_MAXCONN", "4000")
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .kill_on_drop(true);
        for (i, server) in servers.iter().enumerate() {
            command.env(format!("STREAMSPACE_REPLICA_{}", i + 1), server);
        }
        let child = command
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

/// The HAProxy configuration operators are given.
pub fn example_config() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/haproxy/haproxy.cfg")
}
