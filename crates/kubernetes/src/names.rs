//! Names, labels and selectors, and the rules Kubernetes puts on them.
//! Pure and unit-tested.

use std::collections::BTreeMap;
use streamspace_protocol::{AgentId, SessionId, SessionSpec, labels};

/// Prefix of every session Deployment's name; the rest is the session id.
pub const NAME_PREFIX: &str = "streamspace-";
/// The session's container inside its pod.
pub const CONTAINER: &str = "session";

pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
pub const MANAGER: &str = "streamspace";
pub const APP_NAME: &str = "app.kubernetes.io/name";
pub const APP_INSTANCE: &str = "app.kubernetes.io/instance";
/// `app.kubernetes.io/name` of session Deployments and pods.
pub const SESSION_APP: &str = "streamspace-session";
/// `app.kubernetes.io/name` of persistent home claims.
pub const HOME_APP: &str = "streamspace-home";
/// `app.kubernetes.io/name` of sessions' image pull Secrets.
pub const PULL_SECRET_APP: &str = "streamspace-pull-secret";
/// Suffix of a session's image pull Secret's name (after the Deployment's).
const PULL_SECRET_SUFFIX: &str = "-pull";

/// Longest DNS label (RFC 1123), which a Deployment name should fit so its
/// pods' host names are not cut.
const DNS_LABEL_MAX: usize = 63;
const LABEL_VALUE_MAX: usize = 63;
const DNS_SUBDOMAIN_MAX: usize = 253;

/// The Deployment name of a session.
pub fn deployment_name(session_id: &SessionId) -> String {
    format!("{NAME_PREFIX}{session_id}")
}

/// The image pull Secret of a session: its Deployment's name and `-pull`
/// (a DNS subdomain whenever the Deployment's name is a DNS label).
pub fn pull_secret_name(session_id: &SessionId) -> String {
    format!("{}{PULL_SECRET_SUFFIX}", deployment_name(session_id))
}

/// Refuses session ids that cannot name a Deployment (and be a label value),
/// so the user sees our message instead of the apiserver's.
pub fn validate_session_id(session_id: &SessionId) -> Result<(), String> {
    let name = deployment_name(session_id);
    if is_dns_label(&name) {
        Ok(())
    } else {
        Err(format!(
            "session id {session_id:?} cannot name a Kubernetes Deployment: use at most {} \
             lowercase letters, digits or '-', ending with a letter or digit",
            DNS_LABEL_MAX - NAME_PREFIX.len()
        ))
    }
}

/// Refuses a home volume name that cannot name a PersistentVolumeClaim:
/// Kubernetes' DNS subdomain rule (`IsDNS1123Subdomain`), at most 253
/// characters of dot-separated parts, each lowercase letters, digits and
/// '-' between a letter or digit at either end. Unlike a DNS label, a part
/// may be longer than 63: id-keyed homes
/// (`streamspace-home-{user id}-{template id}`) are 90 characters.
pub fn validate_claim_name(volume: &str) -> Result<(), String> {
    let valid = !volume.is_empty()
        && volume.len() <= DNS_SUBDOMAIN_MAX
        && volume.split('.').all(is_subdomain_part);
    if valid {
        Ok(())
    } else {
        Err(format!(
            "home volume {volume:?} cannot name a Kubernetes PersistentVolumeClaim: use at most \
             {DNS_SUBDOMAIN_MAX} lowercase letters, digits, '-' and '.'"
        ))
    }
}

fn is_subdomain_part(part: &str) -> bool {
    let bytes = part.as_bytes();
    bytes
        .iter()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes.first().is_some_and(u8::is_ascii_alphanumeric)
        && bytes.last().is_some_and(u8::is_ascii_alphanumeric)
}

/// RFC 1123 label: 1 to 63 lowercase letters, digits or '-', starting and
/// ending with a letter or digit.
fn is_dns_label(text: &str) -> bool {
    let bytes = text.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= DNS_LABEL_MAX
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes.first().is_some_and(u8::is_ascii_alphanumeric)
        && bytes.last().is_some_and(u8::is_ascii_alphanumeric)
}

/// `raw` as a valid label value: at most 63 characters from `[A-Za-z0-9-_.]`,
/// starting and ending with a letter or digit. Usernames, template names and
/// agent ids already are; anything else is mapped the same way everywhere,
/// so selectors built from the same input still match.
pub fn label_value(raw: &str) -> String {
    let mapped: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '-'
            }
        })
        .take(LABEL_VALUE_MAX)
        .collect();
    mapped
        .trim_matches(|c: char| !c.is_ascii_alphanumeric())
        .to_owned()
}

/// Whether `name` may name a container port (an IANA service name: at most
/// 15 lowercase letters, digits and single '-', with at least one letter).
pub fn is_port_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 15
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes.iter().any(u8::is_ascii_lowercase)
        && !name.starts_with('-')
        && !name.ends_with('-')
        && !name.contains("--")
}

/// Selects every object this agent created.
pub fn agent_selector(agent_id: &AgentId) -> String {
    format!(
        "{MANAGED_BY}={MANAGER},{}={}",
        labels::AGENT,
        label_value(agent_id.as_str())
    )
}

/// Selects the pods of one session of this agent.
pub fn session_selector(agent_id: &AgentId, session_id: &SessionId) -> String {
    format!(
        "{},{}={session_id}",
        agent_selector(agent_id),
        labels::SESSION_ID
    )
}

/// The session id label of an object.
pub(crate) fn session_of(labels: &Option<BTreeMap<String, String>>) -> Option<SessionId> {
    labels
        .as_ref()?
        .get(labels::SESSION_ID)
        .map(SessionId::from)
}

/// Labels every object of a session carries; a restarted agent finds its
/// sessions by the agent label alone. Ids (UUIDs) and the seal (32
/// lowercase hex characters) are valid label values as they are.
pub fn session_labels(spec: &SessionSpec, agent_id: &AgentId) -> BTreeMap<String, String> {
    let mut session = BTreeMap::from([
        (MANAGED_BY.to_owned(), MANAGER.to_owned()),
        (APP_NAME.to_owned(), SESSION_APP.to_owned()),
        (APP_INSTANCE.to_owned(), deployment_name(&spec.session_id)),
        (labels::SESSION_ID.to_owned(), spec.session_id.to_string()),
        (labels::USER.to_owned(), label_value(&spec.user)),
        (labels::TEMPLATE.to_owned(), label_value(&spec.template)),
        (labels::AGENT.to_owned(), label_value(agent_id.as_str())),
    ]);
    // Control planes from before ids and seals send none: no empty labels.
    for (key, value) in [
        (labels::USER_ID, spec.user_id.as_str()),
        (labels::TEMPLATE_ID, spec.template_id.as_str()),
        (labels::SEAL, spec.seal.as_str()),
    ] {
        if !value.is_empty() {
            session.insert(key.to_owned(), label_value(value));
        }
    }
    session
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_ids_must_make_a_dns_label() {
        assert_eq!(deployment_name(&"abc".into()), "streamspace-abc");
        assert_eq!(pull_secret_name(&"abc".into()), "streamspace-abc-pull");
        for good in ["0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b", "a", "s-1"] {
            assert!(validate_session_id(&good.into()).is_ok(), "{good}");
        }
        let too_long = "a".repeat(52);
        for bad in ["", "A1", "a_b", "a.b", "ends-", "ä", too_long.as_str()] {
            let err = validate_session_id(&bad.into()).expect_err(bad);
            assert!(err.contains("cannot name a Kubernetes Deployment"), "{err}");
        }
        assert!(validate_session_id(&"a".repeat(51).into()).is_ok());
    }

    #[test]
    fn claim_names_are_dns_subdomains() {
        assert!(validate_claim_name("streamspace-home-alice-desktop").is_ok());
        assert!(validate_claim_name("a.b-c").is_ok());
        // Homes keyed by user and template ids: one 90-character part.
        let by_ids = "streamspace-home-0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b-\
                      0190a1b2-0000-7000-8000-000000000002";
        assert_eq!(by_ids.len(), 90);
        assert!(validate_claim_name(by_ids).is_ok());
        let too_long = "a".repeat(254);
        for bad in [
            "",
            "Home",
            "a..b",
            "-a",
            "a-",
            "a_b",
            "a/b",
            too_long.as_str(),
        ] {
            assert!(validate_claim_name(bad).is_err(), "{bad}");
        }
        assert!(validate_claim_name(&"a".repeat(253)).is_ok());
    }

    #[test]
    fn label_values_are_made_valid() {
        assert_eq!(label_value("alice"), "alice");
        assert_eq!(
            label_value("0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"),
            "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"
        );
        assert_eq!(label_value("Bob Smith@corp"), "Bob-Smith-corp");
        assert_eq!(label_value("-_x_-"), "x");
        assert_eq!(label_value(&"x".repeat(80)).len(), 63);
        assert_eq!(label_value("ääa"), "a");
    }

    #[test]
    fn port_names_follow_iana_rules() {
        for good in ["vnc", "http-8080", "a1"] {
            assert!(is_port_name(good), "{good}");
        }
        for bad in ["", "123", "a--b", "-vnc", "Vnc", "a-very-long-port-name"] {
            assert!(!is_port_name(bad), "{bad}");
        }
    }

    #[test]
    fn selectors_name_manager_agent_and_session() {
        assert_eq!(
            agent_selector(&"agent-1".into()),
            "app.kubernetes.io/managed-by=streamspace,io.streamspace.agent=agent-1"
        );
        assert_eq!(
            session_selector(&"agent-1".into(), &"s1".into()),
            "app.kubernetes.io/managed-by=streamspace,io.streamspace.agent=agent-1,\
             io.streamspace.session-id=s1"
        );
    }
}
