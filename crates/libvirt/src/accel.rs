//! KVM or TCG: which one domains of this host can use.
//!
//! Neither `/dev/kvm` existing nor libvirt's domain capabilities for
//! `type='kvm'` prove KVM works: on a host whose CPU hides its
//! virtualisation flags, or where QEMU's user may not open `/dev/kvm`,
//! both say yes and the first start fails ("Could not access KVM kernel
//! module: Permission denied"). So the agent asks the capabilities and,
//! if they allow KVM, starts a tiny transient KVM domain, paused, and
//! destroys it again: what works for it works for sessions.

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
