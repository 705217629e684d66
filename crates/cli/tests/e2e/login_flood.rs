//! A flood of wrong-password logins against the real `streamspace server`
//! (no Docker needed): the server's memory stays bounded, `/healthz` stays
//! fast, guessing one password is throttled with 429 and `Retry-After`,
//! and another user can still log in meanwhile.
//!
//! The flood comes "from" thousands of addresses (a botnet): the server
//! trusts 127.0.0.1 as a proxy and each request names a different client in
//! `X-Forwarded-For`, so no per-address throttle hides it and the bound on
//! password hashing itself is what is tested.

use crate::bin;
use reqwest::StatusCode;
use serde_json::json;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use streamspace_testkit::{ADMIN_PASSWORD, Api, ControlPlane, Mode, Options};
use url::Url;

/// Password checks the server admits per core: one running and 16 waiting
/// (`PasswordWork::for_machine`); beyond them it answers 503 at once.
const ADMITTED_PER_CORE: usize = 1 + 16;
const FLOOD_FOR: Duration = Duration::from_secs(8);
/// Peak resident memory allowed for the control plane under the flood:
/// what it needs anyway, plus each core's 19 MiB argon2 buffer with room.
const PEAK_RSS_BASE_MIB: u64 = 192;
const PEAK_RSS_PER_CORE_MIB: u64 = 32;
/// Generous: the point is that it answers at all while the flood runs.
const HEALTHZ_LIMIT: Duration = Duration::from_secs(2);

#[tokio::test]
async fn a_login_flood_keeps_memory_bounded_and_guessing_is_throttled() -> anyhow::Result<()> {
    let options = Options {
        log_filter: "warn".into(),
        args: vec!["--trusted-proxies".into(), "127.0.0.1/32".into()],
        ..Options::default()
    };
    let cp = ControlPlane::start_with(bin(), Mode::Server, None, options).await?;
    let admin = Api::admin(&cp.url).await?;
    admin.create_user("bob", "bob-password").await?;
    let before = peak_rss_mib(cp.process.pid())?;

    // The server sizes its bound from the same machine's cores. Twice what
    // it admits keeps it refusing (503) throughout, on any machine; before
    // the bound, each of these ran a 19 MiB argon2id at once.
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let tasks = 2 * ADMITTED_PER_CORE * cores;
    let peak_limit = PEAK_RSS_BASE_MIB + PEAK_RSS_PER_CORE_MIB * cores as u64;
    let running = Arc::new(AtomicBool::new(true));
    let probe = slowest_healthz(&cp.url, running.clone());
    let statuses = flood(&cp.url, tasks).await?;
    running.store(false, Ordering::Relaxed);
    let slowest = probe
        .join()
        .map_err(|_| anyhow::anyhow!("the /healthz probe panicked"))??;
    let peak = peak_rss_mib(cp.process.pid())?;
    println!(
        "login flood of {tasks} clients: {statuses:?}; peak RSS {before} MiB before, \
         {peak} MiB after; slowest /healthz {slowest:?}"
    );
    assert!(
        peak < peak_limit,
        "peak RSS {peak} MiB under the flood (limit {peak_limit} MiB for {cores} cores)"
    );
    assert!(slowest < HEALTHZ_LIMIT, "/healthz took {slowest:?}");
    for status in statuses.keys() {
        assert!(
            [401, 503].contains(status),
            "the flood was answered {status}: {statuses:?}\n{}",
            cp.process.log()
        );
    }

    // One address guessing one user's password is stopped…
    let refused = guess_until_throttled(&cp.url, "admin", "192.0.2.1").await?;
    assert!(refused.retry_after >= 1, "{refused:?}");
    assert!(refused.error.contains("try again in"), "{refused:?}");
    // …even with the right password, until the lockout ends…
    let client = reqwest::Client::new();
    let (status, _) = login(&client, &cp.url, "admin", ADMIN_PASSWORD, "192.0.2.9").await?;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    // …while another user logs in.
    let (status, body) = login(&client, &cp.url, "bob", "bob-password", "192.0.2.2").await?;
    assert_eq!(status, StatusCode::OK, "{body}");

    // Every series is there from the start at 0: the values are the test.
    let metrics = reqwest::get(cp.url.join("/metrics")?).await?.text().await?;
    let failures = |reason| failures(&metrics, reason);
    let answered = |status| statuses.get(&status).copied().unwrap_or(0);
    assert!(answered(503) > 0, "the bound never refused: {statuses:?}");
    assert!(failures("busy")? >= answered(503), "{metrics}");
    assert!(failures("bad_credentials")? >= answered(401), "{metrics}");
    assert!(failures("throttled")? >= 2, "{metrics}");
    Ok(())
}

/// `streamspace_login_failures_total{reason}` in Prometheus text.
fn failures(metrics: &str, reason: &str) -> anyhow::Result<u64> {
    let series = format!("streamspace_login_failures_total{{reason=\"{reason}\"}}");
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(&series))
        .and_then(|value| value.trim().parse::<f64>().ok())
        .map(|value| value as u64)
        .ok_or_else(|| anyhow::anyhow!("no {series} in\n{metrics}"))
}

/// Wrong-password logins as fast as `clients` clients can send them, each
/// for a new username from a new address; the answers by status.
async fn flood(base: &Url, clients: usize) -> anyhow::Result<BTreeMap<u16, u64>> {
    let deadline = Instant::now() + FLOOD_FOR;
    let mut tasks = Vec::new();
    for task in 0..clients {
        let base = base.clone();
        tasks.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            let mut statuses = BTreeMap::new();
            let mut n = 0u32;
            while Instant::now() < deadline {
                n += 1;
                // A /64 of its own each (IPv6 is counted by /64), for any
                // number of clients.
                let address = format!("2001:db8:{task:x}:{:x}::1", n % 0x1_0000);
                let user = format!("nobody-{task}-{n}");
                let (status, _) = login(&client, &base, &user, "wrong-password", &address).await?;
                *statuses.entry(status.as_u16()).or_insert(0u64) += 1;
            }
            anyhow::Ok(statuses)
        }));
    }
    let mut total = BTreeMap::new();
    for task in tasks {
        for (status, n) in task.await?? {
            *total.entry(status).or_insert(0) += n;
        }
    }
    Ok(total)
}

/// The slowest `/healthz` answer while `running`, asked on a thread of its
/// own so the flood's tasks in this process cannot delay the measurement.
fn slowest_healthz(
    base: &Url,
    running: Arc<AtomicBool>,
) -> std::thread::JoinHandle<anyhow::Result<Duration>> {
    let address = format!(
        "{}:{}",
        base.host_str().unwrap_or("127.0.0.1"),
        base.port().unwrap_or(80)
    );
    std::thread::spawn(move || {
        let mut slowest = Duration::ZERO;
        while running.load(Ordering::Relaxed) {
            let start = Instant::now();
            let mut tcp = std::net::TcpStream::connect(&address)?;
            tcp.set_read_timeout(Some(Duration::from_secs(30)))?;
            tcp.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")?;
            let mut answer = String::new();
            tcp.read_to_string(&mut answer)?;
            anyhow::ensure!(answer.starts_with("HTTP/1.1 200"), "/healthz: {answer}");
            slowest = slowest.max(start.elapsed());
            std::thread::sleep(Duration::from_millis(200));
        }
        Ok(slowest)
    })
}

#[derive(Debug)]
struct Throttled {
    retry_after: u64,
    error: String,
}

/// Wrong passwords for `user` from `address` until the server answers 429.
async fn guess_until_throttled(base: &Url, user: &str, address: &str) -> anyhow::Result<Throttled> {
    let client = reqwest::Client::new();
    for attempt in 0..20 {
        let answer = client
            .post(base.join("/api/v1/auth/login")?)
            .header("x-forwarded-for", address)
            .json(&json!({"username": user, "password": format!("guess-{attempt}")}))
            .send()
            .await?;
        match answer.status() {
            StatusCode::UNAUTHORIZED => continue,
            StatusCode::TOO_MANY_REQUESTS => {
                let retry_after = answer
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                let body: serde_json::Value = answer.json().await?;
                let error = body["error"].as_str().unwrap_or_default().to_owned();
                return Ok(Throttled { retry_after, error });
            }
            other => anyhow::bail!("guess {attempt}: {other} {}", answer.text().await?),
        }
    }
    anyhow::bail!("20 wrong passwords for {user} were never throttled")
}

async fn login(
    client: &reqwest::Client,
    base: &Url,
    user: &str,
    password: &str,
    address: &str,
) -> anyhow::Result<(StatusCode, serde_json::Value)> {
    let answer = client
        .post(base.join("/api/v1/auth/login")?)
        .header("x-forwarded-for", address)
        .timeout(Duration::from_secs(60))
        .json(&json!({"username": user, "password": password}))
        .send()
        .await?;
    let status = answer.status();
    let body = answer.json().await.unwrap_or_default();
    Ok((status, body))
}

/// The process's peak resident set (`VmHWM`), in MiB.
fn peak_rss_mib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib = status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .ok_or_else(|| anyhow::anyhow!("no VmHWM in /proc/{pid}/status"))?;
    Ok(kib / 1024)
}
