//! Test harness shared by the end-to-end tests and the benchmarks: spawn
//! the real `streamspace` binary, drive its HTTP API, speak RFB through
//! `/vnc`, and inspect the real Docker engine.

pub mod api;
pub mod apps;
pub mod docker;
pub mod fleet;
pub mod otlp;
pub mod postgres;
pub mod process;
pub mod rfb;
pub mod tls;

pub use api::Api;
pub use process::{AgentProcess, ControlPlane, Mode, Options, Spawned};

use std::future::Future;
use std::time::Duration;
use tokio::time::{Instant, sleep};

/// The admin password every spawned control plane starts with.
pub const ADMIN_PASSWORD: &str = "admin-password-for-tests";

/// Installs the process-wide TLS provider once (reqwest needs one).
pub fn init() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Polls `check` until it returns `Some`, failing with the last `Err` text
/// after `limit`. Tests wait on conditions, never on fixed sleeps.
pub async fn eventually<T, F, Fut>(limit: Duration, what: &str, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<Option<T>>>,
{
    let deadline = Instant::now() + limit;
    loop {
        let last = match check().await {
            Ok(Some(value)) => return Ok(value),
            Ok(None) => "condition not met yet".to_owned(),
            Err(err) => format!("{err:#}"),
        };
        if Instant::now() >= deadline {
            anyhow::bail!("timed out after {limit:?} waiting for {what}: {last}");
        }
        sleep(Duration::from_millis(100)).await;
    }
}

/// Two connected loopback TCP sockets: (connecting end, accepted end).
pub async fn tcp_pair() -> (tokio::net::TcpStream, tokio::net::TcpStream) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a loopback port");
    let addr = listener.local_addr().expect("its address");
    let (near, far) = tokio::join!(tokio::net::TcpStream::connect(addr), listener.accept());
    (near.expect("connect"), far.expect("accept").0)
}
