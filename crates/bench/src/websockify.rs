//! websockify (PyPI, 0.13), the one-hop WebSocket-to-TCP proxy we compare
//! against: started per benchmark in front of the same session port.

use crate::cluster::BenchTls;
use crate::procfs;
use anyhow::{Context, bail};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tokio::time::{Instant, sleep};

pub struct Websockify {
    child: Child,
    pub port: u16,
    log: PathBuf,
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

impl Websockify {
    /// `websockify 127.0.0.1:FREE 127.0.0.1:target_port`, ready to accept;
    /// with `tls`, `--cert`, `--key` and `--ssl-only`.
    pub async fn start(
        program: &Path,
        target_port: u16,
        tls: Option<&BenchTls>,
    ) -> anyhow::Result<Self> {
        let port = free_port()?;
        let log = std::env::temp_dir().join(format!("streamspace-bench-websockify-{port}.log"));
        let file = std::fs::File::create(&log)?;
        let mut command = Command::new(program);
        if let Some(tls) = tls {
            command
                .arg("--cert")
                .arg(&tls.cert.cert)
                .arg("--key")
                .arg(&tls.cert.key)
                .arg("--ssl-only");
        }
        let child = command
            .arg(format!("127.0.0.1:{port}"))
            .arg(format!("127.0.0.1:{target_port}"))
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .spawn()
            .with_context(|| {
                format!(
                    "cannot run {} (install websockify 0.13 from PyPI; scripts/bench.sh does)",
                    program.display()
                )
            })?;
        let mut this = Self { child, port, log };
        let deadline = Instant::now() + Duration::from_secs(20);
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            if let Some(status) = this.child.try_wait()? {
                bail!("websockify exited ({status}): {}", this.log_text());
            }
            if Instant::now() > deadline {
                bail!("websockify did not listen within 20 s: {}", this.log_text());
            }
            sleep(Duration::from_millis(50)).await;
        }
        Ok(this)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Summed RSS and PSS (KiB) of websockify and the children it forked.
    pub fn memory_kib(&self) -> (u64, u64) {
        procfs::tree_memory_kib(self.pid())
    }

    pub fn processes(&self) -> usize {
        procfs::tree(self.pid()).len()
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Websockify {
    fn drop(&mut self) {
        // Children first: they serve connections and outlive the parent.
        let mut pids = procfs::tree(self.pid());
        pids.reverse();
        for pid in pids {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
        }
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}
