//! The exact apiserver requests of start, hibernate, wake and terminate,
//! as a scenario per lifecycle step (the controller-rs fixtures pattern).

use crate::apiserver::*;
use serde_json::json;
use streamspace_agent::{Platform, PlatformError};
use streamspace_protocol::Phase;
use tokio::task::JoinHandle;

/// What the apiserver sees, and answers, for one lifecycle step.
enum Scenario {
    /// start with a persistent home: claim, then Deployment.
    CreateWithHome,
    /// start without a home: the Deployment alone.
    CreateWithoutHome,
    /// start again after hibernation (the command was re-delivered):
    /// both exist, the Deployment is scaled back to 1.
    StartExistingHibernated,
    /// start finds a Deployment of the same name another agent owns.
    StartForeign,
    HibernateRunning,
    HibernateAlreadyHibernated,
    WakeHibernated,
    TerminateRunning,
    TerminateMissing,
    TerminateForeign,
    /// start after the upgrade to id-keyed homes: the new claim does not
    /// exist, the old one is labelled for this user and template: the
    /// Deployment mounts the old one and no claim is created.
    StartOnLegacyHome,
    /// A claim of the old name is labelled for someone else (names joined
    /// by '-' were ambiguous; an operator may have made it): the new claim
    /// is created and used.
    StartBesideAnotherUsersLegacyHome,
    /// The new claim exists: it is used, the old one is not looked at.
    StartOnNewHomeWithLegacyNamed,
}

const CLAIMS: &str = "/api/v1/namespaces/streamspace/persistentvolumeclaims?";
const NEW_HOME: &str =
    "streamspace-home-0190a1b2-0000-7000-8000-00000000000a-0190a1b2-0000-7000-8000-00000000000b";
const OLD_HOME: &str = "streamspace-home-alice-desktop";

fn claim_path(name: &str) -> String {
    format!("/api/v1/namespaces/streamspace/persistentvolumeclaims/{name}")
}

/// A claim as the apiserver returns it, labelled for `user` and `template`.
fn claim_json(name: &str, user: &str, template: &str) -> serde_json::Value {
    json!({
        "apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": name, "namespace": NS, "labels": {
            "app.kubernetes.io/managed-by": "streamspace",
            "io.streamspace.user": user, "io.streamspace.template": template,
        }},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "10Gi"}}},
        "status": {"phase": "Bound"},
    })
}

/// The spec of a user from before the upgrade: an id-keyed home that names
/// the old one as legacy.
fn upgraded_spec() -> streamspace_protocol::SessionSpec {
    let mut spec = spec(true);
    if let Some(home) = spec.home.as_mut() {
        home.volume = NEW_HOME.into();
        home.legacy = Some(OLD_HOME.into());
    }
    spec
}

/// The new claim is not there; the old one is, labelled for `user` and
/// the template desktop.
async fn expect_only_the_old_claim(server: &mut ApiServer, user: &str) {
    server.expect("GET", &claim_path(NEW_HOME)).await.fail(
        404,
        "NotFound",
        "persistentvolumeclaims not found",
    );
    server
        .expect("GET", &claim_path(OLD_HOME))
        .await
        .respond(200, claim_json(OLD_HOME, user, "desktop"));
}

async fn expect_deployment_on(server: &mut ApiServer, claim: &str) {
    let call = server.expect("POST", &format!("{DEPLOYMENTS}?")).await;
    assert_eq!(
        call.body["spec"]["template"]["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"],
        claim
    );
    let body = call.body.clone();
    call.respond(201, body);
}

impl Scenario {
    fn run(self, mut server: ApiServer) -> JoinHandle<()> {
        tokio::spawn(async move {
            match self {
                Scenario::CreateWithHome => {
                    let call = server.expect("POST", CLAIMS).await;
                    assert_claim(&call.body);
                    let body = call.body.clone();
                    call.respond(201, body);
                    let call = server.expect("POST", &format!("{DEPLOYMENTS}?")).await;
                    assert_deployment(&call.body, true);
                    let body = call.body.clone();
                    call.respond(201, body);
                }
                Scenario::CreateWithoutHome => {
                    let call = server.expect("POST", &format!("{DEPLOYMENTS}?")).await;
                    assert_deployment(&call.body, false);
                    let body = call.body.clone();
                    call.respond(201, body);
                }
                Scenario::StartExistingHibernated => {
                    server.expect("POST", CLAIMS).await.fail(
                        409,
                        "AlreadyExists",
                        "persistentvolumeclaims \"streamspace-home-alice-desktop\" already exists",
                    );
                    server.expect("POST", &format!("{DEPLOYMENTS}?")).await.fail(
                        409,
                        "AlreadyExists",
                        "deployments.apps \"streamspace-0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b\" already exists",
                    );
                    server
                        .expect("GET", DEPLOYMENT_PATH)
                        .await
                        .respond(200, deployment_json(0, 0));
                    expect_scale(&mut server, 1).await;
                }
                Scenario::StartForeign => {
                    server
                        .expect("POST", CLAIMS)
                        .await
                        .fail(409, "AlreadyExists", "exists");
                    server
                        .expect("POST", &format!("{DEPLOYMENTS}?"))
                        .await
                        .fail(409, "AlreadyExists", "exists");
                    server
                        .expect("GET", DEPLOYMENT_PATH)
                        .await
                        .respond(200, foreign_deployment());
                }
                Scenario::HibernateRunning => {
                    server
                        .expect("GET", DEPLOYMENT_PATH)
                        .await
                        .respond(200, deployment_json(1, 1));
                    expect_scale(&mut server, 0).await;
                }
                Scenario::HibernateAlreadyHibernated => {
                    server
                        .expect("GET", DEPLOYMENT_PATH)
                        .await
                        .respond(200, deployment_json(0, 0));
                }
                Scenario::WakeHibernated => {
                    server
                        .expect("GET", DEPLOYMENT_PATH)
                        .await
                        .respond(200, deployment_json(0, 0));
                    expect_scale(&mut server, 1).await;
                }
                Scenario::TerminateRunning => {
                    server
                        .expect("GET", DEPLOYMENT_PATH)
                        .await
                        .respond(200, deployment_json(1, 1));
                    let call = server
                        .expect("DELETE", &format!("{DEPLOYMENT_PATH}?"))
                        .await;
                    // Background: the apiserver answers at once and the
                    // garbage collector removes the ReplicaSet and pod.
                    assert_eq!(call.body["propagationPolicy"], "Background");
                    call.respond(200, deployment_json(1, 1));
                    // No request for the claim follows: the home is kept.
                }
                Scenario::TerminateMissing => {
                    server.expect("GET", DEPLOYMENT_PATH).await.fail(
                        404,
                        "NotFound",
                        "deployments.apps \"streamspace-0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b\" not found",
                    );
                }
                Scenario::TerminateForeign => {
                    server
                        .expect("GET", DEPLOYMENT_PATH)
                        .await
                        .respond(200, foreign_deployment());
                }
                Scenario::StartOnLegacyHome => {
                    expect_only_the_old_claim(&mut server, "alice").await;
                    expect_deployment_on(&mut server, OLD_HOME).await;
                }
                Scenario::StartBesideAnotherUsersLegacyHome => {
                    expect_only_the_old_claim(&mut server, "someone-else").await;
                    let call = server.expect("POST", CLAIMS).await;
                    assert_eq!(call.body["metadata"]["name"], NEW_HOME);
                    let body = call.body.clone();
                    call.respond(201, body);
                    expect_deployment_on(&mut server, NEW_HOME).await;
                }
                Scenario::StartOnNewHomeWithLegacyNamed => {
                    server
                        .expect("GET", &claim_path(NEW_HOME))
                        .await
                        .respond(200, claim_json(NEW_HOME, "alice", "desktop"));
                    server
                        .expect("POST", CLAIMS)
                        .await
                        .fail(409, "AlreadyExists", "exists");
                    expect_deployment_on(&mut server, NEW_HOME).await;
                }
            }
        })
    }
}

fn assert_claim(body: &serde_json::Value) {
    assert_eq!(body["apiVersion"], "v1");
    assert_eq!(body["kind"], "PersistentVolumeClaim");
    assert_eq!(body["metadata"]["name"], "streamspace-home-alice-desktop");
    assert_eq!(body["metadata"]["labels"]["io.streamspace.user"], "alice");
    assert_eq!(body["metadata"]["labels"]["io.streamspace.agent"], AGENT);
    assert_eq!(body["spec"]["accessModes"], json!(["ReadWriteOnce"]));
    assert_eq!(body["spec"]["resources"]["requests"]["storage"], "10Gi");
}

fn assert_deployment(body: &serde_json::Value, home: bool) {
    assert_eq!(body["apiVersion"], "apps/v1");
    assert_eq!(body["kind"], "Deployment");
    assert_eq!(body["metadata"]["name"], DEPLOYMENT);
    assert_eq!(body["metadata"]["namespace"], NS);
    let labels = &body["metadata"]["labels"];
    assert_eq!(labels["app.kubernetes.io/managed-by"], "streamspace");
    assert_eq!(labels["app.kubernetes.io/name"], "streamspace-session");
    assert_eq!(labels["io.streamspace.session-id"], SESSION);
    assert_eq!(labels["io.streamspace.user"], "alice");
    assert_eq!(labels["io.streamspace.template"], "desktop");
    assert_eq!(labels["io.streamspace.agent"], AGENT);
    assert_eq!(body["spec"]["replicas"], 1);
    assert_eq!(body["spec"]["strategy"]["type"], "Recreate");
    assert_eq!(
        body["spec"]["selector"]["matchLabels"],
        json!({"app.kubernetes.io/managed-by": "streamspace", "io.streamspace.session-id": SESSION})
    );
    let pod = &body["spec"]["template"]["spec"];
    assert_eq!(pod["automountServiceAccountToken"], false);
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    let container = &pod["containers"][0];
    assert_eq!(container["name"], "session");
    assert_eq!(
        container["image"],
        "registry.example.com/streamspace/desktop:1.0"
    );
    assert_eq!(
        container["env"],
        json!([{"name": "VNC_GEOMETRY", "value": "1280x800"}])
    );
    assert_eq!(
        container["ports"],
        json!([{"name": "vnc", "containerPort": 5901, "protocol": "TCP"}])
    );
    let limits = json!({"cpu": "1", "memory": "1Gi"});
    assert_eq!(container["resources"]["limits"], limits);
    assert_eq!(container["resources"]["requests"], limits);
    if home {
        assert_eq!(
            pod["volumes"],
            json!([{"name": "home", "persistentVolumeClaim": {"claimName": "streamspace-home-alice-desktop"}}])
        );
        assert_eq!(
            container["volumeMounts"],
            json!([{"name": "home", "mountPath": "/home/user"}])
        );
    } else {
        assert!(pod.get("volumes").is_none(), "{pod}");
    }
}

#[tokio::test]
async fn start_creates_the_home_claim_then_the_deployment() {
    let (platform, server) = platform();
    let verifier = Scenario::CreateWithHome.run(server);
    let report = within(platform.start(&spec(true))).await.expect("starts");
    assert_eq!(report.phase, Phase::Starting);
    within(verifier).await.expect("scenario");
}

#[tokio::test]
async fn start_without_home_creates_only_the_deployment() {
    let (platform, server) = platform();
    let verifier = Scenario::CreateWithoutHome.run(server);
    let report = within(platform.start(&spec(false))).await.expect("starts");
    assert_eq!(report.phase, Phase::Starting);
    within(verifier).await.expect("scenario");
}

#[tokio::test]
async fn start_is_idempotent_and_scales_a_hibernated_session_up() {
    let (platform, server) = platform();
    let verifier = Scenario::StartExistingHibernated.run(server);
    let report = within(platform.start(&spec(true))).await.expect("starts");
    assert_eq!(report.phase, Phase::Starting);
    within(verifier).await.expect("scenario");
}

#[tokio::test]
async fn start_refuses_to_adopt_another_agents_deployment() {
    let (platform, server) = platform();
    let verifier = Scenario::StartForeign.run(server);
    let err = within(platform.start(&spec(true)))
        .await
        .expect_err("not ours");
    assert!(
        matches!(&err, PlatformError::Invalid(m) if m.contains("belongs to agent \"agent-2\"")),
        "{err:?}"
    );
    within(verifier).await.expect("scenario");
}

#[tokio::test]
async fn start_refuses_an_id_that_cannot_name_a_deployment_without_asking() {
    let (platform, _server) = platform();
    let mut bad = spec(false);
    bad.session_id = "Session_1".into();
    let err = within(platform.start(&bad)).await.expect_err("invalid");
    assert!(matches!(err, PlatformError::Invalid(_)), "{err:?}");
}

#[tokio::test]
async fn hibernate_scales_to_zero() {
    let (platform, server) = platform();
    let verifier = Scenario::HibernateRunning.run(server);
    let report = within(platform.hibernate(&session_id()))
        .await
        .expect("hibernates");
    assert_eq!(report.phase, Phase::Hibernated);
    within(verifier).await.expect("scenario");
}

#[tokio::test]
async fn hibernate_twice_changes_nothing() {
    let (platform, server) = platform();
    let verifier = Scenario::HibernateAlreadyHibernated.run(server);
    let report = within(platform.hibernate(&session_id()))
        .await
        .expect("hibernates");
    assert_eq!(report.phase, Phase::Hibernated);
    within(verifier).await.expect("scenario");
}

#[tokio::test]
async fn wake_scales_to_one() {
    let (platform, server) = platform();
    let verifier = Scenario::WakeHibernated.run(server);
    let report = within(platform.wake(&session_id())).await.expect("wakes");
    assert_eq!(report.phase, Phase::Waking);
    within(verifier).await.expect("scenario");
}

/// A Deployment made while the operator allowed SYS_ADMIN is not scaled up
/// once the allowance is gone, nor a privileged one (no scale request: an
/// unanswered one would time the test out).
#[tokio::test]
async fn wake_refuses_pods_with_more_than_the_agent_allows_now() {
    for (field, value) in [
        (
            "capabilities",
            json!({"drop": ["ALL"], "add": ["SYS_ADMIN"]}),
        ),
        ("privileged", json!(true)),
    ] {
        let (platform, mut server) = platform();
        let mut deployment = deployment_json(0, 0);
        deployment["spec"]["template"]["spec"]["containers"][0]["securityContext"][field] = value;
        let answering = async {
            server
                .expect("GET", DEPLOYMENT_PATH)
                .await
                .respond(200, deployment);
        };
        let (woken, ()) = within(futures::future::join(
            platform.wake(&session_id()),
            answering,
        ))
        .await;
        let Err(PlatformError::Invalid(message)) = woken else {
            panic!("{field}: expected a refusal, got {woken:?}");
        };
        assert!(message.contains("not scaled up"), "{message}");
    }
}

#[tokio::test]
async fn terminate_deletes_the_deployment_and_keeps_the_claim() {
    let (platform, server) = platform();
    let verifier = Scenario::TerminateRunning.run(server);
    let report = within(platform.terminate(&session_id()))
        .await
        .expect("terminates");
    assert_eq!(report.phase, Phase::Terminated);
    within(verifier).await.expect("scenario");
}

#[tokio::test]
async fn terminate_of_a_missing_session_is_terminated() {
    let (platform, server) = platform();
    let verifier = Scenario::TerminateMissing.run(server);
    let report = within(platform.terminate(&session_id()))
        .await
        .expect("terminates");
    assert_eq!(report.phase, Phase::Terminated);
    within(verifier).await.expect("scenario");
}

#[tokio::test]
async fn terminate_never_deletes_another_agents_deployment() {
    let (platform, server) = platform();
    let verifier = Scenario::TerminateForeign.run(server);
    let report = within(platform.terminate(&session_id()))
        .await
        .expect("terminates");
    assert_eq!(report.phase, Phase::Terminated);
    within(verifier).await.expect("scenario");
}

#[tokio::test]
async fn an_upgrade_keeps_a_users_old_home_claim() {
    start_upgraded(Scenario::StartOnLegacyHome).await;
}

#[tokio::test]
async fn an_old_claim_of_another_user_is_not_taken() {
    start_upgraded(Scenario::StartBesideAnotherUsersLegacyHome).await;
}

#[tokio::test]
async fn the_new_home_claim_wins_once_it_exists() {
    start_upgraded(Scenario::StartOnNewHomeWithLegacyNamed).await;
}

/// Starts the session of a user from before the upgrade in `scenario`.
async fn start_upgraded(scenario: Scenario) {
    let (platform, server) = platform();
    let verifier = scenario.run(server);
    let report = within(platform.start(&upgraded_spec()))
        .await
        .expect("starts");
    assert_eq!(report.phase, Phase::Starting);
    within(verifier).await.expect("scenario");
}

/// A session without a home that mounts the shared claim `datasets`.
fn spec_with_datasets() -> streamspace_protocol::SessionSpec {
    let mut spec = spec(false);
    spec.volumes = vec![streamspace_protocol::SharedVolume {
        source: "datasets".into(),
        path: "/data".into(),
        read_only: true,
    }];
    spec
}

#[tokio::test]
async fn a_missing_shared_claim_fails_the_start_with_its_name_and_makes_nothing() {
    let (platform, mut server) = platform();
    let verifier = tokio::spawn(async move {
        server.expect("GET", &claim_path("datasets")).await.fail(
            404,
            "NotFound",
            "persistentvolumeclaims \"datasets\" not found",
        );
        // Nothing else is asked: no Deployment is made.
        server.expect_nothing_more().await;
    });
    let err = within(platform.start(&spec_with_datasets()))
        .await
        .expect_err("missing");
    assert!(
        matches!(&err, PlatformError::Invalid(m) if m.contains("\"datasets\"") && m.contains("does not exist")),
        "{err:?}"
    );
    within(verifier).await.expect("scenario");
}

#[tokio::test]
async fn an_existing_shared_claim_is_mounted_read_only_and_a_home_never_is() {
    let (platform, mut server) = platform();
    let verifier = tokio::spawn(async move {
        let shared = json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                            "metadata": {"name": "datasets", "namespace": NS}});
        server
            .expect("GET", &claim_path("datasets"))
            .await
            .respond(200, shared);
        let call = server.expect("POST", &format!("{DEPLOYMENTS}?")).await;
        let pod = &call.body["spec"]["template"]["spec"];
        assert_eq!(
            pod["volumes"][0]["persistentVolumeClaim"]["claimName"],
            "datasets"
        );
        assert_eq!(pod["volumes"][0]["persistentVolumeClaim"]["readOnly"], true);
        assert_eq!(
            pod["containers"][0]["volumeMounts"][0]["mountPath"],
            "/data"
        );
        let body = call.body.clone();
        call.respond(201, body);
        // The next start finds the claim is someone's home.
        server
            .expect("GET", &claim_path("datasets"))
            .await
            .respond(200, claim_json("datasets", "bob", "desktop"));
    });
    within(platform.start(&spec_with_datasets()))
        .await
        .expect("starts");
    let err = within(platform.start(&spec_with_datasets()))
        .await
        .expect_err("a home");
    assert!(err.to_string().contains("is a StreamSpace home"), "{err}");
    within(verifier).await.expect("scenario");
}
