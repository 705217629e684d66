//! The Docker network sessions run on. VNC servers in session images have
//! no password (the control plane authenticates viewers), so a session that
//! could open a connection to another could watch and type into it. Session
//! containers therefore share one bridge network with inter-container
//! traffic off (`enable_icc=false`): the host, and so the agent, still
//! reaches every container at its address; containers cannot reach each
//! other, and Docker's isolation rules keep other networks out.
//!
//! The agent creates the network when it is missing and refuses, before it
//! runs anything, a network of that name that lets containers talk.

use crate::error::{DockerError, is_conflict};
use bollard::Docker;
use bollard::models::{Network, NetworkCreateRequest};
use bollard::query_parameters::ListNetworksOptionsBuilder;
use std::collections::HashMap;
use std::time::Duration;
use streamspace_agent::{PlatformError, PlatformResult};

/// The network session containers join unless the operator names another.
pub const DEFAULT_NETWORK: &str = "streamspace-sessions";
/// Marks the networks StreamSpace created (for people and `docker network ls`).
pub const NETWORK_LABEL: &str = "io.streamspace.network";
const ICC_OPTION: &str = "com.docker.network.bridge.enable_icc";

/// Why `network` cannot hold sessions, if it cannot.
pub fn unfit(network: &Network) -> Option<String> {
    let driver = network.driver.as_deref().unwrap_or_default();
    if driver != "bridge" {
        return Some(format!(
            "it uses the {driver:?} driver; sessions need a bridge network"
        ));
    }
    let icc = network.options.as_ref().and_then(|o| o.get(ICC_OPTION));
    // Docker reads the option with Go's ParseBool; absent means enabled.
    if !icc.is_some_and(|v| matches!(v.as_str(), "false" | "0" | "f" | "F" | "FALSE" | "False")) {
        return Some(format!(
            "inter-container traffic is on ({ICC_OPTION} is {}), so any session could connect \
             to any other's VNC server",
            icc.map_or("not set".to_owned(), |v| format!("{v:?}"))
        ));
    }
    if network.enable_ipv6 == Some(true) {
        return Some(
            "IPv6 is on, and Docker applies enable_icc=false to IPv6 only when its ip6tables \
             support is enabled"
                .to_owned(),
        );
    }
    None
}

/// The request that creates the sessions network.
pub fn create_request(name: &str) -> NetworkCreateRequest {
    NetworkCreateRequest {
        name: name.to_owned(),
        driver: Some("bridge".to_owned()),
        options: Some(HashMap::from([(ICC_OPTION.to_owned(), "false".to_owned())])),
        // Said, not left to the daemon's default: Docker 20.10 applies
        // enable_icc=false to IPv6 only with its ip6tables support on.
        enable_ipv6: Some(false),
        labels: Some(HashMap::from([(
            NETWORK_LABEL.to_owned(),
            "sessions".to_owned(),
        )])),
        ..Default::default()
    }
}

/// How long apart two listings of the network must agree before an agent
/// that created it trusts them. Engines before API 1.44 let networks share
/// a name, their duplicate check is not atomic (eight concurrent creates of
/// one name made eight networks on Debian's 20.10), and a network's
/// creation time is taken before it becomes visible: agents that create it
/// together must see each other's copies before they choose, and no
/// container starts by a name two networks share ("network … is
/// ambiguous"; ours join by id). Paid only by an agent that created the
/// network (or found copies): once per host, not at every start.
const SETTLE: Duration = Duration::from_millis(250);
/// Listings after which an agent chooses even if they keep changing.
const SETTLE_ROUNDS: usize = 8;

/// Makes sure the network `name` exists and isolates containers; returns
/// its id, which containers are attached by.
pub async fn ensure(docker: &Docker, endpoint: &str, name: &str) -> PlatformResult<String> {
    let mut found = named(docker, endpoint, name).await?;
    let created = found.is_empty();
    if created {
        create(docker, endpoint, name).await?;
    }
    if created || found.len() > 1 {
        found = settle(docker, endpoint, name, found).await?;
    }
    let network = keep_oldest(docker, name, found).await?;
    if let Some(why) = unfit(&network) {
        return Err(PlatformError::Invalid(format!(
            "Docker network {name:?} cannot hold sessions: {why}. Remove it (`docker network rm \
             {name}`) to let the agent create it, or name a bridge network created with \
             `-o {ICC_OPTION}=false` (--network)"
        )));
    }
    network.id.ok_or_else(|| {
        PlatformError::Unavailable(format!(
            "the Docker engine listed network {name} without an id"
        ))
    })
}

/// Creates the network; another agent having made it first is no error
/// (engines from API 1.44 refuse a second one of the name).
async fn create(docker: &Docker, endpoint: &str, name: &str) -> PlatformResult<()> {
    match docker.create_network(create_request(name)).await {
        Ok(created) => {
            tracing::info!(network = name, id = %created.id, "created the sessions network");
            Ok(())
        }
        Err(e) if is_conflict(&e) => Ok(()),
        Err(e) => Err(DockerError::new(endpoint, format!("create network {name}"), e).into()),
    }
}

/// Lists the networks of the name until two listings [`SETTLE`] apart
/// agree, so that copies other agents are making are seen before one is
/// kept.
async fn settle(
    docker: &Docker,
    endpoint: &str,
    name: &str,
    mut found: Vec<Network>,
) -> PlatformResult<Vec<Network>> {
    for _ in 0..SETTLE_ROUNDS {
        tokio::time::sleep(SETTLE).await;
        let again = named(docker, endpoint, name).await?;
        let same = ids(&again) == ids(&found);
        found = again;
        if same {
            break;
        }
    }
    Ok(found)
}

fn ids(networks: &[Network]) -> Vec<Option<&str>> {
    let mut ids: Vec<Option<&str>> = networks.iter().map(|n| n.id.as_deref()).collect();
    ids.sort_unstable();
    ids
}

/// The oldest network of the name, once the younger copies StreamSpace made
/// are removed. Oldest, so that an agent that found the network and may
/// already use it never loses it; only a copy made at the same moment by
/// another starting agent goes, and that agent keeps the oldest too.
async fn keep_oldest(
    docker: &Docker,
    name: &str,
    mut found: Vec<Network>,
) -> PlatformResult<Network> {
    // A time the engine wrote that does not parse sorts last: never keep
    // an unknown over a known age.
    found.sort_by_cached_key(|n| {
        let created = n.created.as_deref().and_then(creation_time);
        (created.is_none(), created, n.id.clone())
    });
    let mut found = found.into_iter();
    let kept = found.next().ok_or_else(|| {
        PlatformError::Unavailable(format!(
            "network {name} was removed while the agent was creating it; try again"
        ))
    })?;
    for copy in found {
        let id = copy.id.unwrap_or_default();
        let ours = copy
            .labels
            .as_ref()
            .is_some_and(|l| l.contains_key(NETWORK_LABEL));
        if !ours {
            return Err(PlatformError::Invalid(format!(
                "more than one Docker network is named {name:?}: remove the one StreamSpace \
                 did not create ({id}), or name another network (--network)"
            )));
        }
        match docker.remove_network(&id).await {
            Ok(()) => {
                tracing::info!(network = name, %id, "removed a younger network of the same name")
            }
            Err(e) => {
                tracing::debug!(network = name, %id, error = %e, "a younger network of the same name is already gone")
            }
        }
    }
    Ok(kept)
}

/// Docker's creation time, RFC 3339 with the engine's own offset
/// (`2026-12-01T14:59:07.3495Z`, `…15:59:07.3495+01:00`), as an instant.
fn creation_time(created: &str) -> Option<jiff::Timestamp> {
    created.parse().ok()
}

/// Networks called exactly `name` (Docker's name filter also matches parts).
async fn named(docker: &Docker, endpoint: &str, name: &str) -> PlatformResult<Vec<Network>> {
    let filters = HashMap::from([("name", vec![name.to_owned()])]);
    let options = ListNetworksOptionsBuilder::new().filters(&filters).build();
    let networks = docker
        .list_networks(Some(options))
        .await
        .map_err(|e| DockerError::new(endpoint, "list networks", e))?;
    Ok(networks
        .into_iter()
        .filter(|n| n.name.as_deref() == Some(name))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn network(driver: &str, options: &[(&str, &str)], ipv6: Option<bool>) -> Network {
        Network {
            driver: Some(driver.to_owned()),
            options: Some(
                options
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
            ),
            enable_ipv6: ipv6,
            ..Default::default()
        }
    }

    #[test]
    fn a_bridge_without_inter_container_traffic_is_fit() {
        for off in ["false", "0", "False"] {
            assert_eq!(unfit(&network("bridge", &[(ICC_OPTION, off)], None)), None);
        }
        assert_eq!(
            unfit(&network("bridge", &[(ICC_OPTION, "false")], Some(false))),
            None
        );
    }

    #[test]
    fn networks_that_let_sessions_talk_are_unfit() {
        // Docker's default bridge: icc on.
        let default_bridge = network("bridge", &[(ICC_OPTION, "true")], Some(false));
        let why = unfit(&default_bridge).expect("icc on");
        assert!(why.contains("inter-container traffic is on"), "{why}");
        let why = unfit(&network("bridge", &[], None)).expect("icc unset");
        assert!(why.contains("not set"), "{why}");
        let why = unfit(&network("host", &[], None)).expect("host network");
        assert!(why.contains("\"host\" driver"), "{why}");
        let why = unfit(&network("overlay", &[(ICC_OPTION, "false")], None)).expect("overlay");
        assert!(why.contains("bridge network"), "{why}");
        let why = unfit(&network("bridge", &[(ICC_OPTION, "false")], Some(true))).expect("v6");
        assert!(why.contains("IPv6"), "{why}");
    }

    #[test]
    fn creation_times_sort_by_time_whatever_their_trimmed_fractions() {
        let mut times = vec![
            "2026-12-01T14:59:07.3495Z",
            "2026-12-01T14:59:07.349568631Z",
            "2026-12-01T14:59:07Z",
            "2026-12-01T14:59:06.9Z",
        ];
        times.sort_by_key(|t| creation_time(t));
        assert_eq!(
            times,
            [
                "2026-12-01T14:59:06.9Z",
                "2026-12-01T14:59:07Z",
                "2026-12-01T14:59:07.3495Z",
                "2026-12-01T14:59:07.349568631Z",
            ]
        );
        assert_eq!(creation_time("garbage"), None);
    }

    /// An engine in another time zone writes its offset: 15:59:07+01:00 is
    /// a second before 14:59:08Z, whatever the digits say.
    #[test]
    fn creation_times_in_other_time_zones_sort_by_time() {
        let mut times = vec!["2026-12-01T14:59:08Z", "2026-12-01T15:59:07.5+01:00"];
        times.sort_by_key(|t| creation_time(t));
        assert_eq!(
            times,
            ["2026-12-01T15:59:07.5+01:00", "2026-12-01T14:59:08Z"]
        );
    }

    #[test]
    fn the_created_network_is_fit_and_labelled() {
        let request = create_request("n1");
        let created = Network {
            name: Some(request.name.clone()),
            driver: request.driver.clone(),
            options: request.options.clone(),
            enable_ipv6: request.enable_ipv6,
            ..Default::default()
        };
        assert_eq!(unfit(&created), None);
        // Said, not left to the engine's default (a daemon may default to
        // IPv6 on, and enable_icc=false would not cover it).
        assert_eq!(request.enable_ipv6, Some(false));
        assert_eq!(request.labels.expect("labels")[NETWORK_LABEL], "sessions");
    }
}
