//! VM sessions on libvirt: `POST /sessions` → RFB banner through `/vnc`,
//! hibernate (managed save) and wake → banner, and the memory hibernation
//! frees, on a real `streamspace server` and a real `streamspace agent
//! libvirt`, against `qemu-img` + `virsh` doing the same by hand on a domain
//! of the same shape in the same run (virsh.rs).
//!
//! QEMU itself serves VNC, so its banner proves QEMU runs, not that the
//! guest booted; both sides also time the guest's first `streamspace-vm up`
//! line on its serial log, which does.

use crate::Settings;
use crate::cluster::{Cluster, tail};
use crate::events::PhaseWatch;
use crate::report::{BenchResult, Row};
use crate::stats::Summary;
use crate::viewer::Route;
use crate::virsh::{
    PeerVm, VmLab, log_len, peer_home, qemu_rss_mib, save_file_mib, wait_for_up_line,
};
use anyhow::Context;
use reqwest::{Method, StatusCode};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use streamspace_testkit::{Api, ControlPlane, Mode, Spawned};
use tokio::time::{Instant, sleep};

/// TCG on a shared 2-core machine: a boot takes about 10 s, allow plenty.
const LIMIT: Duration = Duration::from_secs(180);
const TEMPLATE: &str = "vm-demo";
const DEFAULT_IMAGE: &str = "/var/lib/streamspace/vm/demo.qcow2";
const HOME_SIZE: &str = "256M";

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn median(v: &[f64]) -> f64 {
    Summary::of(v).map_or(0.0, |s| s.median)
}

fn max(v: &[f64]) -> f64 {
    Summary::of(v).map_or(0.0, |s| s.max)
}

/// The demo VM disk (`scripts/lib/demo-image.sh`'s `vm_image` exports it).
fn base_image() -> anyhow::Result<PathBuf> {
    let image = std::env::var_os("STREAMSPACE_VM_IMAGE")
        .map_or_else(|| PathBuf::from(DEFAULT_IMAGE), PathBuf::from);
    anyhow::ensure!(
        image.is_file(),
        "no VM image at {}: run images/vm/build.sh (scripts/bench.sh does)",
        image.display()
    );
    Ok(image)
}

/// A control plane and one `streamspace agent libvirt` whose pool, pool
/// directory, serial logs and state live in the lab.
struct VmCluster {
    cp: ControlPlane,
    admin: Api,
    agent: Spawned,
    agent_id: String,
    log_dir: PathBuf,
}

impl VmCluster {
    async fn start(settings: &Settings, lab: &VmLab) -> anyhow::Result<Self> {
        let cp = ControlPlane::start_with(
            &settings.bin,
            Mode::Server,
            None,
            Cluster::cp_options(settings, &[]),
        )
        .await?;
        let admin = Api::new(&cp.url).as_admin().await?;
        let token = admin.enrollment_token().await?;
        let name = "bench-vm";
        let log_dir = lab.dir.join("serial");
        let agent_log = lab.dir.join("agent.log");
        let stderr = std::fs::File::create(&agent_log)?;
        let child = tokio::process::Command::new(&settings.bin)
            .args(["agent", "libvirt", "--control-plane", cp.url.as_str()])
            .args(["--enrollment-token", &token, "--name", name])
            .arg("--state-dir")
            .arg(lab.dir.join("state"))
            .args(["--pool", &lab.pool])
            .arg("--pool-path")
            .arg(lab.dir.join("pool"))
            .arg("--log-dir")
            .arg(&log_dir)
            .env("STREAMSPACE_LOG", &settings.log_filter)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .kill_on_drop(true)
            .spawn()
            .context("cannot start `streamspace agent libvirt`")?;
        let agent = Spawned::from_child(child, agent_log);
        let agent_id = admin
            .wait_for_agent(name, Duration::from_secs(60))
            .await
            .map_err(|e| anyhow::anyhow!("{e:#}\nagent log:\n{}", tail(&agent.log())))?;
        admin
            .create_template(json!({
                "name": TEMPLATE,
                "image": base_image()?.display().to_string(),
                "platforms": ["libvirt"],
                "ports": [{"name": "vnc", "port": 5900, "protocol": "vnc"}],
                "resources": {"cpu": "1", "memory": "256Mi"},
                "persistent_home": true,
                "vm": {"firmware": "bios", "home_size": "256Mi"},
            }))
            .await?;
        Ok(Self {
            cp,
            admin,
            agent,
            agent_id,
            log_dir,
        })
    }

    fn route(&self, session_id: &str) -> Route {
        Route::Ours {
            base: self.cp.url.clone(),
            session_id: session_id.to_owned(),
            token: self.admin.token.clone().unwrap_or_default(),
            channel: "vnc",
            tls: None,
        }
    }

    /// Until `/vnc/{id}` answers the RFB banner (a session that is still
    /// starting or waking may refuse the tunnel: try again every 50 ms).
    async fn banner(&self, id: &str) -> anyhow::Result<()> {
        let deadline = Instant::now() + LIMIT;
        loop {
            match self.route(id).connect().await {
                Ok(viewer) => {
                    viewer.close().await;
                    return Ok(());
                }
                Err(e) if Instant::now() > deadline => {
                    return Err(e.context(format!(
                        "no banner via /vnc within {LIMIT:?}\nagent log:\n{}",
                        tail(&self.agent.log())
                    )));
                }
                Err(_) => sleep(Duration::from_millis(50)).await,
            }
        }
    }

    fn serial_log(&self, id: &str) -> PathBuf {
        self.log_dir.join(format!("streamspace-{id}.serial.log"))
    }

    async fn terminate(&self, id: &str) -> anyhow::Result<()> {
        let path = format!("/api/v1/sessions/{id}");
        self.admin
            .expect(Method::DELETE, &path, None, StatusCode::OK)
            .await?;
        self.admin.wait_for_phase(id, "Terminated", LIMIT).await?;
        Ok(())
    }

    async fn shutdown(mut self) {
        let _ = self.agent.stop().await;
        let _ = self.cp.process.stop().await;
    }
}

/// One round's figures, the same for both sides.
#[derive(Default)]
struct Round {
    start: f64,
    start_up: f64,
    hibernate: f64,
    wake: f64,
    wake_up: f64,
    rss_freed: f64,
    save_file: f64,
}

/// Picks one figure out of a round.
type Field = fn(&Round) -> f64;

#[derive(Default)]
struct Series(Vec<Round>);

impl Series {
    fn of(&self, field: Field) -> Vec<f64> {
        self.0.iter().map(field).collect()
    }
}

async fn ours_round(cluster: &VmCluster, watch: &PhaseWatch, lab: &VmLab) -> anyhow::Result<Round> {
    let t0 = Instant::now();
    let session = cluster
        .admin
        .create_session(json!({"template": TEMPLATE, "agent_id": cluster.agent_id}))
        .await?;
    let id = session["id"]
        .as_str()
        .context("session without id")?
        .to_owned();
    let domain = format!("streamspace-{id}");
    lab.own(&domain);
    let serial = cluster.serial_log(&id);
    let outcome = async {
        cluster.banner(&id).await?;
        let start = t0.elapsed();
        let start_up = wait_for_up_line(&serial, 0, LIMIT).await? - t0;
        let rss = qemu_rss_mib(&domain);
        watch.forget(&id);
        let t = Instant::now();
        cluster.admin.set_state(&id, "hibernated").await?;
        let hibernate = watch.wait(&id, "Hibernated", LIMIT).await? - t;
        let rss_after = qemu_rss_mib(&domain);
        let save_file = save_file_mib(&domain);
        let from = log_len(&serial);
        let t = Instant::now();
        cluster.admin.set_state(&id, "running").await?;
        cluster.banner(&id).await?;
        let wake = t.elapsed();
        let wake_up = wait_for_up_line(&serial, from, LIMIT).await? - t;
        anyhow::Ok(Round {
            start: ms(start),
            start_up: ms(start_up),
            hibernate: ms(hibernate),
            wake: ms(wake),
            wake_up: ms(wake_up),
            rss_freed: rss - rss_after,
            save_file,
        })
    }
    .await;
    let ended = cluster.terminate(&id).await;
    let round = outcome?;
    ended?;
    Ok(round)
}

async fn peer_round(lab: &VmLab, base: &Path, home: &Path, n: usize) -> anyhow::Result<Round> {
    let vm = PeerVm::new(lab, n);
    let outcome = async {
        let t0 = Instant::now();
        vm.create_and_start(base, home, LIMIT).await?;
        let start = t0.elapsed();
        let start_up = wait_for_up_line(&vm.serial_log, 0, LIMIT).await? - t0;
        let rss = qemu_rss_mib(&vm.name);
        let t = Instant::now();
        vm.managed_save().await?;
        let hibernate = t.elapsed();
        let rss_after = qemu_rss_mib(&vm.name);
        let save_file = save_file_mib(&vm.name);
        let from = log_len(&vm.serial_log);
        let t = Instant::now();
        vm.start(LIMIT).await?;
        let wake = t.elapsed();
        let wake_up = wait_for_up_line(&vm.serial_log, from, LIMIT).await? - t;
        anyhow::Ok(Round {
            start: ms(start),
            start_up: ms(start_up),
            hibernate: ms(hibernate),
            wake: ms(wake),
            wake_up: ms(wake_up),
            rss_freed: rss - rss_after,
            save_file,
        })
    }
    .await;
    vm.remove().await;
    outcome
}

pub async fn vm(settings: &Settings) -> anyhow::Result<BenchResult> {
    let base = base_image()?;
    // Declared first, dropped last: after the agent has stopped, whatever
    // the outcome, every domain, volume, the pool and the files go.
    let lab = VmLab::new()?;
    let cluster = VmCluster::start(settings, &lab).await?;
    let watch = PhaseWatch::start(&cluster.admin).await?;
    let home = peer_home(&lab, HOME_SIZE).await?;
    let rounds = if settings.quick { 1 } else { 5 };
    let (mut ours, mut peer) = (Series::default(), Series::default());
    for n in 0..rounds {
        let o = ours_round(&cluster, &watch, &lab).await?;
        let p = peer_round(&lab, &base, &home, n).await?;
        eprintln!(
            "  round {}/{rounds}: streamspace start→banner {:.0} ms (guest up {:.0}), hibernate {:.0} ms, \
             wake→banner {:.0} ms (guest up {:.0}), freed {:.0} MiB | virsh start→banner {:.0} ms \
             (guest up {:.0}), managedsave {:.0} ms, restore→banner {:.0} ms (guest up {:.0}), freed {:.0} MiB",
            n + 1,
            o.start,
            o.start_up,
            o.hibernate,
            o.wake,
            o.wake_up,
            o.rss_freed,
            p.start,
            p.start_up,
            p.hibernate,
            p.wake,
            p.wake_up,
            p.rss_freed
        );
        ours.0.push(o);
        peer.0.push(p);
    }
    cluster.shutdown().await;

    let figures: [(&str, &str, &str, Field); 7] = [
        (
            "VM: POST /sessions → banner via /vnc",
            "qemu-img + virsh define + start → banner",
            "ms",
            |r| r.start,
        ),
        (
            "VM: POST /sessions → guest's first `up` line",
            "virsh → first `up` line",
            "ms",
            |r| r.start_up,
        ),
        (
            "VM: hibernate → phase Hibernated",
            "virsh managedsave",
            "ms",
            |r| r.hibernate,
        ),
        (
            "VM: wake → banner via /vnc",
            "virsh start (restore) → banner",
            "ms",
            |r| r.wake,
        ),
        (
            "VM: wake → guest's next `up` line",
            "virsh restore → next `up` line",
            "ms",
            |r| r.wake_up,
        ),
        (
            "VM: QEMU RSS freed by hibernation",
            "virsh managedsave",
            "MiB",
            |r| r.rss_freed,
        ),
        ("VM: managed-save file", "virsh managedsave", "MiB", |r| {
            r.save_file
        }),
    ];
    let mut result = BenchResult::new("vm");
    let mut details = serde_json::Map::new();
    for (metric, peer_name, unit, field) in figures {
        let (o, p) = (ours.of(field), peer.of(field));
        result.row(
            Row::new(&format!("{metric}, median"), unit, median(&o)).peer(peer_name, median(&p)),
        );
        eprintln!(
            "  {metric}: median {:.0} max {:.0} {unit} | {peer_name}: median {:.0} max {:.0}",
            median(&o),
            max(&o),
            median(&p),
            max(&p)
        );
        details.insert(
            metric.to_owned(),
            json!({"unit": unit, "streamspace": Summary::of(&o), "virsh": Summary::of(&p)}),
        );
    }
    result.detail("figures", details);
    result.detail("rounds", rounds);
    result.note("TCG (no KVM here): QEMU's banner comes before the guest has booted; the `up` lines time the guest");
    drop(lab);
    Ok(result)
}
