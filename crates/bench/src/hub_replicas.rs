//! The agent hub across replicas: simulated agents (10,000 in a full run)
//! spread evenly over three control-plane replicas on one PostgreSQL, behind
//! HAProxy as operators run them, and the latency of a command issued on
//! one replica to an agent whose control channel another replica holds
//! (`POST /sessions` on replica r+1 → the agent on replica r has the
//! command; the replicas pass it with PostgreSQL's `NOTIFY`).

use crate::Settings;
use crate::hub::{
    Dispatched, control_plane_options, count_online, dispatch, launch, slowest, warm_up, warmup,
};
use crate::procfs;
use crate::report::{BenchResult, Row};
use crate::stats::Summary;
use anyhow::Context;
use serde_json::json;
use std::sync::atomic::Ordering;
use std::time::Duration;
use streamspace_testkit::Api;
use streamspace_testkit::fleet::Fleet;
use tokio::time::sleep;

const REPLICAS: usize = 3;

pub async fn hub_replicas(settings: &Settings) -> anyhow::Result<BenchResult> {
    let (n, dispatches) = match settings.quick {
        true => (60, 30),
        false => (settings.agents, 1000),
    };
    let options = control_plane_options(settings, n)?;
    let fleet = Fleet::start(&settings.bin, REPLICAS, options).await?;
    let admin = Api::admin(&fleet.replicas[0].url).await?;
    let public = Api::new(&fleet.replicas[0].url);
    let apis: Vec<Api> = fleet
        .replicas
        .iter()
        .map(|r| {
            let mut api = Api::new(&r.url);
            api.token = admin.token.clone();
            api
        })
        .collect();
    let bases: Vec<url::Url> = fleet.replicas.iter().map(|r| r.url.clone()).collect();
    let mut sims = launch(&admin, &public, &bases, n).await?;
    let per_replica = wait_connected(&apis, n).await?;
    eprintln!("  connected per replica: {per_replica:?}");
    admin
        .create_template(json!({"name": "sim", "image": "streamspace/sim:none",
                                "ports": [{"name": "vnc", "port": 5900, "protocol": "vnc"}]}))
        .await?;
    // Let every replica's heartbeat flush and listener settle.
    sleep(Duration::from_secs(if settings.quick { 2 } else { 10 })).await;
    let online = count_online(&admin).await?;
    let warm = warm_up(&apis, &mut sims, warmup(settings)).await?;
    let Dispatched {
        latencies,
        responses,
        sent_at,
    } = dispatch(&apis, &mut sims, warm.n..warm.n + dispatches).await?;
    let summary = Summary::of_durations_ms(&latencies).context("no dispatches")?;
    // The API's answer comes once the session is admitted and stored; the
    // rest of the dispatch is NOTIFY and delivery.
    let answered = Summary::of_durations_ms(&responses).context("no dispatches")?;
    eprintln!(
        "  cross-replica dispatch ms: median {:.2} p99 {:.2} max {:.2} (n={}); \
         the API answered in median {:.2} p99 {:.2}",
        summary.median, summary.p99, summary.max, summary.n, answered.median, answered.p99
    );
    let disconnects = sims.counters.disconnects.load(Ordering::Relaxed);
    let rss_mib: Vec<f64> = fleet
        .replicas
        .iter()
        .map(|r| procfs::rss_kib(r.process.pid()).map(|k| k as f64 / 1024.0))
        .collect::<anyhow::Result<_>>()?;

    let quick = settings.quick;
    let mut result = BenchResult::new("hub-replicas");
    result.row(
        Row::new("agents online across 3 replicas", "agents", online as f64).target(
            "10,000",
            online >= 10_000 && disconnects == 0,
            !quick,
        ),
    );
    result.row(
        Row::new("cross-replica command dispatch, p99", "ms", summary.p99).target(
            "< 20 ms",
            summary.p99 < 20.0,
            !quick,
        ),
    );
    result.row(Row::new(
        "cross-replica command dispatch, median",
        "ms",
        summary.median,
    ));
    let max_rss = rss_mib.iter().copied().fold(0.0, f64::max);
    result.row(Row::new("largest replica RSS", "MiB", max_rss));
    result.detail("agents", n);
    result.detail("agents_per_replica", &per_replica);
    result.detail("dispatch_ms", &summary);
    result.detail("api_answer_ms", &answered);
    result.detail("warmup_dispatch_ms", &warm);
    result.detail("replica_rss_mib", &rss_mib);
    let tail = slowest(&latencies, &responses, &sent_at, 15);
    eprintln!("  slowest (dispatch ms, answer ms, at s): {tail:.1?}");
    result.detail("slowest_dispatches_ms_response_ms_at_s", tail);
    result.detail("disconnects", disconnects);
    if disconnects > 0 {
        result.note(format!(
            "{disconnects} simulated agents lost their connection"
        ));
    }
    sims.tasks.abort_all();
    drop(fleet);
    Ok(result)
}

/// Waits until the replicas' gauges together count `n` connected agents;
/// returns each replica's count.
async fn wait_connected(apis: &[Api], n: usize) -> anyhow::Result<Vec<u64>> {
    streamspace_testkit::eventually(Duration::from_secs(300), "agents connected", || async {
        let mut counts = Vec::with_capacity(apis.len());
        for api in apis {
            counts.push(api.metric("streamspace_agents_connected").await? as u64);
        }
        Ok((counts.iter().sum::<u64>() >= n as u64).then_some(counts))
    })
    .await
}
