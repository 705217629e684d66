//! The libvirt platform against the real libvirtd (`qemu:///system`): VMs
//! start, answer VNC, hibernate with their memory, wake, terminate, are
//! found again after an agent restart, and a `virsh destroy` from outside
//! is reported.
//!
//! Skipped, saying so, when libvirtd cannot be reached, unless
//! `STREAMSPACE_REQUIRE_LIBVIRT=1` (CI sets it once it starts libvirtd),
//! which turns the skip into a failure. Each test makes its own storage
//! pool, agent id and sessions, and removes them. Guests are tiny and boot
//! nothing: their base disk is an empty qcow2, so SeaBIOS says "No bootable
//! device", on a VNC server that answers like any other.

use futures::StreamExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use streamspace_agent::{Platform, PlatformError};
use streamspace_libvirt::{AccelerationChoice, LibvirtOptions, LibvirtPlatform, domain_name};
use streamspace_protocol::{AgentId, Memory, Phase, SessionId, SessionSpec};
use tokio::io::AsyncReadExt;

const URI: &str = "qemu:///system";
/// TCG on a loaded 2-core machine: starts and restores take seconds.
const PATIENCE: Duration = Duration::from_secs(180);

/// A test's own pool, base disk and agent; removed on drop.
struct Lab {
    dir: PathBuf,
    pool: String,
    agent_id: AgentId,
    base: String,
}

impl Lab {
    fn new() -> Self {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let dir = PathBuf::from("/var/tmp/streamspace-libvirt-tests").join(&id[..12]);
        std::fs::create_dir_all(&dir).expect("test directory");
        let base = dir.join("base.qcow2").to_string_lossy().into_owned();
        let made = Command::new("qemu-img")
            .args(["create", "-q", "-f", "qcow2", &base, "16M"])
            .status()
            .expect("qemu-img (Debian's qemu-utils) runs");
        assert!(made.success(), "qemu-img create {base}");
        Lab {
            dir,
            pool: format!("ss-test-{}", &id[..12]),
            agent_id: format!("test-agent-{}", &id[..12]).into(),
            base,
        }
    }

    /// `STREAMSPACE_TEST_ACCELERATION=tcg` (or `kvm`) forces one; the
    /// default detects, as the agent does.
    fn options(&self) -> LibvirtOptions {
        let acceleration = match std::env::var("STREAMSPACE_TEST_ACCELERATION").as_deref() {
            Ok("tcg") => AccelerationChoice::Tcg,
            Ok("kvm") => AccelerationChoice::Kvm,
            _ => AccelerationChoice::Auto,
        };
        LibvirtOptions {
            acceleration,
            uri: URI.into(),
            pool: self.pool.clone(),
            pool_path: self.dir.join("pool"),
            log_dir: self.dir.join("logs"),
            ..LibvirtOptions::default()
        }
    }

    /// The platform, or `None` (the test skips) when libvirtd is not there.
    async fn platform(&self) -> Option<LibvirtPlatform> {
        match LibvirtPlatform::connect(&self.agent_id, self.options()).await {
            Ok(platform) => Some(platform),
            Err(PlatformError::Unavailable(reason))
                if std::env::var("STREAMSPACE_REQUIRE_LIBVIRT").as_deref() != Ok("1") =>
            {
                eprintln!("SKIPPED: libvirt at {URI} is not usable here: {reason}");
                None
            }
            Err(e) => panic!("cannot use libvirt at {URI}: {e}"),
        }
    }

    fn spec(&self, session: &str) -> SessionSpec {
        let mut spec = SessionSpec::fixture(session)
            .with_image(&self.base)
            .with_home(&format!("streamspace-home-{session}"));
        spec.ports[0].port = 5900;
        spec.resources.memory = Some(Memory(128 << 20));
        spec.seal = format!("seal-of-{session}");
        spec
    }

    fn pool_file(&self, name: &str) -> PathBuf {
        self.dir.join("pool").join(name)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        // Whatever a failed test left: its domains, then the pool.
        let listed = virsh(&["list", "--all", "--name"]);
        for domain in listed.lines().filter(|d| d.contains(&self.pool[8..])) {
            virsh(&["destroy", domain]);
            virsh(&["undefine", "--managed-save", domain]);
        }
        virsh(&["pool-destroy", &self.pool]);
        virsh(&["pool-undefine", &self.pool]);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn virsh(args: &[&str]) -> String {
    let output = Command::new("virsh")
        .arg("-c")
        .arg(URI)
        .args(args)
        .output()
        .expect("virsh runs");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Session ids that name the test's pool, so `Lab::drop` finds leftovers.
fn session(lab: &Lab, what: &str) -> String {
    format!("{what}-{}", &lab.pool[8..])
}

async fn wait_for_phase(platform: &LibvirtPlatform, session_id: &SessionId, phase: Phase) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let report = platform.status(session_id).await.expect("status");
        if report.phase == phase {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "session {session_id} never became {phase}: {report:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A file's owner and mode.
fn owner_and_mode(path: &str) -> (u32, u32, u32) {
    let meta = std::fs::metadata(Path::new(path)).expect("stat");
    (meta.uid(), meta.gid(), meta.mode())
}

/// Reads the RFB banner through `connect`, retrying while QEMU comes up.
async fn banner(platform: &LibvirtPlatform, session_id: &SessionId) -> Duration {
    let started = Instant::now();
    let deadline = started + PATIENCE;
    loop {
        if let Ok(mut stream) = platform.connect(session_id, 5900).await {
            let mut hello = [0u8; 12];
            let read = tokio::time::timeout(Duration::from_secs(5), stream.read_exact(&mut hello));
            if let Ok(Ok(_)) = read.await {
                assert_eq!(&hello, b"RFB 003.008\n");
                return started.elapsed();
            }
        }
        assert!(Instant::now() < deadline, "no RFB banner from {session_id}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_vm_starts_answers_vnc_hibernates_with_its_memory_wakes_and_terminates() {
    let lab = Lab::new();
    let Some(platform) = lab.platform().await else {
        return;
    };
    let caps = platform.capabilities();
    assert!(caps.hibernation && caps.hibernation_keeps_memory && caps.persistent_storage);
    eprintln!("acceleration: {:?}", caps.acceleration);
    let spec = lab.spec(&session(&lab, "life"));
    let id = spec.session_id.clone();
    let name = domain_name(&id);

    // The base every session of the template boots from is never handed
    // to the QEMU user (libvirt's dynamic ownership would chown the whole
    // backing chain to it, unless the domain says otherwise).
    let base_before = owner_and_mode(&lab.base);
    let t0 = Instant::now();
    let started = platform.start(&spec).await.expect("start");
    assert_eq!(started.phase, Phase::Starting);
    banner(&platform, &id).await;
    eprintln!("start → RFB banner: {:?}", t0.elapsed());
    assert_eq!(
        owner_and_mode(&lab.base),
        base_before,
        "the base while it runs"
    );
    assert_eq!(
        platform.status(&id).await.expect("status").phase,
        Phase::Running
    );
    let again = platform.start(&spec).await.expect("a second start");
    assert_eq!(again.phase, Phase::Running, "start is idempotent");
    let overlay = lab.pool_file(&format!("{name}.qcow2"));
    let home = lab.pool_file(&format!("streamspace-home-{id}.qcow2"));
    assert!(
        overlay.exists() && home.exists(),
        "overlay and home in the pool"
    );
    let backing = Command::new("qemu-img")
        .args(["info", "-U", overlay.to_str().expect("utf-8")])
        .output()
        .expect("qemu-img info");
    let info = String::from_utf8_lossy(&backing.stdout);
    assert!(
        info.contains(&format!("backing file: {}", lab.base)),
        "{info}"
    );
    // No VNC for a port the template does not list as its VNC port.
    assert!(matches!(
        platform.connect(&id, 22).await,
        Err(PlatformError::Invalid(_))
    ));

    let t1 = Instant::now();
    let hibernated = platform.hibernate(&id).await.expect("hibernate");
    eprintln!("hibernate (managed save): {:?}", t1.elapsed());
    assert_eq!(hibernated.phase, Phase::Hibernated);
    assert!(virsh(&["domstate", &name]).contains("shut off"));
    assert!(virsh(&["dominfo", &name]).contains("Managed save:   yes"));
    let again = platform.hibernate(&id).await.expect("a second hibernate");
    assert_eq!(again.phase, Phase::Hibernated, "hibernate is idempotent");

    let t2 = Instant::now();
    let woken = platform.wake(&id).await.expect("wake");
    assert_eq!(woken.phase, Phase::Waking);
    banner(&platform, &id).await;
    eprintln!("wake (restore) → RFB banner: {:?}", t2.elapsed());
    assert!(virsh(&["domstate", "--reason", &name]).contains("restored"));
    assert!(virsh(&["dominfo", &name]).contains("Managed save:   no"));

    let terminated = platform.terminate(&id).await.expect("terminate");
    assert_eq!(terminated.phase, Phase::Terminated);
    assert!(!virsh(&["list", "--all", "--name"]).contains(&name));
    assert!(!overlay.exists(), "the overlay is deleted");
    assert!(home.exists(), "the home disk is kept");
    assert_eq!(
        owner_and_mode(&lab.base),
        base_before,
        "the base after the session"
    );
    let again = platform.terminate(&id).await.expect("a second terminate");
    assert_eq!(again.phase, Phase::Terminated);
    assert!(matches!(
        platform.status(&id).await,
        Err(PlatformError::NotFound(_))
    ));
}

#[tokio::test]
async fn a_restarted_agent_finds_its_vms_by_their_metadata() {
    let lab = Lab::new();
    let Some(platform) = lab.platform().await else {
        return;
    };
    let spec = lab.spec(&session(&lab, "restart"));
    let id = spec.session_id.clone();
    platform.start(&spec).await.expect("start");
    drop(platform);

    let restarted = lab.platform().await.expect("libvirt is still there");
    let inventory = restarted.inventory().await.expect("inventory");
    let ours: Vec<_> = inventory.iter().filter(|r| r.session_id == id).collect();
    assert_eq!(ours.len(), 1, "{inventory:?}");
    assert_eq!(inventory.len(), 1, "nothing else is this agent's");
    let origin = ours[0].origin.clone().expect("labels");
    assert_eq!(
        (origin.user.as_str(), origin.template.as_str()),
        ("alice", "desktop")
    );
    assert_eq!(origin.seal.as_deref(), Some(spec.seal.as_str()));
    // Another agent on the same host sees none of it, and cannot take it.
    let mut other = lab.options();
    other.pool = format!("{}-other", lab.pool);
    other.pool_path = lab.dir.join("other-pool");
    let stranger = LibvirtPlatform::connect(&"another-agent".into(), other)
        .await
        .expect("a second agent");
    assert!(stranger.inventory().await.expect("inventory").is_empty());
    assert!(matches!(
        stranger.start(&spec).await,
        Err(PlatformError::Invalid(_))
    ));
    assert_eq!(
        stranger.terminate(&id).await.expect("terminate").phase,
        Phase::Terminated
    );
    assert!(
        virsh(&["list", "--all", "--name"]).contains(&domain_name(&id)),
        "not its to remove"
    );

    restarted.terminate(&id).await.expect("terminate");
    assert!(restarted.inventory().await.expect("inventory").is_empty());
    virsh(&["pool-destroy", &format!("{}-other", lab.pool)]);
    virsh(&["pool-undefine", &format!("{}-other", lab.pool)]);
}

#[tokio::test]
async fn a_vm_destroyed_outside_streamspace_is_reported_failed_with_the_reason() {
    let lab = Lab::new();
    let Some(platform) = lab.platform().await else {
        return;
    };
    let spec = lab.spec(&session(&lab, "destroyed"));
    let id = spec.session_id.clone();
    let mut watch = platform.watch();
    platform.start(&spec).await.expect("start");
    wait_for_phase(&platform, &id, Phase::Running).await;
    let destroyed = Command::new("virsh")
        .args(["-c", URI, "destroy", &domain_name(&id)])
        .status()
        .expect("virsh destroy");
    assert!(destroyed.success());

    let failed = tokio::time::timeout(PATIENCE, async {
        loop {
            let report = watch.next().await.expect("the watch goes on");
            if report.session_id == id && report.phase == Phase::Failed {
                return report;
            }
        }
    })
    .await
    .expect("the watch reports the failure");
    let message = failed.message.expect("a reason");
    assert!(
        message.contains("destroyed outside StreamSpace"),
        "{message}"
    );
    let status = platform.status(&id).await.expect("status");
    assert_eq!(status.phase, Phase::Failed);

    platform.terminate(&id).await.expect("terminate");
    let terminated = tokio::time::timeout(PATIENCE, async {
        loop {
            let report = watch.next().await.expect("the watch goes on");
            if report.session_id == id && report.phase == Phase::Terminated {
                return report;
            }
        }
    })
    .await
    .expect("the watch reports our own terminate as Terminated");
    assert_eq!(terminated.message, None);
}

#[tokio::test]
async fn a_missing_base_disk_is_said_plainly() {
    let lab = Lab::new();
    let Some(platform) = lab.platform().await else {
        return;
    };
    let noop = |_| {};
    let missing = platform
        .pull("/var/tmp/no-such-base.qcow2", None, &noop)
        .await;
    let Err(PlatformError::Invalid(message)) = missing else {
        panic!("{missing:?}")
    };
    assert!(message.contains("/var/tmp/no-such-base.qcow2"), "{message}");
    let bad = platform.pull("demo.qcow2", None, &noop).await;
    assert!(matches!(bad, Err(PlatformError::Invalid(_))), "{bad:?}");
    assert!(platform.pull(&lab.base, None, &noop).await.is_ok());
    eprintln!("health: {:?}", platform.health().await);
}
