//! Translation of a platform-neutral [`SessionSpec`] into the Docker objects
//! that run it: the container's create body and its home volume. Pure: no
//! Docker calls here, so every rule is unit-tested.

use bollard::models::{
    ContainerCreateBody, ContainerInspectResponse, DeviceRequest, HostConfig, HostConfigLogConfig,
    Mount, MountType, PortBinding, PortMap, RestartPolicy, RestartPolicyNameEnum,
    VolumeCreateRequest,
};
use std::collections::HashMap;
use std::net::IpAddr;
use streamspace_agent::confinement::Confinement;
use streamspace_protocol::{AgentId, SessionId, SessionSpec, labels};

/// Prefix of every session container's name; the rest is the session id.
pub const CONTAINER_PREFIX: &str = "streamspace-";

/// Seconds Docker waits after SIGTERM before SIGKILL, for our own stops and
/// for a `docker stop` typed by an operator. A desktop has nothing to flush
/// that takes longer, and a short stop keeps hibernation quick.
pub const STOP_TIMEOUT_SECS: i32 = 5;

/// Where Docker keeps a session's console output (json-file, the engine's
/// default), at most this many files of this size: a desktop that writes
/// without end (`yes > /proc/1/fd/1`) would otherwise fill the host's disk.
/// `docker logs` and the session's logs in StreamSpace read them as before.
pub const LOG_MAX_SIZE: &str = "10m";
pub const LOG_MAX_FILES: &str = "3";

/// The writable scratch space a read-only root gets, as tmpfs mounts (in
/// memory, counted against the session's limit): where images write at run
/// time. `/tmp` is everyone's, as on any Linux; `/run` is root's.
pub const SCRATCH_TMPFS: [(&str, &str); 2] = [
    ("/tmp", "rw,nosuid,nodev,mode=1777"),
    ("/run", "rw,nosuid,nodev,mode=0755"),
];

/// The label listing the GPUs (device indexes, `"0,1"`) a container was
/// given, so the next session is given others without inspecting each.
pub const GPUS_LABEL: &str = "io.streamspace.gpus";

/// The runtime that NVIDIA's Container Toolkit registers with the engine.
pub const NVIDIA_RUNTIME: &str = "nvidia";

/// What the platform adds to a spec when it builds a container.
#[derive(Debug, Clone)]
pub struct ContainerSettings<'a> {
    pub agent_id: &'a AgentId,
    /// Host address session ports are published on.
    pub publish_host: IpAddr,
    /// Id (or name) of the Docker network the container joins: one with
    /// inter-container traffic off (`network.rs`).
    pub network: &'a str,
    /// The volume mounted as the home ([`streamspace_agent::homes::prepare`]);
    /// the spec's own when `None`.
    pub home_volume: Option<&'a str>,
    /// Bound the console output kept on disk ([`LOG_MAX_SIZE`]): set when
    /// the engine logs to json-file by default, which keeps everything. Any
    /// other driver is the operator's choice (journald, syslog, local),
    /// with its own retention, and is left alone.
    pub bound_json_logs: bool,
    /// The GPUs (device indexes) the session is given; as many as it asks.
    pub gpus: &'a [String],
    /// The engine has the `nvidia` runtime: GPU sessions run with it.
    pub nvidia_runtime: bool,
}

/// The container name of a session.
pub fn container_name(session_id: &SessionId) -> String {
    format!("{CONTAINER_PREFIX}{session_id}")
}

/// Refuses session ids Docker cannot put in a container name, so the user
/// sees our message instead of the engine's.
pub fn validate_session_id(session_id: &SessionId) -> Result<(), String> {
    let mut chars = session_id.as_str().chars();
    let valid_first = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    let valid_rest = chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if valid_first && valid_rest && session_id.as_str().len() <= 200 {
        Ok(())
    } else {
        Err(format!(
            "session id {session_id:?} cannot name a Docker container: use letters, digits, '_', '.' or '-', starting with a letter or digit"
        ))
    }
}

/// The Docker port key (`"5901/tcp"`) of a container port.
pub fn port_key(port: u16) -> String {
    format!("{port}/tcp")
}

/// Labels naming whose a container or volume is: user and template (names
/// and, from control planes that send them, ids) and the agent.
pub fn owner_labels(spec: &SessionSpec, agent_id: &AgentId) -> HashMap<String, String> {
    let mut owner = HashMap::from([
        (labels::USER.to_owned(), spec.user.clone()),
        (labels::TEMPLATE.to_owned(), spec.template.clone()),
        (labels::AGENT.to_owned(), agent_id.to_string()),
    ]);
    for (key, id) in [
        (labels::USER_ID, spec.user_id.as_str()),
        (labels::TEMPLATE_ID, spec.template_id.as_str()),
    ] {
        if !id.is_empty() {
            owner.insert(key.to_owned(), id.to_owned());
        }
    }
    owner
}

/// Labels that make a session container rediscoverable by its agent, with
/// the control plane's seal, which lets a control plane that lost its
/// record adopt the session again, and no agent invent one.
pub fn session_labels(spec: &SessionSpec, agent_id: &AgentId) -> HashMap<String, String> {
    let mut session = owner_labels(spec, agent_id);
    session.insert(labels::SESSION_ID.to_owned(), spec.session_id.to_string());
    if !spec.seal.is_empty() {
        session.insert(labels::SEAL.to_owned(), spec.seal.clone());
    }
    session
}

/// The create body for a session's container, confined: no privileges to
/// gain (setuid binaries do not elevate), every capability dropped but
/// those `confinement` gives back (checked with [`Confinement::of`] before
/// anything is created), and its pids limit.
pub fn container_config(
    spec: &SessionSpec,
    confinement: &Confinement,
    settings: &ContainerSettings<'_>,
) -> ContainerCreateBody {
    let capabilities = &confinement.capabilities;
    let env = spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let exposed_ports = spec.ports.iter().map(|p| port_key(p.port)).collect();
    let port_bindings: PortMap = spec
        .ports
        .iter()
        .map(|p| {
            let binding = PortBinding {
                host_ip: Some(settings.publish_host.to_string()),
                // Empty: Docker picks a free host port, so sessions never collide.
                host_port: Some(String::new()),
            };
            (port_key(p.port), Some(vec![binding]))
        })
        .collect();
    let mounts = mounts(spec, settings.home_volume);
    let with_gpus = !settings.gpus.is_empty();
    let host_config = HostConfig {
        nano_cpus: spec
            .resources
            .cpu
            .map(|cpu| saturating_i64(cpu.millicores().saturating_mul(1_000_000))),
        memory: spec.resources.memory.map(|m| saturating_i64(m.bytes())),
        port_bindings: Some(port_bindings),
        mounts: (!mounts.is_empty()).then_some(mounts),
        shm_size: spec.shm_size.map(|m| saturating_i64(m.bytes())),
        readonly_rootfs: spec.security.read_only_root_filesystem.then_some(true),
        tmpfs: spec.security.read_only_root_filesystem.then(|| {
            (SCRATCH_TMPFS.iter())
                .map(|(path, options)| ((*path).to_owned(), (*options).to_owned()))
                .collect()
        }),
        device_requests: with_gpus.then(|| vec![gpu_request(settings.gpus)]),
        runtime: (with_gpus && settings.nvidia_runtime).then(|| NVIDIA_RUNTIME.to_owned()),
        // The control plane decides what runs; Docker must not restart a
        // session it stopped or that died.
        restart_policy: Some(RestartPolicy {
            name: Some(RestartPolicyNameEnum::NO),
            maximum_retry_count: None,
        }),
        network_mode: Some(settings.network.to_owned()),
        security_opt: Some(vec!["no-new-privileges".to_owned()]),
        cap_drop: Some(vec!["ALL".to_owned()]),
        cap_add: (!capabilities.is_empty()).then(|| capabilities.clone()),
        pids_limit: Some(i64::from(confinement.pids_limit)),
        log_config: settings.bound_json_logs.then(bounded_json_logs),
        ..Default::default()
    };
    let mut labels = session_labels(spec, settings.agent_id);
    if with_gpus {
        labels.insert(GPUS_LABEL.to_owned(), settings.gpus.join(","));
    }
    ContainerCreateBody {
        image: Some(spec.image.clone()),
        env: Some(env),
        exposed_ports: Some(exposed_ports),
        labels: Some(labels),
        user: spec.security.user.clone(),
        stop_timeout: Some(i64::from(STOP_TIMEOUT_SECS)),
        host_config: Some(host_config),
        ..Default::default()
    }
}

/// The home (`home_volume` when the platform chose another than the
/// spec's) and the shared volumes, read-only unless the template said.
fn mounts(spec: &SessionSpec, home_volume: Option<&str>) -> Vec<Mount> {
    let home = spec.home.as_ref().map(|home| Mount {
        target: Some(home.path.clone()),
        source: Some(home_volume.unwrap_or(&home.volume).to_owned()),
        typ: Some(MountType::VOLUME),
        ..Default::default()
    });
    let shared = spec.volumes.iter().map(|volume| Mount {
        target: Some(volume.path.clone()),
        source: Some(volume.source.clone()),
        typ: Some(MountType::VOLUME),
        read_only: Some(volume.read_only),
        ..Default::default()
    });
    home.into_iter().chain(shared).collect()
}

/// NVIDIA GPUs by index: Docker's `count` would give every session the
/// first ones, so the platform picks free ones itself.
fn gpu_request(devices: &[String]) -> DeviceRequest {
    DeviceRequest {
        driver: Some(NVIDIA_RUNTIME.to_owned()),
        count: None,
        device_ids: Some(devices.to_vec()),
        capabilities: Some(vec![vec!["gpu".to_owned()]]),
        options: None,
    }
}

fn bounded_json_logs() -> HostConfigLogConfig {
    HostConfigLogConfig {
        typ: Some("json-file".to_owned()),
        config: Some(HashMap::from([
            ("max-size".to_owned(), LOG_MAX_SIZE.to_owned()),
            ("max-file".to_owned(), LOG_MAX_FILES.to_owned()),
        ])),
    }
}

/// The create request for a session's persistent home volume. It carries no
/// session id: the volume belongs to a user and template and outlives
/// sessions.
pub fn volume_request(spec: &SessionSpec, agent_id: &AgentId) -> Option<VolumeCreateRequest> {
    let home = spec.home.as_ref()?;
    Some(VolumeCreateRequest {
        name: Some(home.volume.clone()),
        labels: Some(owner_labels(spec, agent_id)),
        ..Default::default()
    })
}

/// The host port Docker published for container `port`, preferring the
/// binding on `publish_host`.
pub fn published_port(
    container: &ContainerInspectResponse,
    port: u16,
    publish_host: IpAddr,
) -> Option<u16> {
    let bindings = container
        .network_settings
        .as_ref()?
        .ports
        .as_ref()?
        .get(&port_key(port))?
        .as_ref()?;
    let on_host = |b: &&PortBinding| {
        b.host_ip
            .as_deref()
            .and_then(|ip| ip.parse::<IpAddr>().ok())
            .is_some_and(|ip| ip == publish_host)
    };
    bindings
        .iter()
        .find(on_host)
        .or_else(|| bindings.first())?
        .host_port
        .as_deref()?
        .parse()
        .ok()
}

/// The container's own address on the network called `network` (on the
/// default bridge, or the first network by name, when `None`), for dialing
/// it directly.
pub fn container_address(
    container: &ContainerInspectResponse,
    network: Option<&str>,
) -> Option<IpAddr> {
    let networks = container.network_settings.as_ref()?.networks.as_ref()?;
    let address =
        |name: &str| -> Option<IpAddr> { networks.get(name)?.ip_address.as_deref()?.parse().ok() };
    if let Some(name) = network {
        return address(name);
    }
    let mut names: Vec<&String> = networks.keys().collect();
    names.sort();
    address("bridge").or_else(|| names.into_iter().find_map(|name| address(name)))
}

/// The value of one label of a container or volume.
pub fn label_of<'a>(labels: Option<&'a HashMap<String, String>>, key: &str) -> Option<&'a str> {
    labels?.get(key).map(String::as_str)
}

fn saturating_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard::models::{EndpointSettings, NetworkSettings};
    use streamspace_protocol::{PortProtocol, PortSpec, Resources, SharedVolume};

    fn spec() -> SessionSpec {
        SessionSpec::fixture("s-1")
            .with_env("GEOMETRY", "1280x800")
            .with_limits("1500m", "512Mi")
            .with_home("streamspace-home-alice-desktop")
    }

    fn agent() -> AgentId {
        "agent-7".into()
    }

    fn settings() -> ContainerSettings<'static> {
        static AGENT: std::sync::LazyLock<AgentId> = std::sync::LazyLock::new(agent);
        ContainerSettings {
            agent_id: &AGENT,
            publish_host: IpAddr::from([127, 0, 0, 1]),
            network: "net-id",
            home_volume: None,
            bound_json_logs: true,
            gpus: &[],
            nvidia_runtime: false,
        }
    }

    fn confined(spec: &SessionSpec) -> Confinement {
        Confinement::of(&spec.security, &[]).expect("a valid spec")
    }

    fn config(spec: &SessionSpec) -> ContainerCreateBody {
        container_config(spec, &confined(spec), &settings())
    }

    fn host_config(spec: &SessionSpec) -> HostConfig {
        config(spec).host_config.expect("host config")
    }

    #[test]
    fn labels_identify_session_owner_template_and_agent() {
        let labels = config(&spec()).labels.expect("labels");
        assert_eq!(labels[labels::SESSION_ID], "s-1");
        assert_eq!(labels[labels::USER], "alice");
        assert_eq!(labels[labels::TEMPLATE], "desktop");
        assert_eq!(labels[labels::AGENT], "agent-7");
        // A spec from a control plane without ids or seals has none.
        for absent in [labels::USER_ID, labels::TEMPLATE_ID, labels::SEAL] {
            assert!(!labels.contains_key(absent), "{absent}");
        }
    }

    #[test]
    fn ids_and_the_seal_are_labels_and_only_containers_carry_the_seal() {
        let mut spec = spec();
        spec.user_id = "0190a1b2-0000-7000-8000-00000000000a".into();
        spec.template_id = "0190a1b2-0000-7000-8000-00000000000b".into();
        spec.seal = "0123456789abcdef0123456789abcdef".into();
        let labels = config(&spec).labels.expect("labels");
        assert_eq!(labels[labels::USER_ID], spec.user_id);
        assert_eq!(labels[labels::TEMPLATE_ID], spec.template_id);
        assert_eq!(labels[labels::SEAL], spec.seal);
        let origin =
            streamspace_protocol::SessionOrigin::from_labels(|k| labels.get(k).map(String::as_str))
                .expect("origin");
        assert_eq!(origin.seal.as_deref(), Some(spec.seal.as_str()));
        let volume = volume_request(&spec, &agent()).expect("volume");
        let volume_labels = volume.labels.expect("volume labels");
        assert_eq!(volume_labels[labels::USER_ID], spec.user_id);
        assert_eq!(volume_labels[labels::TEMPLATE_ID], spec.template_id);
        assert!(!volume_labels.contains_key(labels::SEAL));
        assert!(!volume_labels.contains_key(labels::SESSION_ID));
    }

    #[test]
    fn containers_are_confined_by_default() {
        let host = host_config(&spec());
        assert_eq!(
            host.security_opt,
            Some(vec!["no-new-privileges".to_owned()])
        );
        assert_eq!(host.cap_drop, Some(vec!["ALL".to_owned()]));
        assert_eq!(host.cap_add, None);
        assert_eq!(
            host.pids_limit,
            Some(i64::from(streamspace_protocol::DEFAULT_PIDS_LIMIT))
        );
        assert_eq!(host.network_mode.as_deref(), Some("net-id"));
        assert_eq!(host.privileged, None);
    }

    #[test]
    fn the_spec_sets_the_pids_limit_and_gives_capabilities_back() {
        let mut spec = spec();
        spec.security.pids_limit = Some(300);
        spec.security.capabilities = vec!["CHOWN".into(), "SETUID".into(), "SETGID".into()];
        let host = host_config(&spec);
        assert_eq!(host.pids_limit, Some(300));
        assert_eq!(host.cap_drop, Some(vec!["ALL".to_owned()]));
        assert_eq!(host.cap_add, Some(spec.security.capabilities.clone()));
    }

    #[test]
    fn image_env_and_limits_come_from_the_spec() {
        let config = config(&spec());
        assert_eq!(config.image.as_deref(), Some("streamspace/desktop:local"));
        assert_eq!(config.env, Some(vec!["GEOMETRY=1280x800".to_owned()]));
        assert_eq!(config.stop_timeout, Some(5));
        let host = config.host_config.expect("host config");
        assert_eq!(host.nano_cpus, Some(1_500_000_000));
        assert_eq!(host.memory, Some(512 << 20));
        let restart = host.restart_policy.expect("restart policy");
        assert_eq!(restart.name, Some(RestartPolicyNameEnum::NO));
    }

    #[test]
    fn console_output_on_disk_is_bounded_unless_the_operator_chose_a_driver() {
        let logs = host_config(&spec()).log_config.expect("log config");
        assert_eq!(logs.typ.as_deref(), Some("json-file"));
        let options = logs.config.expect("options");
        assert_eq!(options["max-size"], LOG_MAX_SIZE);
        assert_eq!(options["max-file"], LOG_MAX_FILES);
        let journald = ContainerSettings {
            bound_json_logs: false,
            ..settings()
        };
        let host = container_config(&spec(), &confined(&spec()), &journald).host_config;
        assert_eq!(host.expect("host config").log_config, None);
    }

    #[test]
    fn no_resources_means_no_limits() {
        let mut spec = spec();
        spec.resources = Resources::default();
        let host = host_config(&spec);
        assert_eq!(host.nano_cpus, None);
        assert_eq!(host.memory, None);
    }

    #[test]
    fn every_port_is_published_on_the_publish_host_with_a_random_port() {
        let mut spec = spec();
        spec.ports
            .push(PortSpec::new("web", 8080, PortProtocol::Http));
        let config = config(&spec);
        let exposed = config.exposed_ports.expect("exposed ports");
        assert_eq!(exposed, vec!["5901/tcp".to_owned(), "8080/tcp".to_owned()]);
        let bindings = config
            .host_config
            .and_then(|h| h.port_bindings)
            .expect("port bindings");
        for key in ["5901/tcp", "8080/tcp"] {
            let binding = bindings[key].as_ref().expect("binding list");
            assert_eq!(binding.len(), 1);
            assert_eq!(binding[0].host_ip.as_deref(), Some("127.0.0.1"));
            assert_eq!(binding[0].host_port.as_deref(), Some(""));
        }
    }

    #[test]
    fn home_is_a_named_volume_mount() {
        let host = host_config(&spec());
        let mounts = host.mounts.expect("mounts");
        assert_eq!(mounts.len(), 1);
        assert_eq!(mounts[0].typ, Some(MountType::VOLUME));
        assert_eq!(
            mounts[0].source.as_deref(),
            Some("streamspace-home-alice-desktop")
        );
        assert_eq!(mounts[0].target.as_deref(), Some("/home/user"));

        let volume = volume_request(&spec(), &agent()).expect("volume request");
        assert_eq!(
            volume.name.as_deref(),
            Some("streamspace-home-alice-desktop")
        );
        let labels = volume.labels.expect("volume labels");
        assert_eq!(labels[labels::USER], "alice");
        assert_eq!(labels[labels::AGENT], "agent-7");
        assert!(!labels.contains_key(labels::SESSION_ID));
    }

    #[test]
    fn no_home_means_no_mount_and_no_volume() {
        let mut spec = spec();
        spec.home = None;
        let host = host_config(&spec);
        assert_eq!(host.mounts, None);
        assert!(volume_request(&spec, &agent()).is_none());
    }

    #[test]
    fn a_legacy_home_is_mounted_in_place_of_the_new_one() {
        let settings = ContainerSettings {
            home_volume: Some("streamspace-home-alice-desktop-old"),
            ..settings()
        };
        let host = container_config(&spec(), &confined(&spec()), &settings)
            .host_config
            .expect("host config");
        let mounts = host.mounts.expect("mounts");
        assert_eq!(
            mounts[0].source.as_deref(),
            Some("streamspace-home-alice-desktop-old")
        );
        assert_eq!(mounts[0].target.as_deref(), Some("/home/user"));
    }

    #[test]
    fn shm_user_and_a_read_only_root_come_from_the_spec() {
        let host = host_config(&spec());
        assert_eq!(
            (host.shm_size, host.readonly_rootfs, host.tmpfs.as_ref()),
            (None, None, None)
        );
        assert_eq!(config(&spec()).user, None, "the image's user");
        let mut spec = spec();
        spec.shm_size = Some("1Gi".parse().expect("memory"));
        spec.security.user = Some("1000:1000".into());
        spec.security.read_only_root_filesystem = true;
        let config = config(&spec);
        assert_eq!(config.user.as_deref(), Some("1000:1000"));
        let host = config.host_config.expect("host config");
        assert_eq!(host.shm_size, Some(1 << 30));
        assert_eq!(host.readonly_rootfs, Some(true));
        let tmpfs = host.tmpfs.expect("scratch space");
        assert!(tmpfs["/tmp"].contains("mode=1777"), "{tmpfs:?}");
        assert!(tmpfs.contains_key("/run"), "{tmpfs:?}");
    }

    #[test]
    fn shared_volumes_are_mounted_after_the_home_read_only_unless_said() {
        let mut spec = spec();
        spec.volumes = vec![
            SharedVolume {
                source: "datasets".into(),
                path: "/data".into(),
                read_only: true,
            },
            SharedVolume {
                source: "scratch".into(),
                path: "/scratch".into(),
                read_only: false,
            },
        ];
        let mounts = host_config(&spec).mounts.expect("mounts");
        assert_eq!(mounts.len(), 3);
        assert_eq!(mounts[0].target.as_deref(), Some("/home/user"));
        assert_eq!(mounts[1].source.as_deref(), Some("datasets"));
        assert_eq!(mounts[1].target.as_deref(), Some("/data"));
        assert_eq!(mounts[1].typ, Some(MountType::VOLUME));
        assert_eq!(mounts[1].read_only, Some(true));
        assert_eq!(mounts[2].read_only, Some(false));
    }

    #[test]
    fn gpus_are_requested_by_index_with_the_nvidia_runtime_when_there_is_one() {
        assert_eq!(host_config(&spec()).device_requests, None);
        let gpus = ["1".to_owned(), "3".to_owned()];
        let with = |nvidia_runtime| ContainerSettings {
            gpus: &gpus,
            nvidia_runtime,
            ..settings()
        };
        let config = container_config(&spec(), &confined(&spec()), &with(true));
        assert_eq!(config.labels.expect("labels")[GPUS_LABEL], "1,3");
        let host = config.host_config.expect("host config");
        let request = &host.device_requests.expect("device requests")[0];
        assert_eq!(request.driver.as_deref(), Some("nvidia"));
        assert_eq!(request.device_ids, Some(gpus.to_vec()));
        assert_eq!(request.capabilities, Some(vec![vec!["gpu".to_owned()]]));
        assert_eq!(host.runtime.as_deref(), Some("nvidia"));
        let host = container_config(&spec(), &confined(&spec()), &with(false)).host_config;
        assert_eq!(
            host.expect("host config").runtime,
            None,
            "the engine's default"
        );
    }

    #[test]
    fn session_ids_must_fit_a_container_name() {
        assert_eq!(container_name(&"abc-1".into()), "streamspace-abc-1");
        for good in ["a", "0f3c", "s_1.x-y"] {
            assert!(validate_session_id(&good.into()).is_ok(), "{good}");
        }
        for bad in ["", "-a", "a/b", "a b", "ä"] {
            let err = validate_session_id(&bad.into()).expect_err(bad);
            assert!(err.contains("cannot name a Docker container"), "{err}");
        }
    }

    #[test]
    fn published_port_prefers_the_publish_host_binding() {
        let binding = |ip: &str, port: &str| PortBinding {
            host_ip: Some(ip.into()),
            host_port: Some(port.into()),
        };
        let ports: PortMap = HashMap::from([(
            "5901/tcp".to_owned(),
            Some(vec![
                binding("0.0.0.0", "40000"),
                binding("127.0.0.1", "40001"),
            ]),
        )]);
        let container = ContainerInspectResponse {
            network_settings: Some(NetworkSettings {
                ports: Some(ports),
                ..Default::default()
            }),
            ..Default::default()
        };
        let localhost = IpAddr::from([127, 0, 0, 1]);
        assert_eq!(published_port(&container, 5901, localhost), Some(40001));
        let other = IpAddr::from([10, 0, 0, 1]);
        assert_eq!(published_port(&container, 5901, other), Some(40000));
        assert_eq!(published_port(&container, 8080, localhost), None);
        assert_eq!(
            published_port(&ContainerInspectResponse::default(), 5901, localhost),
            None
        );
    }

    #[test]
    fn container_address_on_the_chosen_network() {
        let endpoint = |ip: &str| EndpointSettings {
            ip_address: Some(ip.into()),
            ..Default::default()
        };
        let container = |networks: Vec<(&str, &str)>| ContainerInspectResponse {
            network_settings: Some(NetworkSettings {
                networks: Some(
                    networks
                        .into_iter()
                        .map(|(name, ip)| (name.to_owned(), endpoint(ip)))
                        .collect(),
                ),
                ..Default::default()
            }),
            ..Default::default()
        };
        let ip = |s: &str| s.parse::<IpAddr>().ok();
        let two = container(vec![("zeta", "10.1.0.2"), ("bridge", "172.17.0.3")]);
        assert_eq!(container_address(&two, None), ip("172.17.0.3"));
        assert_eq!(container_address(&two, Some("zeta")), ip("10.1.0.2"));
        assert_eq!(container_address(&two, Some("other")), None);
        let custom = container(vec![("b", ""), ("a", "10.2.0.5")]);
        assert_eq!(container_address(&custom, None), ip("10.2.0.5"));
        assert_eq!(
            container_address(&container(vec![("bridge", "")]), None),
            None
        );
        assert_eq!(
            container_address(&ContainerInspectResponse::default(), None),
            None
        );
    }
}
