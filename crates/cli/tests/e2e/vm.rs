//! Virtual machines on the real libvirt, through the control plane: the
//! demo VM image (`images/vm/build.sh`, docs/VM.md) as a session of a
//! `streamspace agent libvirt` process. Running → RFB through `/vnc` →
//! hibernate (memory saved to disk, QEMU gone) → wake, where the guest's
//! uptime goes on from before rather than restarting → terminate (domain
//! and overlay gone, home disk kept, and the next session's boot finds it);
//! an agent restart finds its domains again; a VM destroyed from outside
//! is Failed with the reason.
//!
//! Skipped, saying so, without libvirtd or the demo image, unless
//! `STREAMSPACE_REQUIRE_LIBVIRT=1` (scripts/test.sh), which makes either a
//! failure.

use crate::{RUNNING_LIMIT, assert_vnc_works, bin};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use streamspace_testkit::{AgentProcess, Api, ControlPlane, Mode, Options, eventually};

const URI: &str = "qemu:///system";
const DEFAULT_IMAGE: &str = "/var/lib/streamspace/vm/demo.qcow2";
/// Where the tests' pools live: a directory QEMU's user can traverse
/// (temporary directories are root-only).
const ROOT: &str = "/var/tmp/streamspace-libvirt-tests";
/// Booting to the first uptime line takes ~10 s under TCG on an idle
/// machine; CI's machine is busy.
const BOOT_LIMIT: Duration = Duration::from_secs(120);

/// The demo image, or `None` (skipped) where this host cannot run VMs.
fn demo_image() -> Option<PathBuf> {
    let image = std::env::var("STREAMSPACE_VM_IMAGE").unwrap_or_else(|_| DEFAULT_IMAGE.into());
    let libvirt = virsh(&["version"]);
    let problem = match (&libvirt, Path::new(&image).exists()) {
        (Err(e), _) => format!("libvirt at {URI} does not answer: {e:#}"),
        (Ok(_), false) => format!("{image} is missing: run images/vm/build.sh"),
        (Ok(_), true) => return Some(image.into()),
    };
    if std::env::var("STREAMSPACE_REQUIRE_LIBVIRT").as_deref() == Ok("1") {
        panic!("{problem}");
    }
    eprintln!("SKIPPED: {problem}");
    None
}

fn virsh(args: &[&str]) -> anyhow::Result<String> {
    let output = Command::new("virsh")
        .args(["-c", URI])
        .args(args)
        .output()?;
    anyhow::ensure!(
        output.status.success(),
        "virsh {args:?}: {}",
        String::from_utf8_lossy(&output.stderr).trim()
    );
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// A control plane, a libvirt agent with a storage pool of its own and the
/// demo VM template; the pool and whatever is left in it go on drop.
struct VmHost {
    _cp: ControlPlane,
    admin: Api,
    agent: AgentProcess,
    pool: String,
    dir: PathBuf,
}

impl VmHost {
    async fn start(name: &str, image: &Path) -> anyhow::Result<Self> {
        let pool = format!("ss-e2e-{name}-{}", std::process::id());
        let dir = Path::new(ROOT).join(&pool);
        std::fs::create_dir_all(&dir)?;
        let cp = ControlPlane::start(bin(), Mode::Server, None).await?;
        let admin = Api::admin(&cp.url).await?;
        let token = admin.enrollment_token().await?;
        let (pool_path, logs) = (dir.join("pool"), dir.join("logs"));
        let platform = [
            "libvirt",
            "--connect",
            URI,
            "--pool",
            &pool,
            "--pool-path",
            path_str(&pool_path)?,
            "--log-dir",
            path_str(&logs)?,
        ];
        let agent =
            AgentProcess::start_on(bin(), &cp.url, &token, name, &platform, Options::default())
                .await?;
        let host = Self {
            _cp: cp,
            admin,
            agent,
            pool,
            dir,
        };
        host.admin
            .wait_for_agent(name, Duration::from_secs(60))
            .await
            .map_err(|e| anyhow::anyhow!("{e:#}\nagent log:\n{}", host.agent.process.log()))?;
        host.admin.create_template(vm_template(image)).await?;
        Ok(host)
    }

    async fn launch(&self) -> anyhow::Result<String> {
        let session = self
            .admin
            .create_session(json!({"template": "vm-demo"}))
            .await?;
        let id = session["id"].as_str().unwrap_or_default().to_owned();
        self.admin
            .wait_for_phase(&id, "Running", RUNNING_LIMIT)
            .await
            .map_err(|e| anyhow::anyhow!("{e:#}\nagent log:\n{}", self.agent.process.log()))?;
        Ok(id)
    }

    /// The guest's console (its serial log) as the API serves it.
    async fn console(&self, id: &str) -> anyhow::Result<String> {
        self.admin
            .text(&format!("/api/v1/sessions/{id}/logs?tail=400"))
            .await
    }

    /// Waits for an uptime line on the console that `accept`s.
    async fn uptime(&self, id: &str, accept: impl Fn(&Uptime) -> bool) -> anyhow::Result<Uptime> {
        eventually(BOOT_LIMIT, "the guest's uptime line", || async {
            let console = self.console(id).await?;
            Ok(uptimes(&console).into_iter().rev().find(|up| accept(up)))
        })
        .await
    }

    fn files(&self) -> Vec<String> {
        let entries = std::fs::read_dir(self.dir.join("pool"))
            .into_iter()
            .flatten();
        let mut names: Vec<String> = entries
            .flatten()
            .map(|entry| entry.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }
}

impl Drop for VmHost {
    fn drop(&mut self) {
        // Domains first (their disks are in the pool), then the pool.
        if let Ok(names) = virsh(&["list", "--all", "--name"]) {
            for name in names
                .lines()
                .filter(|name| name.starts_with("streamspace-"))
            {
                let xml = virsh(&["dumpxml", name]).unwrap_or_default();
                if xml.contains(&format!("pool='{}'", self.pool)) {
                    let _ = virsh(&["destroy", name]);
                    let _ = virsh(&["undefine", name, "--managed-save", "--nvram"]);
                }
            }
        }
        let _ = virsh(&["pool-destroy", &self.pool]);
        let _ = virsh(&["pool-undefine", &self.pool]);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn path_str(path: &Path) -> anyhow::Result<&str> {
    path.to_str()
        .ok_or_else(|| anyhow::anyhow!("{path:?} is not UTF-8"))
}

fn vm_template(image: &Path) -> Value {
    json!({
        "name": "vm-demo",
        "display_name": "Demo VM",
        "image": image,
        "platforms": ["libvirt"],
        "ports": [{"name": "vnc", "port": 5900, "protocol": "vnc"}],
        "resources": {"cpu": "1", "memory": "256Mi"},
        "persistent_home": true,
        "vm": {"firmware": "bios", "home_size": "256Mi"}
    })
}

/// One `streamspace-vm up <seconds> boot <id>` line of the demo guest.
#[derive(Debug, Clone, PartialEq)]
struct Uptime {
    seconds: f64,
    boot: String,
}

fn uptimes(console: &str) -> Vec<Uptime> {
    console
        .lines()
        .filter_map(|line| {
            let rest = line.trim().strip_prefix("streamspace-vm up ")?;
            let (seconds, boot) = rest.split_once(" boot ")?;
            Some(Uptime {
                seconds: seconds.parse().ok()?,
                boot: boot.trim().to_owned(),
            })
        })
        .collect()
}

fn domain(id: &str) -> String {
    format!("streamspace-{id}")
}

#[tokio::test]
async fn a_vm_hibernates_with_its_memory_and_wakes_where_it_was() -> anyhow::Result<()> {
    let Some(image) = demo_image() else {
        return Ok(());
    };
    let host = VmHost::start("vm-life", &image).await?;
    let agents = host.admin.agents().await?;
    let caps = &agents[0]["capabilities"];
    assert_eq!(caps["hibernation_keeps_memory"], true, "{agents:?}");
    assert!(
        ["kvm", "tcg"].contains(&caps["acceleration"].as_str().unwrap_or_default()),
        "{agents:?}"
    );

    let id = host.launch().await?;
    assert_vnc_works(&host.admin, &id).await?;
    let before = host.uptime(&id, |_| true).await?;
    let console = host.console(&id).await?;
    assert!(console.contains("streamspace-vm home boots 1"), "{console}");
    let files = host.files();
    assert!(
        files.contains(&format!("{}.qcow2", domain(&id))),
        "an overlay for the session: {files:?}"
    );

    // Hibernate: the memory goes to disk and QEMU goes away.
    host.admin.set_state(&id, "hibernated").await?;
    host.admin
        .wait_for_phase(&id, "Hibernated", RUNNING_LIMIT)
        .await?;
    let info = virsh(&["dominfo", &domain(&id)])?;
    assert!(info.contains("shut off"), "{info}");
    assert!(info.contains("Managed save:   yes"), "{info}");
    let pid_file = format!("/run/libvirt/qemu/{}.pid", domain(&id));
    assert!(
        !Path::new(&pid_file).exists(),
        "QEMU still runs: {pid_file}"
    );

    // Wake: the same boot goes on, later than before.
    host.admin.set_state(&id, "running").await?;
    host.admin
        .wait_for_phase(&id, "Running", RUNNING_LIMIT)
        .await?;
    assert_vnc_works(&host.admin, &id).await?;
    let after = host
        .uptime(&id, |up| {
            up.boot == before.boot && up.seconds > before.seconds
        })
        .await?;
    let console = host.console(&id).await?;
    let boots: Vec<_> = uptimes(&console).into_iter().map(|up| up.boot).collect();
    assert!(
        boots.iter().all(|boot| *boot == before.boot),
        "the guest rebooted: {console}"
    );
    assert!(
        !console.contains("home boots 2"),
        "the guest booted again: {console}"
    );
    eprintln!(
        "uptime {} s before hibernating, {} s after waking",
        before.seconds, after.seconds
    );

    // Terminate: domain and overlay go, the home disk stays.
    let path = format!("/api/v1/sessions/{id}");
    host.admin
        .expect(Method::DELETE, &path, None, StatusCode::OK)
        .await?;
    host.admin
        .wait_for_phase(&id, "Terminated", RUNNING_LIMIT)
        .await?;
    assert!(
        virsh(&["dominfo", &domain(&id)]).is_err(),
        "the domain is gone"
    );
    let files = host.files();
    assert!(
        !files.iter().any(|file| file.contains(&id)),
        "the overlay is gone: {files:?}"
    );
    assert!(
        files
            .iter()
            .any(|file| file.starts_with("streamspace-home-")),
        "the home disk is kept: {files:?}"
    );

    // The next session of the same user and template boots on that home.
    let next = host.launch().await?;
    eventually(BOOT_LIMIT, "the second boot on the same home", || async {
        Ok(host
            .console(&next)
            .await?
            .contains("streamspace-vm home boots 2")
            .then_some(()))
    })
    .await?;
    Ok(())
}

#[tokio::test]
async fn a_restarted_agent_finds_its_vms_and_one_destroyed_outside_fails() -> anyhow::Result<()> {
    let Some(image) = demo_image() else {
        return Ok(());
    };
    let mut host = VmHost::start("vm-drift", &image).await?;
    let id = host.launch().await?;

    // Restarted, the agent finds the domain by its metadata: the same
    // session, still Running, one domain.
    host.agent.process.stop().await?;
    host.agent.restart()?;
    host.admin
        .wait_for_agent("vm-drift", Duration::from_secs(60))
        .await?;
    let session = host.admin.session(&id).await?;
    assert_eq!(session["phase"], "Running", "{session}");
    let listed = host
        .admin
        .expect(Method::GET, "/api/v1/sessions", None, StatusCode::OK)
        .await?;
    let count = listed["sessions"]
        .as_array()
        .or(listed.as_array())
        .map_or(0, Vec::len);
    assert_eq!(count, 1, "nothing duplicated: {listed}");
    let domains = virsh(&["list", "--all", "--name"])?;
    assert_eq!(
        domains.lines().filter(|name| name.contains(&id)).count(),
        1,
        "{domains}"
    );
    // The agent may still be listed from before it stopped: its desktop
    // is reachable once its new connection is in.
    eventually(RUNNING_LIMIT, "VNC after the agent's restart", || async {
        Ok(assert_vnc_works(&host.admin, &id).await.ok())
    })
    .await?;

    // Destroyed behind StreamSpace's back: Failed, saying so.
    virsh(&["destroy", &domain(&id)])?;
    let failed = host
        .admin
        .wait_for_phase(&id, "Failed", RUNNING_LIMIT)
        .await?;
    let message = failed["message"].as_str().unwrap_or_default();
    assert!(message.contains("outside StreamSpace"), "{failed}");
    Ok(())
}

#[test]
fn uptime_lines_are_read_from_the_console() {
    let console = "SeaBIOS\r\nstreamspace-vm up 12.50 boot 1f-2a\r\nnoise\nstreamspace-vm up 13.51 boot 1f-2a\n";
    let read = uptimes(console);
    assert_eq!(read.len(), 2);
    assert_eq!(
        read[1],
        Uptime {
            seconds: 13.51,
            boot: "1f-2a".into()
        }
    );
}
