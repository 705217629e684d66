use super::*;
use k8s_openapi::api::apps::v1::{DeploymentCondition, DeploymentSpec, DeploymentStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

macro_rules! pod {
    ($name:literal) => {
        serde_json::from_str::<Pod>(include_str!(concat!("../tests/data/pods/", $name, ".json")))
            .expect(concat!($name, ".json is a pod"))
    };
}

fn deployment(replicas: i32) -> Deployment {
    Deployment {
        spec: DeploymentSpec {
            replicas: Some(replicas),
            ..Default::default()
        },
        ..Default::default()
    }
}

fn observed(pod: Pod) -> Observation {
    observe(&deployment(1), [&pod])
}

fn failed_message(observation: Observation) -> String {
    assert_eq!(observation.phase, Phase::Failed, "{observation:?}");
    observation.message.expect("a failure says why")
}

#[test]
fn pending_and_creating_pods_are_starting() {
    for pod in [
        pod!("pending"),
        pod!("container-creating"),
        pod!("running-not-ready"),
    ] {
        assert_eq!(observed(pod), Observation::phase(Phase::Starting));
    }
}

#[test]
fn a_ready_pod_is_running() {
    assert_eq!(observed(pod!("ready")), Observation::phase(Phase::Running));
}

#[test]
fn image_pull_failures_fail_with_kubernetes_reason_and_message() {
    let message = failed_message(observed(pod!("image-pull-backoff")));
    assert!(
        message.starts_with(
            "Kubernetes cannot run the session: ImagePullBackOff: Back-off pulling image \
             \"registry.example.com/streamspace/desktop:1.0\""
        ),
        "{message}"
    );
    assert!(
        message.ends_with(
            "; image registry.example.com/streamspace/desktop:1.0 not found in \
             registry.example.com"
        ),
        "{message}"
    );
    let message = failed_message(observed(pod!("err-image-pull")));
    assert!(message.contains("ErrImagePull: rpc error"), "{message}");

    // A registry that refuses: where credentials come from on Kubernetes.
    let mut refused = pod!("err-image-pull");
    let waiting = (refused.status.as_mut())
        .and_then(|s| s.container_statuses.as_mut())
        .and_then(|c| c[0].state.as_mut())
        .and_then(|s| s.waiting.as_mut())
        .expect("waiting");
    waiting.message = Some(
        "failed to pull and unpack image: 401 Unauthorized: authentication required".to_owned(),
    );
    let message = failed_message(observed(refused));
    assert!(
        message.ends_with(
            "; the registry refused the credentials for registry.example.com (or none were \
             given: set the template's registry_auth, or give the namespace's service account \
             an imagePullSecret for it)"
        ),
        "{message}"
    );
}

#[test]
fn crash_loops_fail_with_the_last_exit() {
    let message = failed_message(observed(pod!("crash-loop-backoff")));
    assert!(
        message.contains("CrashLoopBackOff: back-off 40s restarting failed container=session"),
        "{message}"
    );
    assert!(
        message.ends_with("(last exit: Error, exit code 1)"),
        "{message}"
    );
}

#[test]
fn a_crashed_container_that_is_not_ready_again_failed() {
    let message = failed_message(observed(pod!("restarted-after-oom")));
    assert!(message.contains("OOMKilled, exit code 137"), "{message}");
}

#[test]
fn unschedulable_fails_with_the_schedulers_message() {
    let message = failed_message(observed(pod!("unschedulable")));
    assert!(
        message.starts_with(
            "Kubernetes cannot run the session: Unschedulable: 0/3 nodes are available: 3 Insufficient cpu."
        ),
        "{message}"
    );
}

#[test]
fn scaled_to_zero_is_hibernated_even_while_the_pod_stops() {
    let pod = pod!("ready");
    assert_eq!(
        observe(&deployment(0), [&pod]),
        Observation::phase(Phase::Hibernated)
    );
    assert_eq!(
        observe(&deployment(0), []),
        Observation::phase(Phase::Hibernated)
    );
}

#[test]
fn a_deployment_being_deleted_is_stopping() {
    let mut deleting = deployment(1);
    deleting.metadata.deletion_timestamp = Some(Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH));
    assert_eq!(observe(&deleting, []).phase, Phase::Stopping);
}

#[test]
fn no_pod_yet_is_starting_unless_the_replica_set_cannot_create_it() {
    assert_eq!(
        observe(&deployment(1), []),
        Observation::phase(Phase::Starting)
    );
    let mut refused = deployment(1);
    refused.status = Some(DeploymentStatus {
        conditions: Some(vec![DeploymentCondition {
            type_: Some("ReplicaFailure".into()),
            status: Some("True".into()),
            reason: Some("FailedCreate".into()),
            message: Some(
                "pods \"streamspace-x-1\" is forbidden: exceeded quota: sessions, requested: \
                 cpu=2, used: cpu=8, limited: cpu=8"
                    .into(),
            ),
            ..Default::default()
        }]),
        ..Default::default()
    });
    let message = failed_message(observe(&refused, []));
    assert!(
        message.contains(
            "ReplicaFailure: FailedCreate: pods \"streamspace-x-1\" is forbidden: exceeded quota"
        ),
        "{message}"
    );
}

#[test]
fn an_evicted_pod_is_ignored_while_its_replacement_runs() {
    let evicted = pod!("evicted");
    let ready = pod!("ready");
    assert_eq!(
        observe(&deployment(1), [&evicted, &ready]).phase,
        Phase::Running
    );
    // Only the evicted pod left: its replacement is about to be created.
    assert_eq!(observe(&deployment(1), [&evicted]).phase, Phase::Starting);
}

#[test]
fn the_newest_live_pod_decides() {
    let old = pod!("crash-loop-backoff");
    let mut new = pod!("ready");
    new.metadata.name = Some("newer".into());
    new.metadata.creation_timestamp =
        Some(Time("2026-05-04T11:00:00Z".parse().expect("timestamp")));
    let chosen = current_pod([&old, &new]).expect("a pod");
    assert_eq!(chosen.metadata.name.as_deref(), Some("newer"));

    let mut deleting = new.clone();
    deleting.metadata.deletion_timestamp = Some(Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH));
    let chosen = current_pod([&old, &deleting]).expect("a pod");
    assert_ne!(chosen.metadata.name.as_deref(), Some("newer"));
}

#[test]
fn readiness_comes_from_the_ready_condition() {
    assert!(is_ready(&pod!("ready")));
    assert!(!is_ready(&pod!("running-not-ready")));
    assert!(!is_ready(&pod!("pending")));
}
