//! A session's spec → its libvirt domain XML (pure, unit-tested).
//!
//! The domain boots from the session's copy-on-write overlay (`vda`), has
//! the user's home disk as `vdb` (serial `streamspace-home`, so the guest
//! finds it at `/dev/disk/by-id/virtio-streamspace-home`), logs its first
//! serial port to a file, and serves QEMU's own VNC server on loopback
//! only, on a port libvirt picks: only the agent reaches it, and tunnels
//! it like a container's.
//!
//! The overlay's backing chain is written out, not left to libvirt to
//! probe: with `dynamic_ownership` libvirt chowns every image of a chain to
//! the QEMU user, and the base is shared by every session of the template,
//! so a compromised QEMU of one session could then write what every other
//! user's VM boots from. Stated with `relabel='no'`, the base keeps its
//! owner (it must be readable by the QEMU user: docs/VM.md).

use crate::labels::SessionMetadata;
use crate::storage::{PoolDisk, ResolvedBase};
use crate::xml::Writer;
use streamspace_protocol::{Acceleration, Firmware, Memory, SessionId, SessionSpec};

/// Domains are named for people reading `virsh list`.
pub const DOMAIN_PREFIX: &str = "streamspace-";
/// Guest memory when the template names none: enough for a small Linux
/// desktop, little enough to run several on a laptop.
pub const DEFAULT_MEMORY: Memory = Memory(512 << 20);
/// Less than this cannot boot anything (SeaBIOS alone needs a few MiB).
pub const MIN_MEMORY: Memory = Memory(32 << 20);
/// The home disk's serial number, which names it inside the guest.
pub const HOME_DISK_SERIAL: &str = "streamspace-home";

pub fn domain_name(session_id: &SessionId) -> String {
    format!("{DOMAIN_PREFIX}{session_id}")
}

/// Session ids become domain, volume and file names: only characters that
/// are safe in all three.
pub fn validate_session_id(session_id: &SessionId) -> Result<(), String> {
    validate_name("session id", session_id.as_str())
}

/// A name that is safe as a libvirt volume name and a file name.
pub fn validate_name(what: &str, name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 100
        && !name.starts_with(['-', '.'])
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
    match ok {
        true => Ok(()),
        false => Err(format!(
            "{what} {name:?} cannot name a virtual machine's parts: use 1 to 100 letters, \
             digits, '-', '_' or '.'"
        )),
    }
}

/// The session's copy-on-write overlay (in the pool) and its base.
#[derive(Debug, Clone)]
pub struct Overlay {
    pub disk: PoolDisk,
    /// The overlay's backing file, on the libvirt host.
    pub base: ResolvedBase,
}

/// Everything the domain XML is made of, decided before rendering.
#[derive(Debug, Clone)]
pub struct DomainPlan {
    pub name: String,
    pub acceleration: Acceleration,
    pub memory: Memory,
    pub vcpus: u32,
    pub firmware: Firmware,
    pub overlay: Overlay,
    pub home: Option<PoolDisk>,
    pub serial_log: String,
    /// A libvirt network to attach (none: the VM has no network).
    pub network: Option<String>,
    pub metadata: SessionMetadata,
    /// For `virsh list --title`: whose session this is.
    pub title: String,
}

impl DomainPlan {
    /// The plan for `spec`'s session; `Err` says what in the template is
    /// wrong.
    pub fn new(
        spec: &SessionSpec,
        acceleration: Acceleration,
        overlay: Overlay,
        home: Option<PoolDisk>,
        serial_log: String,
        network: Option<String>,
        metadata: SessionMetadata,
    ) -> Result<Self, String> {
        Ok(DomainPlan {
            name: domain_name(&spec.session_id),
            acceleration,
            memory: guest_memory(spec.resources.memory)?,
            vcpus: vcpus(spec.resources.cpu),
            firmware: spec.vm.firmware,
            overlay,
            home,
            serial_log,
            network,
            metadata,
            title: format!("StreamSpace session of {} ({})", spec.user, spec.template),
        })
    }

    pub fn render(&self) -> String {
        let mut w = Writer::new();
        let domain_type = match self.acceleration {
            Acceleration::Kvm => "kvm",
            Acceleration::Tcg => "qemu",
        };
        w.open("domain", &[("type", domain_type)]);
        w.text("name", &[], &self.name);
        w.text("title", &[], &self.title);
        w.open("metadata", &[]);
        self.metadata.render(&mut w);
        w.close();
        let kib = self.memory.bytes().div_ceil(1024).to_string();
        w.text("memory", &[("unit", "KiB")], &kib);
        w.text("vcpu", &[("placement", "static")], &self.vcpus.to_string());
        match self.firmware {
            // libvirt picks OVMF from the host's firmware descriptors.
            Firmware::Uefi => w.open("os", &[("firmware", "efi")]),
            Firmware::Bios => w.open("os", &[]),
        };
        w.text("type", &[("arch", "x86_64")], "hvm");
        w.empty("boot", &[("dev", "hd")]);
        w.close();
        w.open("features", &[])
            .empty("acpi", &[])
            .empty("apic", &[]);
        w.close();
        w.empty("clock", &[("offset", "utc")]);
        // A guest that powers off or crashes stops, and is reported;
        // libvirt does not restart it behind the control plane's back.
        w.text("on_poweroff", &[], "destroy");
        w.text("on_reboot", &[], "restart");
        w.text("on_crash", &[], "destroy");
        w.open("devices", &[]);
        disk(&mut w, &self.overlay.disk, "vda", |w| {
            backing_store(w, &self.overlay.base)
        });
        if let Some(home) = &self.home {
            disk(&mut w, home, "vdb", |w| {
                w.text("serial", &[], HOME_DISK_SERIAL);
            });
        }
        if let Some(network) = &self.network {
            w.open("interface", &[("type", "network")])
                .empty("source", &[("network", network)])
                .empty("model", &[("type", "virtio")]);
            w.close();
        }
        // The console's output goes to a file virtlogd writes (and
        // rotates): `logs` reads it, and it survives the guest.
        w.open("serial", &[("type", "pty")])
            .empty("log", &[("file", &self.serial_log), ("append", "on")])
            .empty("target", &[("port", "0")]);
        w.close();
        w.open("console", &[("type", "pty")])
            .empty("target", &[("type", "serial"), ("port", "0")]);
        w.close();
        // Loopback only: QEMU's VNC server has no password; the agent's
        // tunnel is the only way in.
        w.open(
            "graphics",
            &[
                ("type", "vnc"),
                ("autoport", "yes"),
                ("listen", "127.0.0.1"),
            ],
        )
        .empty("listen", &[("type", "address"), ("address", "127.0.0.1")]);
        w.close();
        w.open("video", &[]).empty("model", &[("type", "vga")]);
        w.close();
        // An absolute pointer, so the remote cursor follows the viewer's.
        w.empty("input", &[("type", "tablet"), ("bus", "usb")]);
        w.finish()
    }
}

/// A qcow2 volume of the pool as a virtio disk; `more` adds elements.
fn disk(w: &mut Writer, disk: &PoolDisk, target: &str, more: impl FnOnce(&mut Writer)) {
    w.open("disk", &[("type", "volume"), ("device", "disk")])
        .empty(
            "driver",
            &[("name", "qemu"), ("type", "qcow2"), ("discard", "unmap")],
        )
        .empty("source", &[("pool", &disk.pool), ("volume", &disk.volume)])
        .empty("target", &[("dev", target), ("bus", "virtio")]);
    more(w);
    w.close();
}

/// The base as the overlay's whole backing chain (the empty
/// `<backingStore/>` ends it), which libvirt must not relabel.
fn backing_store(w: &mut Writer, base: &ResolvedBase) {
    w.open("backingStore", &[("type", "file")])
        .empty("format", &[("type", &base.format)])
        .open("source", &[("file", &base.path)])
        .empty("seclabel", &[("model", "dac"), ("relabel", "no")]);
    w.close();
    w.empty("backingStore", &[]);
    w.close();
}

/// Guest memory: the template's, or [`DEFAULT_MEMORY`]; at least
/// [`MIN_MEMORY`].
pub fn guest_memory(memory: Option<Memory>) -> Result<Memory, String> {
    let memory = memory.unwrap_or(DEFAULT_MEMORY);
    if memory.bytes() < MIN_MEMORY.bytes() {
        return Err(format!(
            "a virtual machine needs at least {} MiB of memory; the template gives it {} bytes",
            MIN_MEMORY.bytes() >> 20,
            memory.bytes()
        ));
    }
    Ok(memory)
}

/// vCPUs: the template's CPU rounded up to whole cores, at least one.
pub fn vcpus(cpu: Option<streamspace_protocol::Cpu>) -> u32 {
    let millicores = cpu.map_or(1000, |c| c.millicores());
    u32::try_from(millicores.div_ceil(1000).max(1)).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xml::{Event, events};
    use streamspace_protocol::Cpu;

    fn plan(spec: &SessionSpec, acceleration: Acceleration) -> DomainPlan {
        let disk = PoolDisk {
            pool: "streamspace".into(),
            volume: "streamspace-s1.qcow2".into(),
        };
        let home = spec.home.as_ref().map(|h| PoolDisk {
            pool: "streamspace".into(),
            volume: format!("{}.qcow2", h.volume),
        });
        let metadata = SessionMetadata::of(spec, &"agent-1".into());
        let base = ResolvedBase {
            path: "/var/lib/streamspace/vm/demo.qcow2".into(),
            format: "qcow2".into(),
        };
        DomainPlan::new(
            spec,
            acceleration,
            Overlay { disk, base },
            home,
            "/var/log/s1.log".into(),
            None,
            metadata,
        )
        .expect("plan")
    }

    /// The start tags of `xml` named `name`, with their attributes.
    fn tags(xml: &str, name: &str) -> Vec<std::collections::BTreeMap<String, String>> {
        events(xml)
            .expect("well-formed")
            .into_iter()
            .filter(|e| e.local_name() == Some(name))
            .filter_map(|e| match e {
                Event::Start { attrs, .. } => Some(attrs),
                _ => None,
            })
            .collect()
    }

    fn text_of(xml: &str, name: &str) -> String {
        let events = events(xml).expect("well-formed");
        let at = events
            .iter()
            .position(|e| matches!(e, Event::Start { name: n, .. } if n == name))
            .expect("element");
        match &events[at + 1] {
            Event::Text(text) => text.clone(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn resources_become_vcpus_and_memory() {
        assert_eq!(vcpus(None), 1);
        assert_eq!(vcpus(Some(Cpu(250))), 1);
        assert_eq!(vcpus(Some(Cpu(1000))), 1);
        assert_eq!(vcpus(Some(Cpu(1500))), 2);
        assert_eq!(vcpus(Some(Cpu(0))), 1);
        assert_eq!(guest_memory(None), Ok(DEFAULT_MEMORY));
        assert!(guest_memory(Some(Memory(1 << 20))).is_err());
        let mut spec = SessionSpec::fixture("s1");
        spec.resources.cpu = Some(Cpu(2500));
        spec.resources.memory = Some(Memory(128 << 20));
        let xml = plan(&spec, Acceleration::Tcg).render();
        assert_eq!(text_of(&xml, "vcpu"), "3");
        assert_eq!(text_of(&xml, "memory"), (128 * 1024).to_string());
        assert_eq!(tags(&xml, "memory")[0]["unit"], "KiB");
    }

    #[test]
    fn acceleration_picks_the_domain_type() {
        let spec = SessionSpec::fixture("s1");
        let kvm = plan(&spec, Acceleration::Kvm).render();
        assert_eq!(tags(&kvm, "domain")[0]["type"], "kvm");
        let tcg = plan(&spec, Acceleration::Tcg).render();
        assert_eq!(tags(&tcg, "domain")[0]["type"], "qemu");
    }

    #[test]
    fn firmware_is_bios_unless_uefi_is_asked_for() {
        let mut spec = SessionSpec::fixture("s1");
        let bios = plan(&spec, Acceleration::Tcg).render();
        assert_eq!(tags(&bios, "os")[0].get("firmware"), None);
        spec.vm.firmware = Firmware::Uefi;
        let uefi = plan(&spec, Acceleration::Tcg).render();
        assert_eq!(tags(&uefi, "os")[0]["firmware"], "efi");
    }

    #[test]
    fn the_overlay_boots_and_the_home_is_the_second_disk() {
        let spec = SessionSpec::fixture("s1");
        let xml = plan(&spec, Acceleration::Tcg).render();
        let volumes = |xml: &str| -> Vec<String> {
            let sources = tags(xml, "source").into_iter();
            sources.filter_map(|s| s.get("volume").cloned()).collect()
        };
        assert_eq!(volumes(&xml), ["streamspace-s1.qcow2"], "no home: {xml}");
        let homed = spec.with_home("streamspace-home-u1-t1");
        let xml = plan(&homed, Acceleration::Tcg).render();
        let targets: Vec<_> = tags(&xml, "target")
            .into_iter()
            .filter_map(|t| t.get("dev").cloned())
            .collect();
        assert_eq!(targets, ["vda", "vdb"]);
        assert_eq!(volumes(&xml)[1], "streamspace-home-u1-t1.qcow2");
        assert_eq!(text_of(&xml, "serial"), HOME_DISK_SERIAL);
        assert!(tags(&xml, "driver").iter().all(|d| d["type"] == "qcow2"));
    }

    #[test]
    fn the_shared_base_is_the_overlay_s_whole_chain_and_never_relabelled() {
        let spec = SessionSpec::fixture("s1").with_home("streamspace-home-u1-t1");
        let xml = plan(&spec, Acceleration::Tcg).render();
        let disks: Vec<&str> = xml.split("</disk>").take(2).collect();
        let chain = "<backingStore type=\"file\"><format type=\"qcow2\"/>\
            <source file=\"/var/lib/streamspace/vm/demo.qcow2\">\
            <seclabel model=\"dac\" relabel=\"no\"/></source><backingStore/></backingStore>";
        assert!(disks[0].contains("streamspace-s1.qcow2"), "{xml}");
        assert!(disks[0].ends_with(chain), "{xml}");
        assert!(
            !disks[1].contains("backingStore"),
            "the home has no base: {xml}"
        );
        assert_eq!(tags(&xml, "seclabel").len(), 1);
    }

    #[test]
    fn vnc_listens_on_loopback_only_and_the_console_is_logged() {
        let xml = plan(&SessionSpec::fixture("s1"), Acceleration::Tcg).render();
        let graphics = tags(&xml, "graphics");
        assert_eq!(graphics.len(), 1);
        assert_eq!(graphics[0]["type"], "vnc");
        assert_eq!(graphics[0]["listen"], "127.0.0.1");
        assert_eq!(graphics[0]["autoport"], "yes");
        let listens = tags(&xml, "listen");
        assert_eq!(listens.len(), 1);
        assert_eq!(listens[0]["address"], "127.0.0.1");
        assert_eq!(tags(&xml, "log")[0]["file"], "/var/log/s1.log");
        assert!(
            tags(&xml, "interface").is_empty(),
            "no network unless asked"
        );
    }

    #[test]
    fn user_data_is_escaped_everywhere() {
        let spec = SessionSpec::fixture("s1").with_owner("</title><evil/>", "a'b\"c&d");
        let xml = plan(&spec, Acceleration::Tcg).render();
        assert!(tags(&xml, "evil").is_empty(), "{xml}");
        assert_eq!(
            text_of(&xml, "title"),
            "StreamSpace session of </title><evil/> (a'b\"c&d)"
        );
        let labels = tags(&xml, "label");
        assert!(labels.iter().any(|l| l["value"] == "</title><evil/>"));
    }

    #[test]
    fn names_that_could_escape_a_path_are_refused() {
        assert!(validate_session_id(&"0b5e-11_x.y".into()).is_ok());
        for bad in ["", "../x", "a/b", "-rf", ".hidden", "a b", "ü"] {
            assert!(validate_session_id(&bad.into()).is_err(), "{bad}");
        }
        assert_eq!(domain_name(&"s1".into()), "streamspace-s1");
    }
}
