//! From a session's Deployment and pods, as the apiserver reports them, to a
//! session [`Phase`]. Pure and unit-tested on real-shaped objects.
//!
//! # The rules, in order
//!
//! 1. The Deployment is being deleted → **Stopping**.
//! 2. It is scaled to 0 → **Hibernated**, whoever scaled it (an operator's
//!    `kubectl scale --replicas=0` is a hibernation too). Its pod may still be
//!    shutting down; nothing will bring it back.
//! 3. Otherwise the newest pod that is neither deleted nor finished decides:
//!    - not schedulable (`PodScheduled=False`, `Unschedulable`) → **Failed**
//!      with the scheduler's message ("0/3 nodes are available: …");
//!    - its container waits for a reason that needs a person
//!      (`ErrImagePull`, `ImagePullBackOff`, `CrashLoopBackOff`,
//!      `CreateContainerConfigError`, …) → **Failed** with Kubernetes'
//!      reason and message; for an image that cannot be pulled, followed by
//!      what a Docker agent would say (credentials refused, image not
//!      found, registry unreachable);
//!    - it restarted after a crash and is not ready again → **Failed** with
//!      the last exit (`OOMKilled`, exit code);
//!    - `Ready` → **Running** (the readiness probe is the VNC port);
//!    - anything else (Pending, ContainerCreating, running but not ready)
//!      → **Starting**.
//! 4. No such pod: a `ReplicaFailure` condition (quota exceeded, a Pod
//!    Security violation) → **Failed** with its message; otherwise
//!    **Starting** (the ReplicaSet is about to create one).

use crate::names::CONTAINER;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ContainerStatus, Pod};
use streamspace_agent::pulls::{PullFailure, classify, registry_of};
use streamspace_protocol::Phase;

/// Waiting reasons that will not resolve by themselves.
const FAILED_WAITING: [&str; 8] = [
    "ErrImagePull",
    "ImagePullBackOff",
    "ErrImageNeverPull",
    "InvalidImageName",
    "CrashLoopBackOff",
    "CreateContainerConfigError",
    "CreateContainerError",
    "RunContainerError",
];

/// A session's Deployment and its pods, in any state: what its phase is
/// derived from.
#[derive(Debug, Clone)]
pub(crate) struct SessionObjects {
    pub deployment: Deployment,
    pub pods: Vec<Pod>,
}

/// A session's phase as derived from its objects.
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

    fn with(phase: Phase, message: impl Into<String>) -> Self {
        Observation {
            phase,
            message: Some(message.into()),
        }
    }

    fn failed(reason: &str, message: Option<&str>) -> Self {
        let detail = match message.filter(|m| !m.is_empty()) {
            Some(message) => format!("{reason}: {message}"),
            None => reason.to_owned(),
        };
        Observation::with(
            Phase::Failed,
            format!("Kubernetes cannot run the session: {detail}"),
        )
    }
}

/// The desired replica count (Kubernetes defaults it to 1).
pub fn desired_replicas(deployment: &Deployment) -> i32 {
    deployment.spec.replicas.unwrap_or(1)
}

/// The phase of a session whose Deployment is `deployment` and whose pods
/// (in any state) are `pods`.
pub fn observe<'a>(
    deployment: &Deployment,
    pods: impl IntoIterator<Item = &'a Pod>,
) -> Observation {
    if deployment.metadata.deletion_timestamp.is_some() {
        return Observation::phase(Phase::Stopping);
    }
    if desired_replicas(deployment) == 0 {
        return Observation::phase(Phase::Hibernated);
    }
    match current_pod(pods) {
        Some(pod) => observe_pod(pod),
        None => match replica_failure(deployment) {
            Some(message) => Observation::failed("ReplicaFailure", Some(&message)),
            None => Observation::phase(Phase::Starting),
        },
    }
}

/// The pod that is the session now: the newest one that is neither being
/// deleted nor finished (an evicted pod stays behind as `Failed` while its
/// replacement starts).
pub fn current_pod<'a>(pods: impl IntoIterator<Item = &'a Pod>) -> Option<&'a Pod> {
    pods.into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| {
            let phase = p.status.as_ref().and_then(|s| s.phase.as_deref());
            !matches!(phase, Some("Failed" | "Succeeded"))
        })
        .max_by(|a, b| {
            let created = |p: &Pod| p.metadata.creation_timestamp.clone();
            created(a)
                .cmp(&created(b))
                .then_with(|| a.metadata.name.cmp(&b.metadata.name))
        })
}

/// Whether the pod passes its readiness probe.
pub fn is_ready(pod: &Pod) -> bool {
    condition(pod, "Ready").is_some_and(|(status, _, _)| status == "True")
}

fn observe_pod(pod: &Pod) -> Observation {
    if let Some(("False", Some("Unschedulable"), message)) = condition(pod, "PodScheduled") {
        return Observation::failed("Unschedulable", message);
    }
    let container = session_container(pod);
    if let Some(container) = container {
        let waiting = container.state.as_ref().and_then(|s| s.waiting.as_ref());
        if let Some(waiting) = waiting {
            let reason = waiting.reason.as_deref().unwrap_or_default();
            if FAILED_WAITING.contains(&reason) {
                let mut observed = Observation::failed(reason, waiting.message.as_deref());
                if let (Some(message), Some(last)) = (&mut observed.message, last_exit(container)) {
                    message.push_str(&format!(" (last exit: {last})"));
                }
                if let (Some(message), Some(why)) = (&mut observed.message, pull_failure(container))
                {
                    message.push_str(&format!("; {why}"));
                }
                return observed;
            }
        }
        if container.restart_count > 0
            && !container.ready
            && let Some(last) = last_exit(container)
        {
            return Observation::with(
                Phase::Failed,
                format!("the session's container crashed ({last}); Kubernetes is restarting it"),
            );
        }
    }
    if is_ready(pod) {
        return Observation::phase(Phase::Running);
    }
    match pod.status.as_ref().and_then(|s| s.phase.as_deref()) {
        Some("Unknown") => Observation::with(
            Phase::Starting,
            "the node running the session's pod stopped reporting",
        ),
        _ => Observation::phase(Phase::Starting),
    }
}

/// Why the kubelet cannot pull the session's image, in the words a Docker
/// agent uses, when its waiting message tells.
fn pull_failure(container: &ContainerStatus) -> Option<String> {
    let waiting = container.state.as_ref()?.waiting.as_ref()?;
    let reason = waiting.reason.as_deref()?;
    if !matches!(reason, "ErrImagePull" | "ImagePullBackOff") {
        return None;
    }
    let image = container.image.as_str();
    let registry = registry_of(image);
    Some(match classify(waiting.message.as_deref()?) {
        PullFailure::Auth => format!(
            "the registry refused the credentials for {registry} (or none were given: set \
             the template's registry_auth, or give the namespace's service account an \
             imagePullSecret for it)"
        ),
        PullFailure::NotFound => format!("image {image} not found in {registry}"),
        PullFailure::Network => format!("cannot reach registry {registry}"),
        PullFailure::Other => return None,
    })
}

/// `(status, reason, message)` of one of the pod's conditions.
fn condition<'a>(pod: &'a Pod, kind: &str) -> Option<(&'a str, Option<&'a str>, Option<&'a str>)> {
    let conditions = pod.status.as_ref()?.conditions.as_ref()?;
    let found = conditions.iter().find(|c| c.type_ == kind)?;
    Some((
        found.status.as_str(),
        found.reason.as_deref(),
        found.message.as_deref(),
    ))
}

fn session_container(pod: &Pod) -> Option<&ContainerStatus> {
    let statuses = pod.status.as_ref()?.container_statuses.as_ref()?;
    statuses
        .iter()
        .find(|c| c.name == CONTAINER)
        .or_else(|| statuses.first())
}

/// "OOMKilled, exit code 137" for a container that ended with an error.
fn last_exit(container: &ContainerStatus) -> Option<String> {
    let terminated = container.last_state.as_ref()?.terminated.as_ref()?;
    if terminated.exit_code == 0 {
        return None;
    }
    let reason = terminated.reason.as_deref().unwrap_or("Error");
    Some(format!("{reason}, exit code {}", terminated.exit_code))
}

/// The message of a true `ReplicaFailure` condition: the ReplicaSet could
/// not create the pod at all.
fn replica_failure(deployment: &Deployment) -> Option<String> {
    let conditions = deployment.status.as_ref()?.conditions.as_ref()?;
    let failure = conditions.iter().find(|c| {
        c.type_.as_deref() == Some("ReplicaFailure") && c.status.as_deref() == Some("True")
    })?;
    Some(match (&failure.reason, &failure.message) {
        (Some(reason), Some(message)) => format!("{reason}: {message}"),
        (Some(text), None) | (None, Some(text)) => text.clone(),
        (None, None) => "the pod could not be created".to_owned(),
    })
}

#[cfg(test)]
#[path = "phase_tests.rs"]
mod tests;
