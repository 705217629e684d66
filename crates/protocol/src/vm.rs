//! What a virtual-machine session needs beyond a container's spec
//! (docs/VM.md): the session's `image` names the base disk, its resources
//! the vCPUs and memory; the rest is here.

use crate::quantity::Memory;
use serde::{Deserialize, Serialize};

/// How a template's virtual machines boot and what their home disk holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct VmSpec {
    /// The firmware the machine boots with.
    #[serde(default)]
    pub firmware: Firmware,
    /// Size of the persistent home disk made the first time a user runs
    /// the template (a second disk that outlives sessions); 1 GiB unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, example = "4Gi"))]
    pub home_size: Option<Memory>,
}

/// Legacy BIOS (SeaBIOS) or UEFI (OVMF, when the host has it).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Firmware {
    #[default]
    Bios,
    Uefi,
}

/// How a platform runs virtual machines: on the CPU's virtualisation
/// (KVM) or emulated instruction by instruction (QEMU's TCG: everything
/// works, slower).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Acceleration {
    Kvm,
    Tcg,
}

impl VmSpec {
    /// The home disk's size when the template does not say.
    pub const DEFAULT_HOME_SIZE: Memory = Memory(1 << 30);

    pub fn home_size(&self) -> Memory {
        self.home_size.unwrap_or(Self::DEFAULT_HOME_SIZE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_vm_spec_reads_as_written_and_defaults_to_bios() {
        let spec: VmSpec = serde_json::from_str(r#"{"firmware":"uefi","home_size":"4Gi"}"#)
            .expect("a valid VM spec");
        assert_eq!(spec.firmware, Firmware::Uefi);
        assert_eq!(spec.home_size().bytes(), 4 << 30);
        let empty: VmSpec = serde_json::from_str("{}").expect("an empty VM spec");
        assert_eq!(
            (empty.firmware, empty.home_size()),
            (Firmware::Bios, VmSpec::DEFAULT_HOME_SIZE)
        );
    }

    #[test]
    fn unknown_firmware_and_fields_are_refused() {
        assert!(serde_json::from_str::<VmSpec>(r#"{"firmware":"coreboot"}"#).is_err());
        assert!(serde_json::from_str::<VmSpec>(r#"{"disk":"x"}"#).is_err());
    }
}
