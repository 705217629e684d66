//! The agent hub: thousands of simulated agents on one control plane,
//! heartbeating at the interval it sets, and the latency of dispatching a
//! command to one of them (`POST /sessions` with its `agent_id` → the agent
//! has the command).

use crate::Settings;
use crate::procfs;
use crate::report::{BenchResult, Row};
use crate::sim_agent::{self, Counters, Delivery, Identity};
use crate::stats::Summary;
use anyhow::Context;
use futures::{StreamExt, TryStreamExt};
use serde_json::json;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use streamspace_protocol::SessionId;
use streamspace_testkit::{Api, ControlPlane, Mode, Options};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::{Instant, sleep, timeout};

const ENROLL_CONCURRENCY: usize = 32;
const CONNECT_CONCURRENCY: usize = 128;

/// Dispatches made before the measured ones and reported apart: the first
/// use of each pooled database connection prepares each statement, and a
/// fleet that just connected still has its first heartbeats to store.
pub(crate) fn warmup(settings: &Settings) -> usize {
    if settings.quick { 5 } else { 100 }
}

pub async fn hub(settings: &Settings) -> anyhow::Result<BenchResult> {
    let (n, dispatches, steady) = if settings.quick {
        (50, 10, Duration::from_secs(2))
    } else {
        (settings.agents, 1000, Duration::from_secs(20))
    };
    let options = control_plane_options(settings, n)?;
    let cp = ControlPlane::start_with(&settings.bin, Mode::Server, None, options).await?;
    let pid = cp.process.pid();
    let admin = Api::admin(&cp.url).await?;
    let public = Api::new(&cp.url);
    let rss_idle = procfs::rss_kib(pid)?;

    let mut sims = launch(&admin, &public, std::slice::from_ref(&cp.url), n).await?;
    let hub_connected = wait_connected(&admin, n).await?;

    // Steady state: only heartbeats.
    sleep(steady / 2).await;
    let cpu_before = procfs::cpu_time(pid)?;
    let beats_before = sims.counters.heartbeats.load(Ordering::Relaxed);
    let window = Instant::now();
    sleep(steady / 2).await;
    let cpu = procfs::cpu_time(pid)?.saturating_sub(cpu_before);
    let window = window.elapsed().as_secs_f64();
    let beats = sims.counters.heartbeats.load(Ordering::Relaxed) - beats_before;
    let cpu_percent = cpu.as_secs_f64() / window * 100.0;
    let rss = procfs::rss_kib(pid)?;
    let online = count_online(&admin).await?;
    eprintln!(
        "  steady: {online} online, {:.0} heartbeats/s, CP CPU {cpu_percent:.1} %, RSS {:.1} MiB",
        beats as f64 / window,
        rss as f64 / 1024.0
    );

    // Dispatch: each to a different agent, spread over the fleet.
    admin
        .create_template(json!({"name": "sim", "image": "streamspace/sim:none",
                                "ports": [{"name": "vnc", "port": 5900, "protocol": "vnc"}]}))
        .await?;
    let apis = std::slice::from_ref(&admin);
    let warm = warm_up(apis, &mut sims, warmup(settings)).await?;
    let Dispatched {
        latencies,
        responses,
        sent_at,
    } = dispatch(apis, &mut sims, warm.n..warm.n + dispatches).await?;
    let dispatch = Summary::of_durations_ms(&latencies).context("no dispatches")?;
    let response = Summary::of_durations_ms(&responses).context("no responses")?;
    eprintln!(
        "  dispatch ms: median {:.2} p99 {:.2} max {:.2} (n={}); API response alone: median {:.2} p99 {:.2} max {:.2}",
        dispatch.median,
        dispatch.p99,
        dispatch.max,
        dispatch.n,
        response.median,
        response.p99,
        response.max
    );
    let online_after = count_online(&admin).await?;
    let disconnects = sims.counters.disconnects.load(Ordering::Relaxed);
    let rss_after = procfs::rss_kib(pid)?;

    let mut result = BenchResult::new("hub");
    let quick = settings.quick;
    result.row(
        Row::new(
            "agents online (heartbeating)",
            "agents",
            online_after as f64,
        )
        .target("10,000", online_after >= 10_000 && disconnects == 0, !quick),
    );
    result.row(
        Row::new("command dispatch, p99", "ms", dispatch.p99).target(
            "< 20 ms",
            dispatch.p99 < 20.0,
            !quick,
        ),
    );
    result.row(Row::new("command dispatch, median", "ms", dispatch.median));
    result.row(Row::new(
        "control plane RSS",
        "MiB",
        rss_after as f64 / 1024.0,
    ));
    result.row(Row::new(
        "control plane RSS per agent",
        "KiB",
        rss.saturating_sub(rss_idle) as f64 / n as f64,
    ));
    result.row(Row::new(
        "control plane CPU, heartbeats only",
        "%",
        cpu_percent,
    ));
    result.detail("agents", n);
    result.detail("enroll_s", sims.enroll_time.as_secs_f64());
    result.detail("connect_s", sims.connect_time.as_secs_f64());
    result.detail("hub_connected_metric", hub_connected);
    result.detail("online_before_dispatch", online);
    result.detail("heartbeats_per_s", beats as f64 / window);
    result.detail("disconnects", disconnects);
    result.detail("dispatch_ms", &dispatch);
    result.detail("warmup_dispatch_ms", &warm);
    result.detail("create_response_ms", &response);
    result.detail(
        "slowest_dispatches_ms_response_ms_at_s",
        slowest(&latencies, &responses, &sent_at, 5),
    );
    result.detail(
        "rss_kib",
        json!({"idle": rss_idle, "steady": rss, "after_dispatch": rss_after}),
    );
    if disconnects > 0 {
        result.note(format!(
            "{disconnects} simulated agents lost their connection"
        ));
    }
    sims.tasks.abort_all();
    drop(cp);
    Ok(result)
}

/// What the control plane(s) of a hub benchmark with `n` agents run with
/// (agents' default heartbeat), once the host can hold that many sockets.
pub(crate) fn control_plane_options(settings: &Settings, n: usize) -> anyhow::Result<Options> {
    if let Some(limit) = procfs::open_files_limit()
        && limit < n as u64 + 500
    {
        anyhow::bail!("{n} agents need {n}+ open files here, the limit is {limit} (ulimit -n)");
    }
    Ok(Options {
        heartbeat_interval: "5s".into(),
        log_filter: settings.log_filter.clone(),
        args: Vec::new(),
        ..Options::default()
    })
}

/// Simulated agents, enrolled and connected, agent `i` to `bases[i % len]`.
pub(crate) struct Sims {
    pub identities: Vec<Identity>,
    pub counters: Arc<Counters>,
    deliveries: mpsc::UnboundedReceiver<Delivery>,
    pub tasks: JoinSet<()>,
    pub enroll_time: Duration,
    pub connect_time: Duration,
}

pub(crate) async fn launch(
    admin: &Api,
    public: &Api,
    bases: &[url::Url],
    n: usize,
) -> anyhow::Result<Sims> {
    let start = Instant::now();
    let identities: Vec<Identity> = futures::stream::iter(0..n)
        .map(|i| async move { sim_agent::enroll(admin, public, &format!("sim-{i:05}")).await })
        .buffered(ENROLL_CONCURRENCY)
        .try_collect()
        .await?;
    let enroll_time = start.elapsed();
    eprintln!(
        "  enrolled {n} agents in {:.1} s",
        enroll_time.as_secs_f64()
    );
    let counters = Arc::new(Counters::default());
    let (deliveries_tx, deliveries) = mpsc::unbounded_channel::<Delivery>();
    let mut tasks = JoinSet::new();
    let start = Instant::now();
    let mut connects = futures::stream::iter(identities.iter().enumerate())
        .map(|(i, identity)| {
            let base = &bases[i % bases.len()];
            async move { (i, sim_agent::connect(base, identity).await) }
        })
        .buffer_unordered(CONNECT_CONCURRENCY);
    while let Some((i, connected)) = connects.next().await {
        let (ws, heartbeat) = connected.with_context(|| format!("agent sim-{i:05}"))?;
        // Spread first heartbeats over one interval, as independent hosts would.
        let phase = heartbeat.mul_f64(i as f64 / n as f64);
        tasks.spawn(sim_agent::run(
            ws,
            heartbeat,
            phase,
            counters.clone(),
            deliveries_tx.clone(),
        ));
    }
    drop(connects);
    let connect_time = start.elapsed();
    eprintln!(
        "  connected {n} agents in {:.1} s",
        connect_time.as_secs_f64()
    );
    Ok(Sims {
        identities,
        counters,
        deliveries,
        tasks,
        enroll_time,
        connect_time,
    })
}

/// Each dispatch's latency (create → the agent has the command), the API
/// response's share of it, and when it was sent (s into the run).
pub(crate) struct Dispatched {
    pub latencies: Vec<Duration>,
    pub responses: Vec<Duration>,
    pub sent_at: Vec<f64>,
}

/// The warm-up dispatches' latencies, printed (not counted in the results).
pub(crate) async fn warm_up(apis: &[Api], sims: &mut Sims, n: usize) -> anyhow::Result<Summary> {
    let warm = dispatch(apis, sims, 0..n).await?;
    let summary = Summary::of_durations_ms(&warm.latencies).context("no warm-up")?;
    eprintln!(
        "  warm-up ({n} dispatches, not counted): median {:.2} p99 {:.2} max {:.2} ms",
        summary.median, summary.p99, summary.max
    );
    Ok(summary)
}

/// Creates number `ks` (each for a different agent, spread over the
/// fleet). With several replicas (`apis[r]` for agents connected to replica
/// `r`, as `launch` spread them), each goes through the next replica, so
/// every command crosses from one replica to another.
pub(crate) async fn dispatch(
    apis: &[Api],
    sims: &mut Sims,
    ks: std::ops::Range<usize>,
) -> anyhow::Result<Dispatched> {
    let apis_n = apis.len();
    let mut dispatched = Dispatched {
        latencies: Vec::with_capacity(ks.len()),
        responses: Vec::with_capacity(ks.len()),
        sent_at: Vec::with_capacity(ks.len()),
    };
    let start = Instant::now();
    let mut early: HashMap<SessionId, Instant> = HashMap::new();
    let n = sims.identities.len();
    for k in ks {
        let i = (k * 7919) % n;
        let agent = &sims.identities[i];
        let api = &apis[(i + 1) % apis_n];
        let sent = Instant::now();
        let session = api
            .create_session(json!({"template": "sim", "agent_id": agent.id}))
            .await?;
        dispatched.responses.push(sent.elapsed());
        let id = session["id"].as_str().context("session id")?.to_owned();
        let received = match early.remove(id.as_str()) {
            Some(at) => at,
            None => loop {
                let (sid, at) = timeout(Duration::from_secs(30), sims.deliveries.recv())
                    .await
                    .with_context(|| {
                        format!("agent {} never got session {id}'s command", agent.id)
                    })?
                    .context("the fleet is gone")?;
                if sid == id {
                    break at;
                }
                early.insert(sid, at);
            },
        };
        dispatched
            .latencies
            .push(received.saturating_duration_since(sent));
        dispatched
            .sent_at
            .push(sent.duration_since(start).as_secs_f64());
    }
    Ok(dispatched)
}

/// The tail: the `n` slowest dispatches, each as its latency, its API
/// response time (ms) and when it was sent (seconds into the run), to tell
/// what they wait for (a heartbeat flush comes back every interval).
pub(crate) fn slowest(
    latencies: &[Duration],
    responses: &[Duration],
    sent_at: &[f64],
    n: usize,
) -> Vec<(f64, f64, f64)> {
    let mut slowest: Vec<(f64, f64, f64)> = latencies
        .iter()
        .zip(responses)
        .zip(sent_at)
        .map(|((l, r), at)| (l.as_secs_f64() * 1e3, r.as_secs_f64() * 1e3, *at))
        .collect();
    slowest.sort_by(|a, b| b.0.total_cmp(&a.0));
    slowest.truncate(n);
    slowest
}

/// Waits until the hub's own gauge counts `n` connected agents.
async fn wait_connected(admin: &Api, n: usize) -> anyhow::Result<u64> {
    streamspace_testkit::eventually(Duration::from_secs(300), "agents connected", || async {
        let connected = agents_connected(admin).await?;
        Ok((connected >= n as u64).then_some(connected))
    })
    .await
}

/// `streamspace_agents_connected` from `/metrics`.
async fn agents_connected(api: &Api) -> anyhow::Result<u64> {
    let text = api.text("/metrics").await?;
    text.lines()
        .find_map(|l| {
            l.strip_prefix("streamspace_agents_connected ")?
                .trim()
                .parse()
                .ok()
        })
        .context("no streamspace_agents_connected in /metrics")
}

pub(crate) async fn count_online(admin: &Api) -> anyhow::Result<usize> {
    Ok(admin
        .agents()
        .await?
        .iter()
        .filter(|a| a["status"] == "online")
        .count())
}
