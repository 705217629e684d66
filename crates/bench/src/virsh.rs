//! The by-hand peer of the VM benchmark: `qemu-img` and `virsh` doing what
//! the libvirt agent does, on a domain of the same shape (docs/VM.md's
//! checked XML: overlay on the demo disk, a home disk, 256 MiB, 1 vCPU,
//! TCG, VNC on 127.0.0.1), plus what both sides measure: QEMU's RSS from
//! libvirt's pid file, the managed-save file, the guest's serial `up` lines.
//! And `VmLab`, the guard that removes every domain, volume, pool and file
//! the benchmark made, however it ends.

use crate::docker_cli::wait_for_banner;
use crate::procfs;
use anyhow::{Context, bail};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;
use tokio::process::Command;
use tokio::time::{Instant, sleep};

pub const URI: &str = "qemu:///system";
/// What the demo guest prints on its serial port once a second.
const UP_LINE: &str = "streamspace-vm up ";

/// Runs `virsh -c qemu:///system ARGS…`; returns stdout.
pub async fn virsh(args: &[&str]) -> anyhow::Result<String> {
    let output = Command::new("virsh")
        .arg("-c")
        .arg(URI)
        .args(args)
        .output()
        .await
        .context("cannot run virsh")?;
    if !output.status.success() {
        bail!(
            "virsh {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

async fn qemu_img(args: &[&str]) -> anyhow::Result<()> {
    let output = Command::new("qemu-img")
        .args(args)
        .output()
        .await
        .context("cannot run qemu-img")?;
    if !output.status.success() {
        bail!(
            "qemu-img {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

/// QEMU's pid for a running domain (libvirt's pid file), if it runs.
pub fn qemu_pid(domain: &str) -> Option<u32> {
    let pid: u32 = std::fs::read_to_string(format!("/var/run/libvirt/qemu/{domain}.pid"))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Path::new(&format!("/proc/{pid}")).exists().then_some(pid)
}

/// QEMU's RSS in MiB (0 when no QEMU runs for the domain).
pub fn qemu_rss_mib(domain: &str) -> f64 {
    qemu_pid(domain)
        .and_then(|pid| procfs::rss_kib(pid).ok())
        .map_or(0.0, |kib| kib as f64 / 1024.0)
}

/// The size of a domain's managed-save image in MiB (0 when none).
pub fn save_file_mib(domain: &str) -> f64 {
    std::fs::metadata(format!("/var/lib/libvirt/qemu/save/{domain}.save"))
        .map_or(0.0, |m| m.len() as f64 / (1024.0 * 1024.0))
}

/// The length of a serial log now (where the next line will start).
pub fn log_len(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}

/// Until the guest prints an `up` line past byte `from` of its serial log;
/// returns when it was seen (polled every 20 ms, as fine as the guest's
/// once-a-second line makes worth it).
pub async fn wait_for_up_line(path: &Path, from: u64, limit: Duration) -> anyhow::Result<Instant> {
    let deadline = Instant::now() + limit;
    loop {
        if let Ok(bytes) = std::fs::read(path) {
            let new = bytes.get(from as usize..).unwrap_or_default();
            if String::from_utf8_lossy(new).contains(UP_LINE) {
                return Ok(Instant::now());
            }
        }
        if Instant::now() > deadline {
            bail!("no `{UP_LINE}` line in {} within {limit:?}", path.display());
        }
        sleep(Duration::from_millis(20)).await;
    }
}

/// What this benchmark made on the shared libvirtd, removed on drop: its
/// domains (with managed saves and libvirtd's QEMU logs of them), its
/// storage pool's volumes and the pool, and its directory. Colleagues'
/// domains and pools are never touched: only names recorded here are.
pub struct VmLab {
    pub dir: PathBuf,
    pub pool: String,
    domains: Mutex<Vec<String>>,
}

impl VmLab {
    pub fn new() -> anyhow::Result<Self> {
        let pid = std::process::id();
        // Not a 0700 temp dir: QEMU runs as libvirt-qemu and must reach the
        // disks and the pool below it.
        let dir = PathBuf::from(format!("/var/tmp/streamspace-bench-vm-{pid}"));
        std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
        Ok(Self {
            dir,
            pool: format!("streamspace-bench-{pid}"),
            domains: Mutex::new(Vec::new()),
        })
    }

    /// Records a domain to remove at the end (before it exists).
    pub fn own(&self, domain: &str) {
        self.domains
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(domain.to_owned());
    }
}

fn virsh_quiet(args: &[&str]) -> String {
    std::process::Command::new("virsh")
        .arg("-c")
        .arg(URI)
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

impl Drop for VmLab {
    fn drop(&mut self) {
        let domains = self.domains.lock().unwrap_or_else(|p| p.into_inner());
        let defined = virsh_quiet(&["list", "--all", "--name"]);
        for domain in defined.lines().map(str::trim) {
            if domains.iter().any(|d| d == domain) {
                virsh_quiet(&["destroy", domain]);
                virsh_quiet(&["undefine", "--managed-save", domain]);
            }
        }
        // libvirtd's own per-domain QEMU log, which outlives the domain.
        for domain in domains.iter() {
            let _ = std::fs::remove_file(format!("/var/log/libvirt/qemu/{domain}.log"));
        }
        let pools = virsh_quiet(&["pool-list", "--all", "--name"]);
        if pools.lines().any(|p| p.trim() == self.pool) {
            let volumes = virsh_quiet(&["vol-list", &self.pool, "--name"]);
            for volume in volumes.lines().map(str::trim).filter(|v| !v.is_empty()) {
                virsh_quiet(&["vol-delete", "--pool", &self.pool, volume]);
            }
            virsh_quiet(&["pool-destroy", &self.pool]);
            virsh_quiet(&["pool-undefine", &self.pool]);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One peer VM: a domain defined and started by hand.
pub struct PeerVm<'a> {
    lab: &'a VmLab,
    pub name: String,
    overlay: PathBuf,
    pub serial_log: PathBuf,
}

/// The peer's home disk, made once per run and reused by every round, as
/// the agent reuses the user's home.
pub async fn peer_home(lab: &VmLab, size: &str) -> anyhow::Result<PathBuf> {
    let home = lab.dir.join("peer-home.qcow2");
    qemu_img(&["create", "-q", "-f", "qcow2", &path(&home), size]).await?;
    Ok(home)
}

impl<'a> PeerVm<'a> {
    pub fn new(lab: &'a VmLab, round: usize) -> Self {
        let name = format!("ssbench-vm-{}-r{round}", std::process::id());
        lab.own(&name);
        Self {
            lab,
            overlay: lab.dir.join(format!("{name}.qcow2")),
            serial_log: lab.dir.join(format!("{name}.serial.log")),
            name,
        }
    }

    /// `qemu-img create` of the overlay, `virsh define`, `virsh start` →
    /// RFB banner on the domain's VNC port.
    pub async fn create_and_start(
        &self,
        base: &Path,
        home: &Path,
        limit: Duration,
    ) -> anyhow::Result<()> {
        let base = path(base);
        let overlay = path(&self.overlay);
        qemu_img(&[
            "create", "-q", "-f", "qcow2", "-b", &base, "-F", "qcow2", &overlay,
        ])
        .await?;
        let xml_path = self.lab.dir.join(format!("{}.xml", self.name));
        let xml = domain_xml(
            &self.name,
            &base,
            &overlay,
            &path(home),
            &path(&self.serial_log),
        );
        std::fs::write(&xml_path, xml)?;
        virsh(&["define", &path(&xml_path)]).await?;
        self.start(limit).await
    }

    /// `virsh start` (a restore when a managed save exists) → banner.
    pub async fn start(&self, limit: Duration) -> anyhow::Result<()> {
        virsh(&["start", &self.name]).await?;
        let display = virsh(&["vncdisplay", &self.name]).await?;
        let port = display
            .trim()
            .rsplit_once(':')
            .and_then(|(_, n)| n.parse::<u16>().ok())
            .with_context(|| format!("virsh vncdisplay {}: {display:?}", self.name))?;
        wait_for_banner(5900 + port, Duration::from_millis(10), limit).await
    }

    pub async fn managed_save(&self) -> anyhow::Result<()> {
        virsh(&["managedsave", &self.name]).await.map(|_| ())
    }

    /// Destroys and undefines the domain and removes its files.
    pub async fn remove(&self) {
        let _ = virsh(&["destroy", &self.name]).await;
        let _ = virsh(&["undefine", "--managed-save", &self.name]).await;
        let _ = std::fs::remove_file(&self.overlay);
        let _ = std::fs::remove_file(&self.serial_log);
    }
}

fn path(p: &Path) -> String {
    p.display().to_string()
}

/// docs/VM.md's domain, as checked against libvirt 9 by hand, with what
/// the agent's domain adds that could change the guest's speed (`<apic/>`,
/// the UTC clock, the serial port as a pty logged by virtlogd): the same
/// VM, started by hand.
fn domain_xml(name: &str, base: &str, overlay: &str, home: &str, serial_log: &str) -> String {
    format!(
        "<domain type='qemu'>
  <name>{name}</name>
  <memory unit='MiB'>256</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type><boot dev='hd'/></os>
  <features><acpi/><apic/></features>
  <clock offset='utc'/>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>restart</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='{overlay}'/>
      <backingStore type='file'>
        <format type='qcow2'/>
        <source file='{base}'><seclabel model='dac' relabel='no'/></source>
        <backingStore/>
      </backingStore>
      <target dev='vda' bus='virtio'/>
    </disk>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='{home}'/>
      <target dev='vdb' bus='virtio'/>
      <serial>home</serial>
    </disk>
    <serial type='pty'>
      <log file='{serial_log}' append='on'/>
      <target port='0'/>
    </serial>
    <console type='pty'><target type='serial' port='0'/></console>
    <graphics type='vnc' listen='127.0.0.1' autoport='yes'/>
    <video><model type='vga'/></video>
    <memballoon model='none'/>
  </devices>
</domain>
"
    )
}
