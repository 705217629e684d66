//! What every platform applies to confine a session beyond its resources
//! ([`SessionSecurity`]), checked once here so Docker and Kubernetes refuse
//! the same specs with the same words.

use streamspace_protocol::{CAPABILITIES, DEFAULT_PIDS_LIMIT, SessionSecurity};

/// Capabilities an agent refuses to give a session unless its operator
/// allows them by name (`--allow-capability`): each undoes the isolation
/// between sessions or reaches into the host, and a template is written by
/// an admin of the control plane, who is not necessarily the one who owns
/// the host. With the reason shown to whoever meets the refusal.
pub const REFUSED_CAPABILITIES: [(&str, &str); 16] = [
    (
        "NET_RAW",
        "it forges packets on the network sessions share: ARP replies that take over another \
         session's address, which the agent dials (inter-container isolation drops IP, not ARP)",
    ),
    (
        "NET_ADMIN",
        "it changes the session's own addresses and routes, so it can claim another session's \
         address on the network they share",
    ),
    (
        "SYS_ADMIN",
        "it mounts filesystems and much more: the usual first step out of a container",
    ),
    ("SYS_MODULE", "it loads modules into the host's kernel"),
    (
        "SYS_RAWIO",
        "it does raw I/O on the host's devices and ports",
    ),
    (
        "SYS_PTRACE",
        "it traces processes and reads their memory, and opens kernel interfaces containers \
         are otherwise kept from",
    ),
    ("SYS_BOOT", "it loads a new kernel into the host (kexec)"),
    (
        "SYS_TIME",
        "it sets the host's clock, which every container shares",
    ),
    ("SYSLOG", "it reads and clears the host kernel's log"),
    ("BPF", "it loads BPF programs into the host's kernel"),
    ("PERFMON", "it observes the whole host through perf events"),
    (
        "MAC_ADMIN",
        "it changes the host's AppArmor or SELinux policy",
    ),
    (
        "MAC_OVERRIDE",
        "it overrides the host's AppArmor or SELinux policy",
    ),
    (
        "DAC_READ_SEARCH",
        "it opens files by handle (open_by_handle_at), which reaches host files outside the \
         container's root",
    ),
    ("AUDIT_CONTROL", "it changes the host's audit rules"),
    (
        "AUDIT_READ",
        "it reads the host's audit log, other users' activity included",
    ),
];

/// How a session is confined, once its spec's security settings are checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Confinement {
    /// Docker's `PidsLimit` (Kubernetes has no per-pod field).
    pub pids_limit: u32,
    /// Given back after dropping all, once each.
    pub capabilities: Vec<String>,
}

impl Confinement {
    /// The confinement `security` asks for, or why it cannot be applied;
    /// `allowed` are the refused capabilities this agent's operator allows.
    pub fn of(security: &SessionSecurity, allowed: &[String]) -> Result<Self, String> {
        Ok(Confinement {
            pids_limit: pids_limit(security)?,
            capabilities: capabilities(security, allowed)?,
        })
    }
}

/// The pids limit to apply: the spec's, or [`DEFAULT_PIDS_LIMIT`].
pub fn pids_limit(security: &SessionSecurity) -> Result<u32, String> {
    match security.pids_limit {
        // Docker reads 0 as "no limit": never let a spec ask for that.
        Some(0) => Err("pids_limit 0 is not allowed: it would mean no limit at all".into()),
        Some(limit) => Ok(limit),
        None => Ok(DEFAULT_PIDS_LIMIT),
    }
}

/// The capabilities to give back after dropping all, once each, or why the
/// list cannot be applied: an unknown name, or one of
/// [`REFUSED_CAPABILITIES`] that `allowed` does not name.
pub fn capabilities(security: &SessionSecurity, allowed: &[String]) -> Result<Vec<String>, String> {
    let mut added: Vec<String> = Vec::with_capacity(security.capabilities.len());
    for name in &security.capabilities {
        check_name(name)?;
        if let Some(why) = refusal(name).filter(|_| !allowed.contains(name)) {
            return Err(format!(
                "the template gives sessions the capability {name}, which this agent refuses: \
                 {why}. Remove it from the template, or, if the host's operator accepts that, \
                 start the agent with --allow-capability {name}"
            ));
        }
        if !added.contains(name) {
            added.push(name.clone());
        }
    }
    Ok(added)
}

/// A capability name an operator may pass to `--allow-capability`: a known
/// one, written as templates write it.
pub fn check_name(name: &str) -> Result<(), String> {
    if CAPABILITIES.contains(&name) {
        return Ok(());
    }
    let hint = match name.strip_prefix("CAP_") {
        Some(bare) if CAPABILITIES.contains(&bare) => format!(" (write {bare:?})"),
        _ => String::new(),
    };
    Err(format!(
        "unknown Linux capability {name:?}{hint}: name capabilities without the CAP_ \
         prefix, in capitals, e.g. CHOWN, SETUID, SETGID"
    ))
}

/// Checks the capabilities an operator allows (`--allow-capability`).
pub fn check_allowed(allowed: &[String]) -> Result<(), String> {
    allowed
        .iter()
        .try_for_each(|name| check_name(name))
        .map_err(|e| format!("--allow-capability: {e}"))
}

/// Why a capability is refused unless allowed, if it is.
fn refusal(name: &str) -> Option<&'static str> {
    REFUSED_CAPABILITIES
        .iter()
        .find(|(refused, _)| *refused == name)
        .map(|(_, why)| *why)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn security(pids_limit: Option<u32>, capabilities: &[&str]) -> SessionSecurity {
        SessionSecurity {
            pids_limit,
            capabilities: capabilities.iter().map(|c| (*c).to_owned()).collect(),
            ..SessionSecurity::default()
        }
    }

    #[test]
    fn pids_limit_defaults_and_never_means_unlimited() {
        assert_eq!(pids_limit(&security(None, &[])), Ok(DEFAULT_PIDS_LIMIT));
        assert_eq!(pids_limit(&security(Some(300), &[])), Ok(300));
        let err = pids_limit(&security(Some(0), &[])).expect_err("0 is unlimited");
        assert!(err.contains("no limit"), "{err}");
    }

    #[test]
    fn capabilities_are_known_names_without_prefix() {
        let added =
            capabilities(&security(None, &["CHOWN", "SETUID", "CHOWN"]), &[]).expect("valid");
        assert_eq!(added, ["CHOWN", "SETUID"]);
        assert_eq!(capabilities(&security(None, &[]), &[]), Ok(Vec::new()));
        let err = capabilities(&security(None, &["CAP_CHOWN"]), &[]).expect_err("prefixed");
        assert!(err.contains("write \"CHOWN\""), "{err}");
        for bad in ["ALL", "chown", "FLY", ""] {
            let err = capabilities(&security(None, &[bad]), &[]).expect_err(bad);
            assert!(err.contains("unknown Linux capability"), "{err}");
        }
    }

    #[test]
    fn capabilities_that_break_isolation_need_the_operators_consent() {
        for (name, _) in REFUSED_CAPABILITIES {
            assert!(CAPABILITIES.contains(&name), "{name} is a capability");
            let err = capabilities(&security(None, &["CHOWN", name]), &[]).expect_err(name);
            assert!(
                err.contains(&format!("--allow-capability {name}")),
                "the refusal names the flag: {err}"
            );
            let allowed = [name.to_owned()];
            let added = capabilities(&security(None, &["CHOWN", name]), &allowed).expect(name);
            assert_eq!(added, ["CHOWN", name]);
        }
        assert_eq!(check_allowed(&["NET_RAW".into(), "CHOWN".into()]), Ok(()));
        let err = check_allowed(&["CAP_NET_RAW".into()]).expect_err("prefixed");
        assert!(err.starts_with("--allow-capability: unknown"), "{err}");
        // Allowing one does not allow another.
        let err = capabilities(&security(None, &["NET_RAW"]), &["NET_ADMIN".into()])
            .expect_err("NET_RAW is not allowed");
        assert!(err.contains("ARP"), "{err}");
    }

    #[test]
    fn confinement_is_the_checked_limit_and_capabilities() {
        let confined = Confinement::of(&security(Some(64), &["KILL"]), &[]).expect("valid");
        assert_eq!(
            confined,
            Confinement {
                pids_limit: 64,
                capabilities: vec!["KILL".into()],
            }
        );
        assert!(Confinement::of(&security(Some(0), &[]), &[]).is_err());
        assert!(Confinement::of(&security(None, &["SYS_ADMIN"]), &[]).is_err());
    }
}
