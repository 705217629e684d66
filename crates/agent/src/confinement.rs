//! What every platform applies to confine a session beyond its resources
//! ([`SessionSecurity`]), checked once here so Docker and Kubernetes refuse
//! the same specs with the same words.

use streamspace_protocol::{CAPABILITIES, DEFAULT_PIDS_LIMIT, SessionSecurity};

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
/// list cannot be applied.
pub fn capabilities(security: &SessionSecurity) -> Result<Vec<String>, String> {
    let mut added: Vec<String> = Vec::with_capacity(security.capabilities.len());
    for name in &security.capabilities {
        if !CAPABILITIES.contains(&name.as_str()) {
            let hint = match name.strip_prefix("CAP_") {
                Some(bare) if CAPABILITIES.contains(&bare) => format!(" (write {bare:?})"),
                _ => String::new(),
            };
            return Err(format!(
                "unknown Linux capability {name:?}{hint}: name capabilities without the CAP_ \
                 prefix, in capitals, e.g. CHOWN, SETUID, SETGID"
            ));
        }
        if !added.contains(name) {
            added.push(name.clone());
        }
    }
    Ok(added)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn security(pids_limit: Option<u32>, capabilities: &[&str]) -> SessionSecurity {
        SessionSecurity {
            pids_limit,
            capabilities: capabilities.iter().map(|c| (*c).to_owned()).collect(),
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
        let added = capabilities(&security(None, &["CHOWN", "SETUID", "CHOWN"])).expect("valid");
        assert_eq!(added, ["CHOWN", "SETUID"]);
        assert_eq!(capabilities(&security(None, &[])), Ok(Vec::new()));
        let err = capabilities(&security(None, &["CAP_CHOWN"])).expect_err("prefixed");
        assert!(err.contains("write \"CHOWN\""), "{err}");
        for bad in ["ALL", "chown", "FLY", ""] {
            let err = capabilities(&security(None, &[bad])).expect_err(bad);
            assert!(err.contains("unknown Linux capability"), "{err}");
        }
    }
}
