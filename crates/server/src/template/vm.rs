//! Templates for virtual machines (the libvirt platform, docs/VM.md): the
//! rules that keep a disk image off container platforms and a container
//! image off libvirt, the base disk's name, the `vm` section, and the
//! container-only fields a VM refuses rather than silently ignoring.
//!
//! It sits beside `input.rs` (which calls it once the platform names are
//! known) because every rule here depends on one fact, "this template is a
//! VM", and keeping them together shows what a VM template may say.

use super::form::TemplateInput;
use crate::validate::FieldError;
use streamspace_protocol::{
    DesktopPolicy, FileTransferPolicy, Memory, PortProtocol, PortSpec, VmSpec,
};

pub const DOCKER: &str = "docker";
pub const KUBERNETES: &str = "kubernetes";
pub const LIBVIRT: &str = "libvirt";

/// The platforms that run container images: what a template that names no
/// platform may use (a container image cannot boot as a VM).
pub const CONTAINER_PLATFORMS: [&str; 2] = [DOCKER, KUBERNETES];

/// The smallest and largest persistent home disk a VM template may ask for.
pub const MIN_HOME_SIZE: Memory = Memory(64 << 20);
pub const MAX_HOME_SIZE: Memory = Memory(1 << 40);

/// The least memory a VM is given: below it, no kernel boots.
pub const MIN_VM_MEMORY: Memory = Memory(64 << 20);

/// QEMU's first VNC display (`:0`). The libvirt agent connects to the
/// domain's own VNC server, wherever libvirt put it, and ignores the number;
/// it is what a VM template's ports default to.
pub const VM_VNC_PORT: u16 = 5900;

/// Longest base-disk path or `pool/volume` accepted.
const MAX_DISK_NAME: usize = 1024;

/// Whether a template whose `platforms` are these may run on an agent of
/// `platform`: empty means any *container* platform, never libvirt.
pub fn platform_allowed(platforms: &[String], platform: &str) -> bool {
    if platforms.is_empty() {
        CONTAINER_PLATFORMS.contains(&platform)
    } else {
        platforms.iter().any(|p| p == platform)
    }
}

/// Whether `platforms` make a VM template.
pub fn is_vm(platforms: &[String]) -> bool {
    platforms.iter().any(|p| p == LIBVIRT)
}

/// libvirt only alone: a disk image cannot run as a container, nor a
/// container image as a VM, so one template cannot be both.
pub fn check_platforms(platforms: &[String]) -> Result<(), FieldError> {
    if is_vm(platforms) && platforms.len() != 1 {
        return Err(FieldError::new(
            "platforms",
            format!(
                "{platforms:?} mixes libvirt with other platforms: a virtual machine's base disk \
                 cannot run as a container, nor a container image as a VM; use [\"libvirt\"] \
                 alone, or make a second template"
            ),
        ));
    }
    Ok(())
}

/// The checks of a VM template beyond the common ones; what it returns is
/// the `vm` section to store (the defaults when none was written). For a
/// container template, only that there is no `vm` section.
pub fn check(input: &TemplateInput) -> Result<Option<VmSpec>, FieldError> {
    if !is_vm(&input.platforms) {
        return match input.vm {
            Some(_) => Err(FieldError::new(
                "vm",
                "only virtual-machine templates have a vm section: set platforms to \
                 [\"libvirt\"], or remove it",
            )),
            None => Ok(None),
        };
    }
    check_base_disk(&input.image)?;
    refuse_container_fields(input)?;
    check_vm_resources(input)?;
    check_vm_ports(input.ports.as_deref())?;
    if input
        .desktop
        .file_transfer
        .is_some_and(|f| f != FileTransferPolicy::None)
    {
        return Err(FieldError::new(
            "desktop.file_transfer",
            "files travel through the agent into the session's home, which it cannot reach \
             inside a running VM's disk: set it to \"none\" or leave it out",
        ));
    }
    let vm = input.vm.unwrap_or_default();
    if let Some(size) = vm.home_size {
        if !(MIN_HOME_SIZE..=MAX_HOME_SIZE).contains(&size) {
            return Err(FieldError::new(
                "vm.home_size",
                format!(
                    "{size} is out of range: a home disk is {MIN_HOME_SIZE} to {MAX_HOME_SIZE}, \
                     e.g. \"4Gi\""
                ),
            ));
        }
        if !input.persistent_home {
            return Err(FieldError::new(
                "vm.home_size",
                "sizes the persistent home disk, which this template does not have: set \
                 persistent_home, or remove it",
            ));
        }
    }
    Ok(Some(vm))
}

/// A VM's desktop policy: no file transfer, since the agent cannot reach
/// into a running guest's disk (the clipboard rule holds: the control
/// plane enforces it on the viewer's RFB stream).
pub fn desktop(mut policy: DesktopPolicy) -> DesktopPolicy {
    policy.file_transfer = FileTransferPolicy::None;
    policy
}

/// The ports a VM template gets when it lists none: its VNC display.
pub fn default_ports() -> Vec<PortSpec> {
    vec![PortSpec::new("vnc", VM_VNC_PORT, PortProtocol::Vnc)]
}

/// An absolute path to a disk file (`/var/lib/streamspace/vm/demo.qcow2`)
/// or a libvirt storage volume (`pool/volume`), in names libvirt and a
/// shell-free `qemu-img` call take as written.
pub fn check_base_disk(image: &str) -> Result<(), FieldError> {
    let refuse = |why: &str| {
        Err(FieldError::new(
            "image",
            format!(
                "{image:?} {why}: a VM's image is its base disk, an absolute path to a qcow2 \
                 file (e.g. \"/var/lib/streamspace/vm/demo.qcow2\") or a libvirt storage volume \
                 as \"pool/volume\""
            ),
        ))
    };
    if image.is_empty() {
        return refuse("is empty");
    }
    if image.len() > MAX_DISK_NAME {
        return refuse("is too long (at most 1024 bytes)");
    }
    if image.chars().any(char::is_control) || image != image.trim() {
        return refuse("holds control characters or surrounding spaces");
    }
    if let Some(path) = image.strip_prefix('/') {
        let parts: Vec<&str> = path.split('/').collect();
        if parts.iter().any(|p| p.is_empty()) {
            return refuse("has an empty component ('//' or a trailing '/')");
        }
        if parts.iter().any(|p| *p == "." || *p == "..") {
            return refuse("holds '.' or '..'");
        }
        return Ok(());
    }
    match image.split_once('/') {
        Some((pool, volume)) if is_libvirt_name(pool, 64) && is_libvirt_name(volume, 255) => Ok(()),
        Some(_) => refuse(
            "is not a pool/volume libvirt accepts (letters, digits, '.', '_', '+', '-'; \
             not starting with '.' or '-')",
        ),
        None => refuse("is neither an absolute path nor pool/volume"),
    }
}

/// A storage pool or volume name that needs no quoting anywhere: the
/// characters of file names people use, never a leading `.` or `-`.
fn is_libvirt_name(name: &str, max: usize) -> bool {
    (1..=max).contains(&name.len())
        && !name.starts_with(['.', '-'])
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'+' | b'-'))
}

const NO_ENVIRONMENT: &str = "cannot reach a guest, which has no environment the agent can set";
const NO_GPUS: &str = "needs PCI passthrough, which the libvirt platform does not do yet";

/// What only a container has. A VM would silently go without each, so
/// each is refused with what to do instead.
fn refuse_container_fields(input: &TemplateInput) -> Result<(), FieldError> {
    let set: [(&str, bool, &str); 12] = [
        (
            "shm_size",
            input.shm_size.is_some(),
            "is a container's /dev/shm; the guest sizes its own from resources.memory",
        ),
        (
            "user",
            input.user.is_some(),
            "is whom a container runs as; a guest's users are its own",
        ),
        (
            "capabilities",
            !input.capabilities.is_empty(),
            "are a container's Linux capabilities; a guest runs its own kernel",
        ),
        (
            "pids_limit",
            input.pids_limit.is_some(),
            "limits a container's processes; a guest's kernel sets its own",
        ),
        (
            "read_only_root_filesystem",
            input.read_only_root_filesystem,
            "is a container's; a VM never writes its base disk (each session writes to its own \
             copy-on-write overlay)",
        ),
        (
            "volumes",
            !input.volumes.is_empty(),
            "are Docker volumes or Kubernetes claims, which a VM cannot mount",
        ),
        (
            "registry_auth",
            input.registry_auth.is_some(),
            "is for pulling container images; a VM's base disk is on its host",
        ),
        ("env", !input.env.is_empty(), NO_ENVIRONMENT),
        ("secret_env", !input.secret_env.is_empty(), NO_ENVIRONMENT),
        ("user_env", !input.user_env.is_empty(), NO_ENVIRONMENT),
        (
            "resources.gpu",
            input.resources.gpu.is_some_and(|n| n > 0),
            NO_GPUS,
        ),
        (
            "max_resources.gpu",
            input.max_resources.gpu.is_some_and(|n| n > 0),
            NO_GPUS,
        ),
    ];
    match set.into_iter().find(|(_, is_set, _)| *is_set) {
        Some((field, _, why)) => Err(FieldError::new(
            field,
            format!("{why}: remove it from this virtual-machine template"),
        )),
        None => Ok(()),
    }
}

/// A VM has a fixed memory size and whole vCPUs.
fn check_vm_resources(input: &TemplateInput) -> Result<(), FieldError> {
    match input.resources.memory {
        None => {
            return Err(FieldError::new(
                "resources.memory",
                "a virtual machine needs its memory size: set it, e.g. \"1Gi\"",
            ));
        }
        Some(memory) if memory < MIN_VM_MEMORY => {
            return Err(FieldError::new(
                "resources.memory",
                format!("{memory} is too little for a virtual machine: at least {MIN_VM_MEMORY}"),
            ));
        }
        Some(_) => {}
    }
    if let Some(cpu) = input.resources.cpu
        && (cpu.millicores() == 0 || cpu.millicores() % 1000 != 0)
    {
        return Err(FieldError::new(
            "resources.cpu",
            format!("{cpu} is not whole: a virtual machine has whole vCPUs, use \"1\", \"2\", …"),
        ));
    }
    Ok(())
}

/// One port, the VNC display: the agent tunnels the domain's VNC server,
/// and a guest's other ports are not reachable the way a container's are.
fn check_vm_ports(ports: Option<&[super::PortInput]>) -> Result<(), FieldError> {
    match ports {
        None => Ok(()),
        Some([only]) if only.protocol == PortProtocol::Vnc => Ok(()),
        Some(_) => Err(FieldError::new(
            "ports",
            "a virtual machine has one port, its VNC display: \
             [{\"name\": \"vnc\", \"port\": 5900, \"protocol\": \"vnc\"}] (the agent connects to \
             QEMU's VNC server whatever the number), or leave ports out",
        )),
    }
}
