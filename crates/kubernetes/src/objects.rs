//! Translation of a platform-neutral [`SessionSpec`] into the Kubernetes
//! objects that run it: one Deployment per session and, for a persistent
//! home, one PersistentVolumeClaim per user and template (a template's
//! registry credentials become a Secret: `pull_secret.rs`). Pure: no API
//! calls here, so every rule is unit-tested (`objects_tests.rs`).

use crate::KubernetesOptions;
use crate::names::{self, CONTAINER, label_value, session_labels};
use crate::pull_secret::pod_pull_secrets;
use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, DeploymentStrategy};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, ContainerPort, EmptyDirVolumeSource, EnvVar, LocalObjectReference,
    PersistentVolumeClaim, PersistentVolumeClaimSpec, PersistentVolumeClaimVolumeSource,
    PodSecurityContext, PodSpec, PodTemplateSpec, Probe, ResourceRequirements, SeccompProfile,
    SecurityContext, TCPSocketAction, Volume, VolumeMount, VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use std::collections::BTreeMap;
use streamspace_agent::confinement::{self, Confinement};
use streamspace_protocol::{AgentId, PortSpec, SessionId, SessionSecurity, SessionSpec, labels};

/// Seconds Kubernetes waits after SIGTERM before SIGKILL when a session is
/// hibernated or terminated (the Docker platform uses the same).
pub const STOP_GRACE_SECS: i64 = 5;

/// The volume name of the persistent home inside the pod.
const HOME_VOLUME: &str = "home";

/// The volume name of `/dev/shm` when the template sizes it.
const SHM_VOLUME: &str = "shm";

/// The resource NVIDIA's device plugin offers GPUs as.
pub const GPU_RESOURCE: &str = "nvidia.com/gpu";

/// Writable scratch space of a read-only root (volume name, path), as
/// emptyDirs: where images write at run time.
const SCRATCH: [(&str, &str); 2] = [("scratch-tmp", "/tmp"), ("scratch-run", "/run")];

/// Refuses what cannot become a session's objects, before any is made (the
/// user sees our message instead of the apiserver's): a session id that
/// cannot name a Deployment, a home that cannot name a claim, unknown
/// capabilities or ones this agent refuses. Returns the checked
/// confinement, which [`deployment`] applies. Kubernetes has no per-pod
/// pids limit (the kubelet's `podPidsLimit` applies to every pod), so the
/// spec's is checked but not used here.
pub fn validate(spec: &SessionSpec, options: &KubernetesOptions) -> Result<Confinement, String> {
    names::validate_session_id(&spec.session_id)?;
    if let Some(home) = &spec.home {
        names::validate_claim_name(&home.volume)?;
    }
    for volume in &spec.volumes {
        names::validate_claim_name(&volume.source)
            .map_err(|_| format!("shared volume {:?} cannot name a claim", volume.source))?;
    }
    check_user(&spec.security, options)?;
    Confinement::of(&spec.security, &options.allowed_capabilities)
}

/// Kubernetes runs containers as numeric ids only, and root only where
/// the operator allows root sessions.
fn check_user(security: &SessionSecurity, options: &KubernetesOptions) -> Result<(), String> {
    if let Some((0, _)) = security.numeric_user()?
        && options.run_as_non_root
    {
        return Err(
            "the template runs the session as root (user 0), which this agent refuses: use a \
             non-root user, or start the agent with --allow-root-sessions"
                .to_owned(),
        );
    }
    Ok(())
}

/// The labels a Deployment selects its pod by. Immutable once created, so
/// only what never changes for a session.
fn selector_labels(session_id: &SessionId) -> BTreeMap<String, String> {
    BTreeMap::from([
        (names::MANAGED_BY.to_owned(), names::MANAGER.to_owned()),
        (labels::SESSION_ID.to_owned(), session_id.to_string()),
    ])
}

/// The session's Deployment: one replica that runs the session's image,
/// confined as [`validate`] worked out. Its pod pulls with the session's
/// own pull Secret (when the template has registry credentials), the
/// agent's `--image-pull-secret`s and `account_pull_secrets`, the session
/// service account's, which Kubernetes adds only to pods that name none.
pub fn deployment(
    spec: &SessionSpec,
    confinement: &Confinement,
    agent_id: &AgentId,
    options: &KubernetesOptions,
    account_pull_secrets: &[String],
) -> Deployment {
    let labels = session_labels(spec, agent_id);
    let pull_secrets = pod_pull_secrets(spec, &options.image_pull_secrets, account_pull_secrets);
    let pod = PodSpec {
        containers: vec![container(spec, &confinement.capabilities)],
        // A session is a user's desktop: it has no business calling the
        // Kubernetes API, nor seeing every Service in the namespace.
        automount_service_account_token: Some(false),
        enable_service_links: Some(false),
        termination_grace_period_seconds: Some(STOP_GRACE_SECS),
        image_pull_secrets: (!pull_secrets.is_empty()).then(|| {
            pull_secrets
                .into_iter()
                .map(|name| LocalObjectReference { name })
                .collect()
        }),
        security_context: Some(pod_security(options)),
        volumes: Some(pod_volumes(spec)).filter(|v| !v.is_empty()),
        ..Default::default()
    };
    Deployment {
        metadata: ObjectMeta {
            name: Some(names::deployment_name(&spec.session_id)),
            namespace: Some(options.namespace.clone()),
            labels: Some(labels.clone()),
            ..Default::default()
        },
        spec: DeploymentSpec {
            replicas: Some(1),
            // Nothing to roll back to: a session's template never changes.
            revision_history_limit: Some(0),
            // Never two pods of one session: one desktop, one home volume.
            strategy: Some(DeploymentStrategy {
                type_: Some("Recreate".to_owned()),
                rolling_update: None,
            }),
            selector: LabelSelector {
                match_labels: Some(selector_labels(&spec.session_id)),
                match_expressions: None,
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
                    ..Default::default()
                }),
                spec: Some(pod),
            },
            ..Default::default()
        },
        status: None,
    }
}

/// Refuses to run the pods of an existing Deployment (a wake, a start of a
/// session whose Deployment exists) with more than this agent allows now:
/// a privileged container, or a capability given back while
/// `--allow-capability` named it and no longer does. Its pod template is
/// fixed when it is created, so this is the only check a wake meets.
pub fn check_existing(deployment: &Deployment, options: &KubernetesOptions) -> Result<(), String> {
    let name = deployment.metadata.name.as_deref().unwrap_or_default();
    let pod = deployment.spec.template.spec.as_ref();
    let containers = pod.into_iter().flat_map(|pod| {
        pod.containers
            .iter()
            .chain(pod.init_containers.iter().flatten())
    });
    for container in containers {
        let context = container.security_context.clone().unwrap_or_default();
        if context.privileged == Some(true) {
            return Err(format!(
                "deployment {name} runs a privileged container; it is not scaled up: terminate \
                 the session and start a new one (its home is kept)"
            ));
        }
        let added = context.capabilities.and_then(|c| c.add).unwrap_or_default();
        let security = SessionSecurity {
            capabilities: (added.iter())
                .map(|cap| cap.strip_prefix("CAP_").unwrap_or(cap).to_owned())
                .collect(),
            ..SessionSecurity::default()
        };
        confinement::capabilities(&security, &options.allowed_capabilities).map_err(|why| {
            format!(
                "deployment {name} was made when the agent allowed more; it is not scaled up \
                 ({why}), or terminate the session and start a new one (its home is kept)"
            )
        })?;
    }
    Ok(())
}

/// The session's container, given back the `added` capabilities.
fn container(spec: &SessionSpec, added: &[String]) -> Container {
    let env = spec
        .env
        .iter()
        .map(|(name, value)| EnvVar {
            name: name.clone(),
            value: Some(value.clone()),
            value_from: None,
        })
        .collect::<Vec<_>>();
    let ports = spec.ports.iter().map(container_port).collect::<Vec<_>>();
    Container {
        name: CONTAINER.to_owned(),
        image: Some(spec.image.clone()),
        env: (!env.is_empty()).then_some(env),
        ports: (!ports.is_empty()).then_some(ports),
        resources: resources(spec),
        // Ready means the primary port listens, so "Running" on the watch
        // is close to what the agent's own check (an RFB banner, an HTTP
        // answer below 500, which an HTTP probe would not accept) will find.
        readiness_probe: spec.primary_port().map(|p| p.port).map(|port| Probe {
            tcp_socket: Some(TCPSocketAction {
                port: IntOrString::Int(i32::from(port)),
                host: None,
            }),
            period_seconds: Some(2),
            failure_threshold: Some(3),
            ..Default::default()
        }),
        security_context: Some(container_security(spec, added)),
        volume_mounts: Some(volume_mounts(spec)).filter(|m| !m.is_empty()),
        ..Default::default()
    }
}

/// No setuid escalation; every capability dropped, then those the template
/// gives back (images that start as root and switch user); the template's
/// user and read-only root. [`validate`] has checked the user is numeric.
fn container_security(spec: &SessionSpec, added: &[String]) -> SecurityContext {
    let (uid, gid) = match spec.security.numeric_user() {
        Ok(Some((uid, gid))) => (Some(i64::from(uid)), gid.map(i64::from)),
        _ => (None, None),
    };
    SecurityContext {
        allow_privilege_escalation: Some(false),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".to_owned()]),
            add: (!added.is_empty()).then(|| added.to_vec()),
        }),
        run_as_user: uid,
        run_as_group: gid,
        read_only_root_filesystem: spec.security.read_only_root_filesystem.then_some(true),
        ..Default::default()
    }
}

/// The name a shared volume has inside the pod.
fn shared_volume_name(index: usize) -> String {
    format!("shared-{index}")
}

/// The pod's volumes: the home claim, `/dev/shm` in memory when sized,
/// scratch space for a read-only root, and the shared claims.
fn pod_volumes(spec: &SessionSpec) -> Vec<Volume> {
    let claim = |name: String, claim_name: &str, read_only: bool| Volume {
        name,
        persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
            claim_name: claim_name.to_owned(),
            read_only: read_only.then_some(true),
        }),
        ..Default::default()
    };
    let empty_dir = |name: &str, medium: Option<&str>, size: Option<String>| Volume {
        name: name.to_owned(),
        empty_dir: Some(EmptyDirVolumeSource {
            medium: medium.map(str::to_owned),
            size_limit: size.map(Quantity),
            ..Default::default()
        }),
        ..Default::default()
    };
    let mut volumes = Vec::new();
    if let Some(home) = &spec.home {
        volumes.push(claim(HOME_VOLUME.to_owned(), &home.volume, false));
    }
    if let Some(shm) = spec.shm_size {
        volumes.push(empty_dir(SHM_VOLUME, Some("Memory"), Some(shm.to_string())));
    }
    if spec.security.read_only_root_filesystem {
        volumes.extend(SCRATCH.iter().map(|(name, _)| empty_dir(name, None, None)));
    }
    for (i, shared) in spec.volumes.iter().enumerate() {
        volumes.push(claim(
            shared_volume_name(i),
            &shared.source,
            shared.read_only,
        ));
    }
    volumes
}

/// Where [`pod_volumes`] are mounted in the session's container.
fn volume_mounts(spec: &SessionSpec) -> Vec<VolumeMount> {
    let mount = |name: &str, path: &str, read_only: bool| VolumeMount {
        name: name.to_owned(),
        mount_path: path.to_owned(),
        read_only: read_only.then_some(true),
        ..Default::default()
    };
    let mut mounts = Vec::new();
    if let Some(home) = &spec.home {
        mounts.push(mount(HOME_VOLUME, &home.path, false));
    }
    if spec.shm_size.is_some() {
        mounts.push(mount(SHM_VOLUME, "/dev/shm", false));
    }
    if spec.security.read_only_root_filesystem {
        mounts.extend(SCRATCH.iter().map(|(name, path)| mount(name, path, false)));
    }
    for (i, shared) in spec.volumes.iter().enumerate() {
        mounts.push(mount(
            &shared_volume_name(i),
            &shared.path,
            shared.read_only,
        ));
    }
    mounts
}

/// The pod-level security context: the "restricted" Pod Security Standard
/// unless the operator allows root sessions.
fn pod_security(options: &KubernetesOptions) -> PodSecurityContext {
    PodSecurityContext {
        run_as_non_root: options.run_as_non_root.then_some(true),
        // Makes a fresh home volume (owned by root) writable by the
        // session's user, whose group this is.
        fs_group: options.fs_group,
        fs_group_change_policy: options.fs_group.map(|_| "OnRootMismatch".to_owned()),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".to_owned(),
            localhost_profile: None,
        }),
        ..Default::default()
    }
}

fn container_port(port: &PortSpec) -> ContainerPort {
    ContainerPort {
        container_port: i32::from(port.port),
        // Kubernetes port names are IANA service names (at most 15
        // characters); a longer template port name is simply left off.
        name: names::is_port_name(&port.name).then(|| port.name.clone()),
        protocol: Some("TCP".to_owned()),
        ..Default::default()
    }
}

/// Requests equal limits: the scheduler places a session by what it may
/// really use, and the pod gets the Guaranteed QoS class when both are set.
fn resources(spec: &SessionSpec) -> Option<ResourceRequirements> {
    let mut amounts = BTreeMap::new();
    if let Some(cpu) = spec.resources.cpu {
        amounts.insert("cpu".to_owned(), Quantity(cpu.to_string()));
    }
    if let Some(memory) = spec.resources.memory {
        amounts.insert("memory".to_owned(), Quantity(memory.to_string()));
    }
    if let Some(gpus) = spec.resources.gpu.filter(|&n| n > 0) {
        amounts.insert(GPU_RESOURCE.to_owned(), Quantity(gpus.to_string()));
    }
    (!amounts.is_empty()).then(|| ResourceRequirements {
        limits: Some(amounts.clone()),
        requests: Some(amounts),
        claims: None,
    })
}

/// The claim for a session's persistent home. It carries no session id:
/// like the Docker volume, it belongs to a user and template and outlives
/// sessions. Callers validate the spec first ([`validate`]).
pub fn home_claim(
    spec: &SessionSpec,
    agent_id: &AgentId,
    options: &KubernetesOptions,
) -> Option<PersistentVolumeClaim> {
    let home = spec.home.as_ref()?;
    let mut labels = session_labels(spec, agent_id);
    labels.remove(labels::SESSION_ID);
    labels.remove(labels::SEAL);
    labels.insert(names::APP_NAME.to_owned(), names::HOME_APP.to_owned());
    // The claim's name when it fits a label value; a cut id-keyed name
    // would not be unique, and the id labels identify the home anyway.
    if label_value(&home.volume) == home.volume {
        labels.insert(names::APP_INSTANCE.to_owned(), home.volume.clone());
    } else {
        labels.remove(names::APP_INSTANCE);
    }
    Some(PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some(home.volume.clone()),
            namespace: Some(options.namespace.clone()),
            labels: Some(labels),
            ..Default::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".to_owned()]),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([(
                    "storage".to_owned(),
                    Quantity(options.home_size.to_string()),
                )])),
                limits: None,
            }),
            storage_class_name: options.storage_class.clone(),
            ..Default::default()
        }),
        status: None,
    })
}

#[cfg(test)]
#[path = "objects_tests.rs"]
mod tests;
