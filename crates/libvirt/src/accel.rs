//! KVM or TCG: which one domains of this host can use.
//!
//! Neither `/dev/kvm` existing nor libvirt's domain capabilities for
//! `type='kvm'` prove KVM works: on a host whose CPU hides its
//! virtualisation flags, or where QEMU's user may not open `/dev/kvm`,
//! both say yes and the first start fails ("Could not access KVM kernel
//! module: Permission denied"). So the agent asks the capabilities and,
//! if they allow KVM, starts a tiny transient KVM domain, paused, and
//! destroys it again. A paused start runs no guest code, and on a CPU that
//! hides vmx/svm (nested without them) it succeeds while real guests die in
//! the firmware ("KVM internal error"): the CPU's flags must say so too.

use crate::domain::DOMAIN_PREFIX;
use crate::xml::Writer;
use streamspace_protocol::Acceleration;
use virt::connect::Connect;
use virt::domain::Domain;
use virt_sys as sys;

/// What the operator asked for (`--acceleration`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum AccelerationChoice {
    /// KVM if a probe domain starts on it, else TCG.
    #[default]
    Auto,
    Kvm,
    Tcg,
}

/// Decides (blocking): `Auto` probes, the others are taken as said.
pub fn detect(conn: &Connect, choice: AccelerationChoice) -> Acceleration {
    match choice {
        AccelerationChoice::Kvm => Acceleration::Kvm,
        AccelerationChoice::Tcg => Acceleration::Tcg,
        AccelerationChoice::Auto => match probe(conn) {
            Ok(()) => Acceleration::Kvm,
            Err(reason) => {
                tracing::info!(%reason, "KVM is not usable here: virtual machines run on QEMU's TCG (slower)");
                Acceleration::Tcg
            }
        },
    }
}

fn probe(conn: &Connect) -> Result<(), String> {
    cpu_has_virtualisation(&std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default())?;
    conn.get_domain_capabilities(None, None, None, Some("kvm"), 0)
        .map_err(|e| e.message().to_owned())?;
    let mut w = Writer::new();
    let name = format!("{DOMAIN_PREFIX}kvm-probe-{}", std::process::id());
    w.open("domain", &[("type", "kvm")])
        .text("name", &[], &name);
    w.text("memory", &[("unit", "MiB")], "16");
    w.open("os", &[]).text("type", &[], "hvm");
    w.close();
    // Transient, paused, and destroyed with this connection should the
    // agent die before it does so itself.
    let flags = sys::VIR_DOMAIN_START_PAUSED | sys::VIR_DOMAIN_START_AUTODESTROY;
    let domain =
        Domain::create_xml(conn, &w.finish(), flags).map_err(|e| e.message().to_owned())?;
    if let Err(e) = domain.destroy() {
        tracing::warn!(error = %e, domain = name, "could not destroy the KVM probe domain");
    }
    Ok(())
}

/// Whether the CPU says it can virtualise (Intel `vmx`, AMD `svm`).
fn cpu_has_virtualisation(cpuinfo: &str) -> Result<(), String> {
    let flagged = cpuinfo
        .lines()
        .filter(|line| line.starts_with("flags"))
        .any(|line| {
            line.split_whitespace()
                .any(|flag| flag == "vmx" || flag == "svm")
        });
    if flagged {
        Ok(())
    } else {
        Err("the CPU shows no vmx or svm flag".to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::cpu_has_virtualisation;

    #[test]
    fn kvm_needs_the_cpus_virtualisation_flag() {
        assert!(cpu_has_virtualisation("flags\t\t: fpu vme de pse vmx sse2\n").is_ok());
        assert!(cpu_has_virtualisation("flags\t\t: fpu svm\n").is_ok());
        let refused =
            cpu_has_virtualisation("flags\t\t: fpu vme sse2 hypervisor\nvmx flags\t: ept\n");
        assert_eq!(refused, Err("the CPU shows no vmx or svm flag".to_owned()));
    }
}
