//! What an existing container must be before it is started again (a start
//! of a session whose container exists, a wake): confined, and on the
//! sessions network as it is now. Pure: the rules are unit-tested here;
//! `lifecycle.rs` applies them.
//!
//! - **Confinement cannot be added to a container**: `no-new-privileges`
//!   and the dropped capabilities are fixed when it is created. A container
//!   without them (created before sessions were isolated) is refused, not
//!   recreated: recreating would drop its writable layer just as terminate
//!   and start do, but behind the user's back and with a config rebuilt
//!   from an inspection, while terminate and start give a session made from
//!   today's template; its home volume survives either way.
//! - **Networks can be changed while it is stopped**: one that lost its
//!   network to `docker network prune` (Docker then refuses to start it,
//!   "network … not found") or sits on another network (Docker's default
//!   bridge, an operator's earlier `--network`) is moved to the sessions
//!   network first.

use bollard::models::ContainerInspectResponse;
use streamspace_agent::confinement;
use streamspace_protocol::SessionSecurity;

/// What the container lacks of the confinement every session gets, as
/// words for a person; empty when it is confined. `allowed` are the refused
/// capabilities this agent's operator allows now: a container given one
/// while it was allowed does not keep it after the allowance is withdrawn.
pub fn missing_confinement(
    container: &ContainerInspectResponse,
    allowed: &[String],
) -> Vec<&'static str> {
    let host = container.host_config.clone().unwrap_or_default();
    let mut missing = Vec::new();
    if host.privileged == Some(true) {
        missing.push("privileged mode off");
    }
    // Docker accepts `no-new-privileges`, `…:true` and `…=true`.
    let no_new_privileges = host.security_opt.iter().flatten().any(|opt| {
        matches!(
            opt.as_str(),
            "no-new-privileges" | "no-new-privileges:true" | "no-new-privileges=true"
        )
    });
    if !no_new_privileges {
        missing.push("no-new-privileges");
    }
    let drops_all = host
        .cap_drop
        .iter()
        .flatten()
        .any(|cap| cap.eq_ignore_ascii_case("ALL"));
    if !drops_all {
        missing.push("every capability dropped");
    }
    if host.pids_limit.is_none_or(|limit| limit <= 0) {
        missing.push("a pids limit");
    }
    // Docker lists added capabilities as they were given, or (since 20.10)
    // with the `CAP_` prefix; templates name them without.
    let added = SessionSecurity {
        capabilities: (host.cap_add.iter().flatten())
            .map(|cap| cap.strip_prefix("CAP_").unwrap_or(cap).to_owned())
            .collect(),
        ..SessionSecurity::default()
    };
    if confinement::capabilities(&added, allowed).is_err() {
        missing.push("only capabilities this agent allows");
    }
    missing
}

/// How to bring a stopped container onto the sessions network.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Rewiring {
    /// Networks (by the names the container lists them under) to leave:
    /// gone, or not the sessions network.
    pub leave: Vec<String>,
    /// Whether it must join the sessions network.
    pub join: bool,
}

/// What to change so that the container is on the sessions network called
/// `name`, whose id is now `id`, and on no other. A container that was
/// never started lists its network by name without an id yet; Docker
/// resolves that name when it starts.
pub fn rewiring(container: &ContainerInspectResponse, name: &str, id: &str) -> Rewiring {
    let networks = container
        .network_settings
        .as_ref()
        .and_then(|settings| settings.networks.clone())
        .unwrap_or_default();
    let mut rewiring = Rewiring {
        join: true,
        ..Rewiring::default()
    };
    for (listed_as, endpoint) in networks {
        let attached_to = endpoint.network_id.unwrap_or_default();
        let current = attached_to == id || (attached_to.is_empty() && listed_as == name);
        if current {
            rewiring.join = false;
        } else {
            rewiring.leave.push(listed_as);
        }
    }
    rewiring.leave.sort();
    rewiring
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard::models::{EndpointSettings, HostConfig, NetworkSettings};

    fn confined() -> HostConfig {
        HostConfig {
            security_opt: Some(vec!["no-new-privileges".into()]),
            cap_drop: Some(vec!["ALL".into()]),
            pids_limit: Some(2048),
            ..Default::default()
        }
    }

    fn container(host: HostConfig, networks: &[(&str, &str)]) -> ContainerInspectResponse {
        let endpoint = |id: &str| EndpointSettings {
            network_id: Some(id.to_owned()),
            ..Default::default()
        };
        ContainerInspectResponse {
            host_config: Some(host),
            network_settings: Some(NetworkSettings {
                networks: Some(
                    networks
                        .iter()
                        .map(|(name, id)| ((*name).to_owned(), endpoint(id)))
                        .collect(),
                ),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn a_container_from_before_isolation_lacks_its_confinement() {
        assert!(missing_confinement_now(&container(confined(), &[])).is_empty());
        let written_otherwise = HostConfig {
            security_opt: Some(vec![
                "label=disable".into(),
                "no-new-privileges:true".into(),
            ]),
            cap_drop: Some(vec!["all".into()]),
            ..confined()
        };
        assert!(missing_confinement_now(&container(written_otherwise, &[])).is_empty());
        // What Docker makes of a plain `docker run`.
        let plain = HostConfig {
            pids_limit: Some(0),
            ..HostConfig::default()
        };
        assert_eq!(
            missing_confinement_now(&container(plain, &[])),
            [
                "no-new-privileges",
                "every capability dropped",
                "a pids limit"
            ]
        );
        let unlimited = HostConfig {
            pids_limit: Some(-1),
            ..confined()
        };
        assert_eq!(
            missing_confinement_now(&container(unlimited, &[])),
            ["a pids limit"]
        );
    }

    /// Without any capability allowed.
    fn missing_confinement_now(container: &ContainerInspectResponse) -> Vec<&'static str> {
        missing_confinement(container, &[])
    }

    #[test]
    fn a_privileged_container_or_one_with_refused_capabilities_is_not_confined() {
        let privileged = HostConfig {
            privileged: Some(true),
            ..confined()
        };
        assert_eq!(
            missing_confinement_now(&container(privileged, &[])),
            ["privileged mode off"]
        );
        // Given back as templates may (Docker 20.10+ lists them with CAP_).
        let ordinary = HostConfig {
            cap_add: Some(vec!["CAP_CHOWN".into(), "SETUID".into()]),
            ..confined()
        };
        assert!(missing_confinement_now(&container(ordinary, &[])).is_empty());
        // Created while the operator allowed SYS_ADMIN; not any more.
        let sys_admin = HostConfig {
            cap_add: Some(vec!["CAP_SYS_ADMIN".into()]),
            ..confined()
        };
        let sys_admin = container(sys_admin, &[]);
        assert_eq!(
            missing_confinement_now(&sys_admin),
            ["only capabilities this agent allows"]
        );
        assert!(missing_confinement(&sys_admin, &["SYS_ADMIN".into()]).is_empty());
    }

    #[test]
    fn a_container_on_the_sessions_network_stays() {
        let on_it = container(confined(), &[("sessions", "id-2")]);
        assert_eq!(rewiring(&on_it, "sessions", "id-2"), Rewiring::default());
        // Created and never started: listed by name, no id yet.
        let created = container(confined(), &[("sessions", "")]);
        assert_eq!(rewiring(&created, "sessions", "id-2"), Rewiring::default());
    }

    #[test]
    fn a_container_whose_network_is_gone_or_another_moves() {
        // `docker network prune`, then the network made again: same name,
        // new id.
        let pruned = container(confined(), &[("sessions", "id-1")]);
        let expected = Rewiring {
            leave: vec!["sessions".into()],
            join: true,
        };
        assert_eq!(rewiring(&pruned, "sessions", "id-2"), expected);
        let elsewhere = container(confined(), &[("bridge", "b"), ("sessions", "id-2")]);
        let expected = Rewiring {
            leave: vec!["bridge".into()],
            join: false,
        };
        assert_eq!(rewiring(&elsewhere, "sessions", "id-2"), expected);
        let nowhere = container(confined(), &[]);
        assert_eq!(
            rewiring(&nowhere, "sessions", "id-2"),
            Rewiring {
                leave: Vec::new(),
                join: true,
            }
        );
    }
}
