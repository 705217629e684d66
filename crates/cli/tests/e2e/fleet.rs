//! Three replicas of the real binary on one PostgreSQL, behind a real
//! HAProxy, with two real Docker agents connected through it
//! (docs/ARCHITECTURE.md#replicas): any request works on any replica, and
//! replicas can be restarted one by one while people work.

use crate::{RUNNING_LIMIT, bin, desktop_template, require_desktop_image};
use anyhow::{Context, bail, ensure};
use reqwest::{Method, StatusCode};
use serde_json::json;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use streamspace_testkit::docker::Cleanup;
use streamspace_testkit::fleet::Fleet;
use streamspace_testkit::rfb::VncSocket;
use streamspace_testkit::{AgentProcess, Api, Options, eventually};
use tokio::time::{Instant, sleep, timeout};
use tokio_util::sync::CancellationToken;

const REPLICAS: usize = 3;
/// Each agent's `--max-sessions` where the racing creates fill them.
const AGENT_CAPACITY: usize = 3;
/// Room for every session the rolling restart creates.
const ROOMY: usize = 16;
const AGENT_NAMES: [&str; 2] = ["fleet-a", "fleet-b"];

/// The fleet, its admin (through the balancer), and the agents.
struct Setup {
    fleet: Fleet,
    admin: Api,
    agents: Vec<AgentProcess>,
    _cleanup: Cleanup,
}

impl Setup {
    async fn start(capacity: usize) -> anyhow::Result<Self> {
        require_desktop_image();
        // Viewers on a stopping replica are cut after 3 s, not 10: the
        // rolling restart stops each replica in turn.
        let options = Options {
            args: vec!["--drain-timeout".into(), "3s".into()],
            ..Options::default()
        };
        let fleet = Fleet::start(bin(), REPLICAS, options).await?;
        let admin = Api::admin(fleet.url()).await?;
        let mut agents = Vec::new();
        let mut ids = Vec::new();
        for name in AGENT_NAMES {
            let token = admin.enrollment_token().await?;
            let options = Options {
                args: vec!["--max-sessions".into(), capacity.to_string()],
                ..Options::default()
            };
            let agent = AgentProcess::start_with(bin(), fleet.url(), &token, name, options).await?;
            let id = admin
                .wait_for_agent(name, Duration::from_secs(30))
                .await
                .map_err(|e| anyhow::anyhow!("{e:#}\nagent log:\n{}", agent.process.log()))?;
            agents.push(agent);
            ids.push(id);
        }
        admin.create_template(desktop_template("desktop")).await?;
        Ok(Self {
            fleet,
            admin,
            agents,
            _cleanup: Cleanup(ids),
        })
    }

    /// `api`'s login, but talking to replica `i` directly.
    fn on_replica(&self, api: &Api, i: usize) -> Api {
        let mut direct = Api::new(&self.fleet.replicas[i].url);
        direct.token = api.token.clone();
        direct
    }

    fn logs(&self) -> String {
        let replicas = self.fleet.replicas.iter().enumerate();
        let mut logs: Vec<String> = replicas
            .map(|(i, r)| format!("--- replica {i}:\n{}", tail(&r.process.log())))
            .collect();
        for (agent, name) in self.agents.iter().zip(AGENT_NAMES) {
            logs.push(format!("--- {name}:\n{}", tail(&agent.process.log())));
        }
        logs.join("\n")
    }
}

fn tail(log: &str) -> &str {
    let start = log.len().saturating_sub(6_000);
    let start = (start..log.len())
        .find(|i| log.is_char_boundary(*i))
        .unwrap_or(0);
    &log[start..]
}

#[tokio::test]
async fn any_request_on_any_replica() -> anyhow::Result<()> {
    let setup = Setup::start(AGENT_CAPACITY).await?;
    let result = any_request(&setup).await;
    result.map_err(|e| anyhow::anyhow!("{e:#}\n{}", setup.logs()))
}

async fn any_request(setup: &Setup) -> anyhow::Result<()> {
    let admin = &setup.admin;
    let user = admin.create_user("fleet-user", "user-password").await?;
    let quota = format!("/api/v1/users/{}/quota", user["id"].as_str().unwrap_or(""));
    let quota_body = Some(json!({"max_sessions": 2}));
    admin
        .expect(Method::PUT, &quota, quota_body, StatusCode::OK)
        .await?;
    let alice = Api::login(setup.fleet.url(), "fleet-user", "user-password").await?;
    let mut streams = Vec::new();
    for i in 0..REPLICAS {
        streams.push(EventLog::open(setup.on_replica(admin, i)).await?);
    }

    // Creates racing on all three replicas at once: the quota (2) holds.
    let created = race_creates(setup, &alice, 6).await?;
    ensure!(created.len() == 2, "quota 2 admitted {created:?}");
    // The admin has no quota: the agents' capacity (2 × 3, 2 taken) holds.
    let more = race_creates(setup, admin, 9).await?;
    ensure!(
        more.len() == 2 * AGENT_CAPACITY - 2,
        "capacity admitted {more:?}"
    );

    let sessions: Vec<String> = created.into_iter().chain(more).collect();
    for id in &sessions {
        admin.wait_for_phase(id, "Running", RUNNING_LIMIT).await?;
    }
    // Each session viewed through each replica: two of three are relayed
    // (the agent's control channel is on one replica, the data channel
    // lands on any).
    for id in &sessions {
        for i in 0..REPLICAS {
            crate::assert_vnc_works(&setup.on_replica(admin, i), id)
                .await
                .with_context(|| format!("session {id} through replica {i}"))?;
        }
    }
    // Every replica's event stream told of every session, wherever it was
    // created and whichever replica its agent reported through.
    for (i, stream) in streams.iter().enumerate() {
        for id in &sessions {
            let what = format!("replica {i}'s events name {id}");
            eventually(Duration::from_secs(10), &what, || async {
                Ok(stream.mentions(id).then_some(()))
            })
            .await?;
        }
    }
    Ok(())
}

/// `n` creates at once, spread over the replicas; the ids of those admitted.
async fn race_creates(setup: &Setup, api: &Api, n: usize) -> anyhow::Result<Vec<String>> {
    let attempts: Vec<_> = (0..n)
        .map(|k| {
            let direct = setup.on_replica(api, k % REPLICAS);
            tokio::spawn(async move {
                let body = Some(json!({"template": "desktop"}));
                direct.call(Method::POST, "/api/v1/sessions", body).await
            })
        })
        .collect();
    let mut admitted = Vec::new();
    for attempt in attempts {
        let answer = attempt.await??;
        match answer.status {
            StatusCode::CREATED => {
                admitted.push(answer.body["id"].as_str().unwrap_or_default().to_owned())
            }
            StatusCode::FORBIDDEN | StatusCode::SERVICE_UNAVAILABLE => {}
            other => bail!("create answered {other}: {}", answer.body),
        }
    }
    Ok(admitted)
}

/// A replica's live event stream (`GET /api/v1/events`), read in the
/// background into one text.
struct EventLog {
    text: Arc<Mutex<String>>,
    _reader: tokio::task::JoinHandle<()>,
}

impl EventLog {
    /// Returns once the stream is open: its first event (a ping, sent at
    /// once) arrived, so the replica has subscribed to every change after.
    async fn open(api: Api) -> anyhow::Result<Self> {
        let log = Self::start(api);
        eventually(
            Duration::from_secs(30),
            "the event stream's first ping",
            || async {
                Ok((!log
                    .text
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .is_empty())
                .then_some(()))
            },
        )
        .await?;
        Ok(log)
    }

    fn start(api: Api) -> Self {
        let text = Arc::new(Mutex::new(String::new()));
        let sink = text.clone();
        let reader = tokio::spawn(async move {
            let Ok(url) = api.base.join("/api/v1/events") else {
                return;
            };
            let token = api.token.clone().unwrap_or_default();
            let request = reqwest::Client::new().get(url).bearer_auth(token);
            let Ok(mut response) = request.send().await else {
                return;
            };
            while let Ok(Some(chunk)) = response.chunk().await {
                let mut text = sink.lock().unwrap_or_else(|p| p.into_inner());
                text.push_str(&String::from_utf8_lossy(&chunk));
            }
        });
        Self {
            text,
            _reader: reader,
        }
    }

    fn mentions(&self, needle: &str) -> bool {
        let text = self.text.lock().unwrap_or_else(|p| p.into_inner());
        text.contains(needle)
    }
}

#[tokio::test]
async fn rolling_restart_under_load() -> anyhow::Result<()> {
    let mut setup = Setup::start(ROOMY).await?;
    let result = rolling_restart(&mut setup).await;
    result.map_err(|e| anyhow::anyhow!("{e:#}\n{}", setup.logs()))
}

async fn rolling_restart(setup: &mut Setup) -> anyhow::Result<()> {
    let admin = setup.admin.clone();
    let mut first = Vec::new();
    for _ in 0..2 {
        let session = admin.create_session(json!({"template": "desktop"})).await?;
        first.push(session["id"].as_str().unwrap_or_default().to_owned());
    }
    for id in &first {
        admin.wait_for_phase(id, "Running", RUNNING_LIMIT).await?;
    }
    let stop = CancellationToken::new();
    let viewers: Vec<_> = first
        .iter()
        .map(|id| tokio::spawn(keep_viewing(admin.clone(), id.clone(), stop.clone())))
        .collect();
    let creator = tokio::spawn(keep_creating(admin.clone(), stop.clone()));

    for i in 0..REPLICAS {
        let moved = restart_replica(setup, i).await?;
        eprintln!("replica {i} stopped: its agents were on other replicas after {moved:?}");
        ensure!(
            moved < Duration::from_secs(2),
            "the agents of replica {i} took {moved:?} to move to another replica"
        );
    }
    sleep(Duration::from_secs(2)).await;
    stop.cancel();
    let Created {
        ids: created,
        unanswered,
    } = creator.await??;
    ensure!(
        !created.is_empty(),
        "no session was created while the replicas restarted"
    );
    let mut reconnects = 0;
    for viewer in viewers {
        reconnects += viewer.await??;
    }
    ensure!(reconnects > 0, "no viewer was on a restarted replica");
    eprintln!(
        "{} sessions created while replicas restarted; viewers reconnected {reconnects} times",
        created.len()
    );

    // Nothing lost, nothing twice: every session created reaches Running
    // (no command was lost) and has exactly one container.
    let all: Vec<String> = first.iter().cloned().chain(created).collect();
    let unique: HashSet<&String> = all.iter().collect();
    ensure!(unique.len() == all.len(), "a session id came back twice");
    for id in &all {
        admin.wait_for_phase(id, "Running", RUNNING_LIMIT).await?;
        let containers = streamspace_testkit::docker::session_containers(id)?;
        ensure!(containers.len() == 1, "session {id}: {containers:?}");
    }
    let listed = admin
        .expect(Method::GET, "/api/v1/sessions", None, StatusCode::OK)
        .await?;
    let listed = listed.as_array().cloned().unwrap_or_default();
    for id in &all {
        let copies = listed.iter().filter(|s| s["id"] == id.as_str()).count();
        ensure!(copies == 1, "session {id} listed {copies} times");
    }
    // A create whose answer was lost may have been stored: at most one such
    // session per lost answer, and each one whole (running, one container).
    let unknown: Vec<String> = listed
        .iter()
        .filter_map(|s| s["id"].as_str())
        .filter(|id| !all.iter().any(|known| known == id))
        .map(str::to_owned)
        .collect();
    ensure!(
        unknown.len() <= unanswered,
        "{} sessions nobody was told of ({unknown:?}), {unanswered} creates unanswered",
        unknown.len()
    );
    for id in &unknown {
        admin.wait_for_phase(id, "Running", RUNNING_LIMIT).await?;
        let containers = streamspace_testkit::docker::session_containers(id)?;
        ensure!(containers.len() == 1, "session {id}: {containers:?}");
    }
    Ok(())
}

/// SIGTERM to replica `i`, and how long until every agent is connected to
/// another replica; then the replica starts again (as an upgrade would).
async fn restart_replica(setup: &mut Setup, i: usize) -> anyhow::Result<Duration> {
    let replica_id = replica_id_of(&setup.on_replica(&setup.admin, i)).await?;
    let others: Vec<Api> = (0..REPLICAS)
        .filter(|j| *j != i)
        .map(|j| setup.on_replica(&setup.admin, j))
        .collect();
    let started = Instant::now();
    setup.fleet.replicas[i].process.signal("TERM")?;
    let moved = eventually(Duration::from_secs(10), "agents moved", || async {
        let agents = others[0].agents().await?;
        let settled = agents.iter().all(|a| {
            a["status"] == "online" && a["replica_id"].as_str().is_some_and(|r| r != replica_id)
        });
        Ok((settled && agents.len() == AGENT_NAMES.len()).then(|| started.elapsed()))
    })
    .await?;
    let exit = setup.fleet.replicas[i]
        .process
        .exited(Duration::from_secs(30))
        .await?;
    ensure!(exit.success(), "replica {i} stopped with {exit}");
    setup.fleet.replicas[i].restart().await?;
    Ok(moved)
}

/// This replica's id, from the replicas it lists (the one at its own URL).
async fn replica_id_of(api: &Api) -> anyhow::Result<String> {
    let replicas = api
        .expect(Method::GET, "/api/v1/replicas", None, StatusCode::OK)
        .await?;
    let own = api.base.as_str().trim_end_matches('/');
    replicas
        .as_array()
        .into_iter()
        .flatten()
        .find(|r| r["internal_url"].as_str().map(|u| u.trim_end_matches('/')) == Some(own))
        .and_then(|r| r["id"].as_str().map(str::to_owned))
        .context("the replica is not in its own list")
}

/// A viewer through the balancer that, like noVNC, connects again when its
/// connection ends; returns how many times it had to.
async fn keep_viewing(api: Api, id: String, stop: CancellationToken) -> anyhow::Result<u32> {
    let token = api.token.clone().unwrap_or_default();
    let mut reconnects = 0;
    while !stop.is_cancelled() {
        let connected = Instant::now();
        let mut vnc = timeout(Duration::from_secs(10), async {
            loop {
                match VncSocket::connect(&api.base, &id, &token, &[]).await {
                    Ok(vnc) => return vnc,
                    Err(_) => sleep(Duration::from_millis(200)).await,
                }
            }
        })
        .await
        .with_context(|| format!("viewer of {id} could not connect again"))?;
        let init = vnc.handshake().await?;
        vnc.framebuffer_update(&init).await?;
        // Keep the stream busy until it ends or the test does.
        let mut request = vec![3u8, 0, 0, 0, 0, 0];
        request.extend_from_slice(&init.width.to_be_bytes());
        request.extend_from_slice(&init.height.to_be_bytes());
        let ended = loop {
            if stop.is_cancelled() {
                break false;
            }
            if vnc.write(&request).await.is_err() {
                break true;
            }
            // Whatever arrives (or nothing for a while) is fine; an error
            // is the connection ending.
            let read = timeout(Duration::from_millis(500), vnc.read_exact(4096)).await;
            if let Ok(Err(_)) = read {
                break true;
            }
        };
        if ended {
            reconnects += 1;
            eprintln!(
                "viewer of {id} reconnecting after {:?}",
                connected.elapsed()
            );
        }
    }
    Ok(reconnects)
}

/// Creates a session through the balancer every 3 s until stopped; every
/// create must be answered (a replica going away is retried elsewhere by the
/// balancer, or refused before it does anything and tried again here).
/// What [`keep_creating`] made: the sessions it was told of, and how many
/// creates got no answer (the connection broke: stored or not, unknown).
struct Created {
    ids: Vec<String>,
    unanswered: usize,
}

async fn keep_creating(api: Api, stop: CancellationToken) -> anyhow::Result<Created> {
    let mut created = Created {
        ids: Vec::new(),
        unanswered: 0,
    };
    while !stop.is_cancelled() {
        let body = Some(json!({"template": "desktop"}));
        match api.call(Method::POST, "/api/v1/sessions", body).await {
            Ok(answer) if answer.status == StatusCode::CREATED => {
                let id = answer.body["id"].as_str().unwrap_or_default();
                created.ids.push(id.to_owned());
            }
            Ok(answer) if answer.status == StatusCode::SERVICE_UNAVAILABLE => {}
            Ok(answer) => bail!("create answered {}: {}", answer.status, answer.body),
            Err(_) => created.unanswered += 1,
        }
        tokio::select! {
            _ = sleep(Duration::from_secs(3)) => {}
            _ = stop.cancelled() => {}
        }
    }
    Ok(created)
}
