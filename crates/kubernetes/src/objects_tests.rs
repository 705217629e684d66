use super::*;
use crate::TunnelMode;
use streamspace_agent::homes::is_home_of;
use streamspace_protocol::Resources;

const SESSION: &str = "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b";

fn spec() -> SessionSpec {
    SessionSpec::fixture(SESSION)
        .with_image("registry.example.com/streamspace/desktop:1.0")
        .with_env("VNC_GEOMETRY", "1280x800")
        .with_env("TZ", "UTC")
        .with_limits("1500m", "2Gi")
        .with_home("streamspace-home-alice-desktop")
}

fn options() -> KubernetesOptions {
    KubernetesOptions {
        namespace: "streamspace".into(),
        tunnel: TunnelMode::PodIp,
        storage_class: Some("fast".into()),
        image_pull_secrets: vec!["registry-cred".into()],
        ..KubernetesOptions::default()
    }
}

/// The Deployment the platform makes for `spec` on agent `agent-7`.
fn deploy(spec: &SessionSpec, options: &KubernetesOptions) -> Deployment {
    let confinement = validate(spec, options).expect("a valid spec");
    deployment(spec, &confinement, &"agent-7".into(), options, &[])
}

fn pod_spec(deployment: &Deployment) -> &PodSpec {
    deployment.spec.template.spec.as_ref().expect("pod spec")
}

/// The session container's capabilities (dropped and added).
fn capabilities(deployment: &Deployment) -> Capabilities {
    pod_spec(deployment).containers[0]
        .security_context
        .as_ref()
        .and_then(|s| s.capabilities.clone())
        .expect("capabilities")
}

#[test]
fn deployment_is_named_labelled_and_selects_its_session() {
    let d = deploy(&spec(), &options());
    assert_eq!(
        d.metadata.name.as_deref(),
        Some("streamspace-0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b")
    );
    assert_eq!(d.metadata.namespace.as_deref(), Some("streamspace"));
    let labels = d.metadata.labels.clone().expect("labels");
    assert_eq!(labels["app.kubernetes.io/managed-by"], "streamspace");
    assert_eq!(labels["app.kubernetes.io/name"], "streamspace-session");
    assert_eq!(labels[labels::SESSION_ID], SESSION);
    assert_eq!(labels[labels::USER], "alice");
    assert_eq!(labels[labels::TEMPLATE], "desktop");
    assert_eq!(labels[labels::AGENT], "agent-7");
    let spec = &d.spec;
    assert_eq!(spec.replicas, Some(1));
    assert_eq!(
        spec.strategy.as_ref().and_then(|s| s.type_.as_deref()),
        Some("Recreate")
    );
    let selector = spec.selector.match_labels.clone().expect("selector");
    assert_eq!(selector.len(), 2);
    assert_eq!(selector[labels::SESSION_ID], SESSION);
    let pod_labels = spec
        .template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.clone())
        .expect("pod labels");
    assert_eq!(pod_labels, labels, "pods carry every label");
}

#[test]
fn container_has_image_env_ports_and_equal_requests_and_limits() {
    let d = deploy(&spec(), &options());
    let pod = pod_spec(&d);
    assert_eq!(pod.containers.len(), 1);
    let c = &pod.containers[0];
    assert_eq!(c.name, "session");
    assert_eq!(
        c.image.as_deref(),
        Some("registry.example.com/streamspace/desktop:1.0")
    );
    let env: Vec<(&str, &str)> = c
        .env
        .iter()
        .flatten()
        .map(|e| (e.name.as_str(), e.value.as_deref().unwrap_or_default()))
        .collect();
    assert_eq!(env, [("TZ", "UTC"), ("VNC_GEOMETRY", "1280x800")]);
    let port = &c.ports.as_ref().expect("ports")[0];
    assert_eq!(port.container_port, 5901);
    assert_eq!(port.name.as_deref(), Some("vnc"));
    let resources = c.resources.as_ref().expect("resources");
    let limits = resources.limits.clone().expect("limits");
    assert_eq!(limits["cpu"], Quantity("1500m".into()));
    assert_eq!(limits["memory"], Quantity("2Gi".into()));
    assert_eq!(resources.requests.clone(), Some(limits));
    let probe = c.readiness_probe.as_ref().expect("readiness probe");
    assert_eq!(
        probe.tcp_socket.as_ref().map(|t| t.port.clone()),
        Some(IntOrString::Int(5901))
    );
}

#[test]
fn sessions_run_restricted_without_api_access() {
    let d = deploy(&spec(), &options());
    let pod = pod_spec(&d);
    assert_eq!(pod.automount_service_account_token, Some(false));
    assert_eq!(pod.enable_service_links, Some(false));
    assert_eq!(pod.termination_grace_period_seconds, Some(5));
    let security = pod.security_context.as_ref().expect("pod security");
    assert_eq!(security.run_as_non_root, Some(true));
    assert_eq!(security.fs_group, Some(1000));
    assert_eq!(
        security.seccomp_profile.as_ref().map(|s| s.type_.as_str()),
        Some("RuntimeDefault")
    );
    let container = pod.containers[0]
        .security_context
        .as_ref()
        .expect("security");
    assert_eq!(container.allow_privilege_escalation, Some(false));
    assert_eq!(
        container.capabilities.as_ref().and_then(|c| c.drop.clone()),
        Some(vec!["ALL".to_owned()])
    );
    let secrets: Vec<&str> = pod
        .image_pull_secrets
        .iter()
        .flatten()
        .map(|s| s.name.as_str())
        .collect();
    assert_eq!(secrets, ["registry-cred"]);

    let relaxed = KubernetesOptions {
        run_as_non_root: false,
        fs_group: None,
        image_pull_secrets: Vec::new(),
        ..options()
    };
    let d = deploy(&spec(), &relaxed);
    let pod = pod_spec(&d);
    let security = pod.security_context.as_ref().expect("pod security");
    assert_eq!(security.run_as_non_root, None);
    assert_eq!(security.fs_group, None);
    assert_eq!(pod.image_pull_secrets, None);
}

#[test]
fn home_is_a_claim_mounted_at_the_home_path() {
    let d = deploy(&spec(), &options());
    let pod = pod_spec(&d);
    let volume = &pod.volumes.as_ref().expect("volumes")[0];
    assert_eq!(
        volume
            .persistent_volume_claim
            .as_ref()
            .map(|c| c.claim_name.as_str()),
        Some("streamspace-home-alice-desktop")
    );
    let mount = &pod.containers[0].volume_mounts.as_ref().expect("mounts")[0];
    assert_eq!(mount.name, volume.name);
    assert_eq!(mount.mount_path, "/home/user");

    let claim = home_claim(&spec(), &"agent-7".into(), &options()).expect("claim");
    assert_eq!(
        claim.metadata.name.as_deref(),
        Some("streamspace-home-alice-desktop")
    );
    let labels = claim.metadata.labels.clone().expect("labels");
    assert_eq!(labels["app.kubernetes.io/name"], "streamspace-home");
    assert_eq!(labels[labels::USER], "alice");
    assert!(
        !labels.contains_key(labels::SESSION_ID),
        "outlives sessions"
    );
    let claim_spec = claim.spec.expect("claim spec");
    assert_eq!(claim_spec.access_modes, Some(vec!["ReadWriteOnce".into()]));
    assert_eq!(claim_spec.storage_class_name.as_deref(), Some("fast"));
    let storage = claim_spec
        .resources
        .and_then(|r| r.requests)
        .expect("requests");
    assert_eq!(storage["storage"], Quantity("10Gi".into()));
}

#[test]
fn no_home_no_resources_no_extras() {
    let mut bare = spec();
    bare.home = None;
    bare.resources = Resources::default();
    bare.env.clear();
    bare.ports[0].name = "a-port-name-too-long".into();
    assert!(home_claim(&bare, &"agent-7".into(), &options()).is_none());
    let d = deploy(&bare, &options());
    let pod = pod_spec(&d);
    assert_eq!(pod.volumes, None);
    let c = &pod.containers[0];
    assert_eq!(c.resources, None);
    assert_eq!(c.env, None);
    assert_eq!(c.volume_mounts, None);
    assert_eq!(c.ports.as_ref().expect("ports")[0].name, None);
}

#[test]
fn odd_label_values_are_made_valid() {
    let mut odd = spec();
    odd.user = "Bob Smith".into();
    let labels = session_labels(&odd, &"agent 7".into());
    assert_eq!(labels[labels::USER], "Bob-Smith");
    assert_eq!(labels[labels::AGENT], "agent-7");
}

#[test]
fn rendered_yaml_has_both_documents_in_creation_order() {
    let yaml = crate::render::to_yaml(&spec(), &"agent-7".into(), &options()).expect("renders");
    let claim_at = yaml.find("kind: PersistentVolumeClaim").expect("claim");
    let deployment_at = yaml.find("kind: Deployment").expect("deployment");
    assert!(claim_at < deployment_at, "{yaml}");
    assert_eq!(yaml.matches("---\n").count(), 2, "{yaml}");
    assert!(yaml.contains("apiVersion: apps/v1"), "{yaml}");
    let mut by_ids = spec();
    let claim = "streamspace-home-0190a1b2-0000-7000-8000-00000000000a-\
                 0190a1b2-0000-7000-8000-00000000000b";
    if let Some(home) = by_ids.home.as_mut() {
        home.volume = claim.into();
    }
    let yaml = crate::render::to_yaml(&by_ids, &"agent-7".into(), &options()).expect("renders");
    assert!(
        yaml.contains(&format!("name: {claim}\n")),
        "one line: {yaml}"
    );
    let mut bad = spec();
    bad.session_id = "Not_A_Name".into();
    let err = crate::render::to_yaml(&bad, &"agent-7".into(), &options()).expect_err("refused");
    assert!(err.contains("cannot name a Kubernetes Deployment"), "{err}");
}

#[test]
fn ids_and_the_seal_are_labels_and_the_claim_has_no_seal() {
    let mut sealed = spec();
    sealed.user_id = "0190a1b2-0000-7000-8000-00000000000a".into();
    sealed.template_id = "0190a1b2-0000-7000-8000-00000000000b".into();
    sealed.seal = "0123456789abcdef0123456789abcdef".into();
    let d = deploy(&sealed, &options());
    let labels = d.metadata.labels.clone().expect("labels");
    assert_eq!(labels[labels::USER_ID], sealed.user_id);
    assert_eq!(labels[labels::TEMPLATE_ID], sealed.template_id);
    assert_eq!(labels[labels::SEAL], sealed.seal);
    let origin =
        streamspace_protocol::SessionOrigin::from_labels(|k| labels.get(k).map(String::as_str))
            .expect("origin");
    assert_eq!(origin.seal.as_deref(), Some(sealed.seal.as_str()));
    let selector = d.spec.selector.match_labels.clone().expect("selector");
    assert!(
        !selector.contains_key(labels::SEAL),
        "selectors never change"
    );

    let claim = home_claim(&sealed, &"agent-7".into(), &options()).expect("claim");
    let claim_labels = claim.metadata.labels.expect("labels");
    assert_eq!(claim_labels[labels::USER_ID], sealed.user_id);
    assert!(!claim_labels.contains_key(labels::SEAL));

    // An older control plane sends no ids and no seal: no empty labels.
    let labels = session_labels(&spec(), &"agent-7".into());
    for absent in [labels::USER_ID, labels::TEMPLATE_ID, labels::SEAL] {
        assert!(!labels.contains_key(absent), "{absent}");
    }
}

#[test]
fn capabilities_are_dropped_and_the_templates_given_back() {
    let d = deploy(&spec(), &options());
    let caps = capabilities(&d);
    assert_eq!(caps.add, None);

    let mut s6 = spec();
    s6.security.capabilities = vec!["CHOWN".into(), "SETUID".into(), "SETGID".into()];
    let d = deploy(&s6, &options());
    let caps = capabilities(&d);
    assert_eq!(caps.drop, Some(vec!["ALL".to_owned()]));
    assert_eq!(caps.add, Some(s6.security.capabilities.clone()));
}

#[test]
fn validation_refuses_what_cannot_become_objects() {
    assert!(validate(&spec(), &options()).is_ok());
    let mut bad = spec();
    bad.security.capabilities = vec!["CAP_NET_ADMIN".into()];
    let err = validate(&bad, &options()).expect_err("prefixed capability");
    assert!(err.contains("write \"NET_ADMIN\""), "{err}");
    let err =
        crate::render::to_yaml(&bad, &"agent-7".into(), &options()).expect_err("render refuses");
    assert!(err.contains("unknown Linux capability"), "{err}");
    let mut bad = spec();
    bad.session_id = "Not_A_Name".into();
    assert!(validate(&bad, &options()).is_err());
}

/// NET_RAW on a node's pod network lets a session answer ARP for its
/// neighbours: refused unless the agent's operator allows it.
#[test]
fn capabilities_that_break_isolation_need_the_operators_consent() {
    let mut raw = spec();
    raw.security.capabilities = vec!["NET_RAW".into()];
    let err = validate(&raw, &options()).expect_err("NET_RAW");
    assert!(err.contains("--allow-capability NET_RAW"), "{err}");
    let err =
        crate::render::to_yaml(&raw, &"agent-7".into(), &options()).expect_err("render refuses");
    assert!(err.contains("--allow-capability NET_RAW"), "{err}");
    let allowing = KubernetesOptions {
        allowed_capabilities: vec!["NET_RAW".into()],
        ..options()
    };
    let d = deploy(&raw, &allowing);
    let caps = capabilities(&d);
    assert_eq!(caps.add, Some(vec!["NET_RAW".to_owned()]));
}

#[test]
fn a_claim_is_a_users_home_only_when_its_labels_say_so() {
    let labels = |user: &str, template: &str| {
        BTreeMap::from([
            (labels::USER.to_owned(), user.to_owned()),
            (labels::TEMPLATE.to_owned(), template.to_owned()),
        ])
    };
    assert!(is_home_of(&labels("alice", "desktop"), &spec()));
    assert!(!is_home_of(&labels("alice-dev", "desktop"), &spec()));
    assert!(!is_home_of(&labels("alice", "dev-desktop"), &spec()));
    assert!(!is_home_of(&BTreeMap::new(), &spec()));
    // Label values are names made valid (cut to 63 characters, odd
    // characters replaced): a claim whose labels only a mangled name matches
    // is nobody's, or two users could share one.
    let long = |last: char| format!("{}{last}", "a".repeat(63));
    let mut theirs = spec();
    theirs.user = long('x');
    let mut other = spec();
    other.user = long('y');
    let made = home_claim(&theirs, &"agent-7".into(), &options())
        .and_then(|c| c.metadata.labels)
        .expect("labels");
    assert!(
        !is_home_of(&made, &other),
        "{} vs {}",
        theirs.user,
        other.user
    );
    let mut odd = spec();
    odd.user = "Bob Smith".into();
    assert!(!is_home_of(&labels("Bob-Smith", "desktop"), &odd));
    // Ids, where the labels have them, must be the spec's too.
    let mut with_ids = labels("alice", "desktop");
    with_ids.insert(labels::USER_ID.to_owned(), "someone-else".to_owned());
    assert!(!is_home_of(&with_ids, &spec()));
}

/// The session container's volume mounts by path: (volume name, read-only).
fn mounts(deployment: &Deployment) -> BTreeMap<String, (String, bool)> {
    let container = &pod_spec(deployment).containers[0];
    (container.volume_mounts.iter().flatten())
        .map(|m| {
            let read_only = m.read_only.unwrap_or(false);
            (m.mount_path.clone(), (m.name.clone(), read_only))
        })
        .collect()
}

/// The pod's volume called `name`.
fn volume<'a>(deployment: &'a Deployment, name: &str) -> &'a Volume {
    (pod_spec(deployment).volumes.iter().flatten())
        .find(|v| v.name == name)
        .unwrap_or_else(|| panic!("volume {name}"))
}

#[test]
fn shm_is_a_memory_backed_empty_dir_of_the_templates_size() {
    assert!(!mounts(&deploy(&spec(), &options())).contains_key("/dev/shm"));
    let mut spec = spec();
    spec.shm_size = Some("1Gi".parse().expect("memory"));
    let d = deploy(&spec, &options());
    assert_eq!(mounts(&d)["/dev/shm"], ("shm".to_owned(), false));
    let empty_dir = volume(&d, "shm").empty_dir.clone().expect("emptyDir");
    assert_eq!(empty_dir.medium.as_deref(), Some("Memory"));
    assert_eq!(empty_dir.size_limit, Some(Quantity("1Gi".into())));
}

#[test]
fn the_user_and_a_read_only_root_go_to_the_container() {
    let mut spec = spec();
    spec.security.user = Some("1000:2000".into());
    spec.security.read_only_root_filesystem = true;
    let d = deploy(&spec, &options());
    let container = &pod_spec(&d).containers[0];
    let security = container.security_context.as_ref().expect("security");
    assert_eq!(security.run_as_user, Some(1000));
    assert_eq!(security.run_as_group, Some(2000));
    assert_eq!(security.read_only_root_filesystem, Some(true));
    let mounts = mounts(&d);
    assert_eq!(mounts["/tmp"], ("scratch-tmp".to_owned(), false));
    assert_eq!(mounts["/run"], ("scratch-run".to_owned(), false));
    assert!(volume(&d, "scratch-tmp").empty_dir.is_some());
    // Without them, the image decides.
    let plain = deploy(&self::spec(), &options());
    let security = pod_spec(&plain).containers[0].security_context.clone();
    let security = security.expect("security");
    assert_eq!((security.run_as_user, security.run_as_group), (None, None));
    assert_eq!(security.read_only_root_filesystem, None);
}

#[test]
fn users_must_be_numeric_and_root_needs_the_operators_consent() {
    let with_user = |user: &str| {
        let mut spec = spec();
        spec.security.user = Some(user.to_owned());
        spec
    };
    let err = validate(&with_user("app"), &options()).expect_err("a name");
    assert!(err.contains("numeric"), "{err}");
    let err = validate(&with_user("0"), &options()).expect_err("root");
    assert!(err.contains("--allow-root-sessions"), "{err}");
    let root_allowed = KubernetesOptions {
        run_as_non_root: false,
        ..options()
    };
    assert!(validate(&with_user("0:0"), &root_allowed).is_ok());
    assert!(validate(&with_user("1000"), &options()).is_ok());
}

#[test]
fn shared_volumes_are_claims_mounted_read_only_unless_said() {
    let mut spec = spec();
    spec.volumes = vec![
        streamspace_protocol::SharedVolume {
            source: "datasets".into(),
            path: "/data".into(),
            read_only: true,
        },
        streamspace_protocol::SharedVolume {
            source: "scratch".into(),
            path: "/scratch".into(),
            read_only: false,
        },
    ];
    let d = deploy(&spec, &options());
    let mounts = mounts(&d);
    assert_eq!(mounts["/data"], ("shared-0".to_owned(), true));
    assert_eq!(mounts["/scratch"], ("shared-1".to_owned(), false));
    assert_eq!(mounts["/home/user"], ("home".to_owned(), false));
    let claim = volume(&d, "shared-0").persistent_volume_claim.clone();
    let claim = claim.expect("claim");
    assert_eq!(
        (claim.claim_name.as_str(), claim.read_only),
        ("datasets", Some(true))
    );
    spec.volumes[0].source = "Not_A_Claim".into();
    let err = validate(&spec, &options()).expect_err("bad claim name");
    assert!(err.contains("Not_A_Claim"), "{err}");
}

#[test]
fn gpus_are_nvidia_limits_and_requests() {
    let spec = spec().with_resources(Resources {
        gpu: Some(2),
        ..spec().resources
    });
    let d = deploy(&spec, &options());
    let resources = pod_spec(&d).containers[0].resources.clone();
    let resources = resources.expect("resources");
    let limits = resources.limits.expect("limits");
    assert_eq!(limits[GPU_RESOURCE], Quantity("2".into()));
    assert_eq!(
        resources.requests.expect("requests")[GPU_RESOURCE],
        Quantity("2".into())
    );
    let plain = deploy(&self::spec(), &options());
    let limits = pod_spec(&plain).containers[0].resources.clone();
    assert!(
        !limits
            .and_then(|r| r.limits)
            .expect("limits")
            .contains_key(GPU_RESOURCE)
    );
}
