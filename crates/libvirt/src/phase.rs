//! A domain's state → the session's [`Phase`] (pure, unit-tested).
//!
//! Unlike a stopped container, a shut-off domain says why it stopped
//! (libvirt's state reason), and a hibernated one has a managed save image.
//! So, in order:
//! 1. Running (or blocked on I/O) → **Running**; the runtime then checks
//!    readiness through `connect` (the VNC banner).
//! 2. Shut off with a managed save image → **Hibernated**, whoever saved it.
//! 3. Shut off while this agent terminates it ([`Intent::Terminate`]) →
//!    **Stopping** (the undefine follows).
//! 4. Shut off otherwise, or crashed → **Failed**, with why: shut down from
//!    inside, destroyed outside StreamSpace, crashed, failed to start.
//! 5. Paused while the managed save runs → **Hibernating**; paused by
//!    someone else → **Failed** (the guest is frozen, nobody can use it).
//!
//! A domain that is gone is **Terminated** after our terminate and
//! **Failed** otherwise ([`streamspace_agent::intent::Intents::removal_report`]).

use streamspace_agent::intent::Intent;
use streamspace_protocol::Phase;
use virt_sys as sys;

/// What libvirt says about a domain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DomainState {
    /// `VIR_DOMAIN_*` (`virDomainState`).
    pub state: u32,
    /// The state's reason (`VIR_DOMAIN_SHUTOFF_*`, `VIR_DOMAIN_PAUSED_*`…).
    pub reason: i32,
    pub has_managed_save: bool,
}

/// A session's phase as its domain shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observation {
    pub phase: Phase,
    pub message: Option<String>,
}

impl Observation {
    fn phase(phase: Phase) -> Self {
        Observation {
            phase,
            message: None,
        }
    }

    fn failed(message: impl Into<String>) -> Self {
        Observation {
            phase: Phase::Failed,
            message: Some(message.into()),
        }
    }
}

pub fn observe(domain: &str, state: DomainState, intent: Option<Intent>) -> Observation {
    let reason = u32::try_from(state.reason).unwrap_or(u32::MAX);
    match state.state {
        sys::VIR_DOMAIN_RUNNING | sys::VIR_DOMAIN_BLOCKED => Observation::phase(Phase::Running),
        sys::VIR_DOMAIN_SHUTOFF if state.has_managed_save => Observation::phase(Phase::Hibernated),
        sys::VIR_DOMAIN_SHUTOFF | sys::VIR_DOMAIN_SHUTDOWN if intent == Some(Intent::Terminate) => {
            Observation::phase(Phase::Stopping)
        }
        sys::VIR_DOMAIN_SHUTDOWN => Observation::phase(Phase::Stopping),
        sys::VIR_DOMAIN_SHUTOFF => Observation::failed(shutoff_reason(domain, reason)),
        sys::VIR_DOMAIN_CRASHED => Observation::failed(format!(
            "the virtual machine {domain} crashed (its guest panicked or QEMU failed); \
             terminate the session and start a new one (its home disk is kept)"
        )),
        sys::VIR_DOMAIN_PAUSED => match reason {
            sys::VIR_DOMAIN_PAUSED_SAVE => Observation::phase(Phase::Hibernating),
            sys::VIR_DOMAIN_PAUSED_STARTING_UP | sys::VIR_DOMAIN_PAUSED_UNKNOWN => {
                Observation::phase(Phase::Starting)
            }
            sys::VIR_DOMAIN_PAUSED_IOERROR => Observation::failed(format!(
                "the virtual machine {domain} is paused on a disk error (is the storage pool full?)"
            )),
            _ => Observation::failed(format!(
                "the virtual machine {domain} was paused outside StreamSpace (for example with \
                 `virsh suspend`); `virsh resume {domain}` lets it run again"
            )),
        },
        sys::VIR_DOMAIN_PMSUSPENDED => Observation::failed(format!(
            "the guest of {domain} suspended itself to RAM; wake the session to resume it"
        )),
        _ => Observation::phase(Phase::Starting),
    }
}

/// Why a domain without a managed save is shut off, as people read it.
fn shutoff_reason(domain: &str, reason: u32) -> String {
    let what = match reason {
        sys::VIR_DOMAIN_SHUTOFF_SHUTDOWN => {
            "the virtual machine was shut down from inside (its operating system powered off)"
        }
        sys::VIR_DOMAIN_SHUTOFF_DESTROYED => {
            "the virtual machine was destroyed outside StreamSpace (for example with `virsh destroy`)"
        }
        sys::VIR_DOMAIN_SHUTOFF_CRASHED => "the virtual machine crashed",
        sys::VIR_DOMAIN_SHUTOFF_FAILED => "the virtual machine failed to start",
        sys::VIR_DOMAIN_SHUTOFF_DAEMON => "libvirtd stopped the virtual machine",
        sys::VIR_DOMAIN_SHUTOFF_SAVED => {
            "the virtual machine was saved to a file outside StreamSpace (`virsh save`)"
        }
        // libvirtd forgets the reason when it restarts.
        _ => "the virtual machine is shut off and its memory was not saved",
    };
    format!(
        "{what}: {domain} is shut off; waking the session boots it again from its disk, \
         terminating it removes it (its home disk is kept)"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(state: u32, reason: u32, has_managed_save: bool) -> DomainState {
        DomainState {
            state,
            reason: reason as i32,
            has_managed_save,
        }
    }

    fn phase(s: DomainState, intent: Option<Intent>) -> Phase {
        observe("streamspace-s1", s, intent).phase
    }

    #[test]
    fn running_and_saved_domains() {
        let running = state(sys::VIR_DOMAIN_RUNNING, 1, false);
        assert_eq!(phase(running, None), Phase::Running);
        let saved = state(sys::VIR_DOMAIN_SHUTOFF, sys::VIR_DOMAIN_SHUTOFF_SAVED, true);
        assert_eq!(phase(saved, None), Phase::Hibernated);
        assert_eq!(phase(saved, Some(Intent::Hibernate)), Phase::Hibernated);
        // Even after libvirtd forgot the reason, the save image tells.
        let forgot = state(sys::VIR_DOMAIN_SHUTOFF, 0, true);
        assert_eq!(phase(forgot, None), Phase::Hibernated);
        let saving = state(sys::VIR_DOMAIN_PAUSED, sys::VIR_DOMAIN_PAUSED_SAVE, false);
        assert_eq!(phase(saving, Some(Intent::Hibernate)), Phase::Hibernating);
    }

    #[test]
    fn stops_nobody_here_asked_for_are_failures_that_say_why() {
        let destroyed = state(
            sys::VIR_DOMAIN_SHUTOFF,
            sys::VIR_DOMAIN_SHUTOFF_DESTROYED,
            false,
        );
        let seen = observe("streamspace-s1", destroyed, None);
        assert_eq!(seen.phase, Phase::Failed);
        let message = seen.message.expect("a reason");
        assert!(
            message.contains("destroyed outside StreamSpace"),
            "{message}"
        );
        assert!(message.contains("streamspace-s1"), "{message}");
        let inside = state(
            sys::VIR_DOMAIN_SHUTOFF,
            sys::VIR_DOMAIN_SHUTOFF_SHUTDOWN,
            false,
        );
        let message = observe("d", inside, None).message.expect("a reason");
        assert!(message.contains("shut down from inside"), "{message}");
        let crashed = state(sys::VIR_DOMAIN_CRASHED, 0, false);
        assert_eq!(phase(crashed, None), Phase::Failed);
        let paused = state(sys::VIR_DOMAIN_PAUSED, sys::VIR_DOMAIN_PAUSED_USER, false);
        assert_eq!(phase(paused, None), Phase::Failed);
    }

    #[test]
    fn our_own_destroy_is_the_terminate_in_progress() {
        let destroyed = state(
            sys::VIR_DOMAIN_SHUTOFF,
            sys::VIR_DOMAIN_SHUTOFF_DESTROYED,
            false,
        );
        assert_eq!(phase(destroyed, Some(Intent::Terminate)), Phase::Stopping);
        assert_eq!(phase(destroyed, Some(Intent::Hibernate)), Phase::Failed);
    }
}
