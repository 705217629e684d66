//! A template's registry credentials on Kubernetes: the exact requests that
//! make the session's image pull Secret, name it in the pod, keep it across
//! hibernation and delete it with the session.

use crate::apiserver::*;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use streamspace_agent::{Platform, PlatformError};
use streamspace_kubernetes::pull_secret::docker_config;
use streamspace_protocol::{Phase, SessionSpec};

const SECRET: &str = "streamspace-0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b-pull";
const SECRETS: &str = "/api/v1/namespaces/streamspace/secrets?";
const SECRET_PATH: &str =
    "/api/v1/namespaces/streamspace/secrets/streamspace-0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b-pull?";
const ACCOUNT_PATH: &str = "/api/v1/namespaces/streamspace/serviceaccounts/default";
const SECRET_UID: &str = "5ec2e7a1-0000-4000-8000-000000000001";
const PASSWORD: &str = "hunter2-registry-password";

/// A session without a home whose template has registry credentials.
fn private_spec() -> SessionSpec {
    spec(false).with_registry_auth("robot", PASSWORD)
}

/// The session's Deployment as the apiserver has it, its pods naming the
/// pull Secret when `names_secret`.
fn deployment_with_secret(replicas: i32, names_secret: bool) -> Value {
    let mut d = deployment_json(replicas, replicas);
    if names_secret {
        d["spec"]["template"]["spec"]["imagePullSecrets"] = json!([{"name": SECRET}]);
    }
    d
}

fn service_account(pull_secrets: Value) -> Value {
    json!({
        "apiVersion": "v1", "kind": "ServiceAccount",
        "metadata": {"name": "default", "namespace": NS},
        "imagePullSecrets": pull_secrets,
    })
}

fn deleted(name: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
           "details": {"name": name, "kind": "secrets", "uid": SECRET_UID}})
}

/// Answers the Secret's creation with `status`, checking its content.
async fn expect_secret_created(server: &mut ApiServer, status: u16) {
    let call = server.expect("POST", SECRETS).await;
    let body = &call.body;
    assert_eq!(
        (body["apiVersion"].as_str(), body["kind"].as_str()),
        (Some("v1"), Some("Secret"))
    );
    assert_eq!(body["metadata"]["name"], SECRET);
    assert_eq!(body["metadata"]["namespace"], NS);
    assert_eq!(body["type"], "kubernetes.io/dockerconfigjson");
    assert_eq!(body["immutable"], true);
    let labels = &body["metadata"]["labels"];
    assert_eq!(labels["app.kubernetes.io/managed-by"], "streamspace");
    assert_eq!(labels["app.kubernetes.io/name"], "streamspace-pull-secret");
    assert_eq!(labels["io.streamspace.session-id"], SESSION);
    assert_eq!(labels["io.streamspace.agent"], AGENT);
    assert_eq!(labels["io.streamspace.user"], "alice");
    let data = body["data"].as_object().expect("data");
    assert_eq!(data.keys().collect::<Vec<_>>(), [".dockerconfigjson"]);
    let config = STANDARD
        .decode(data[".dockerconfigjson"].as_str().expect("base64 text"))
        .expect("base64");
    let config: Value = serde_json::from_slice(&config).expect("JSON");
    // The image's registry alone, as the kubelet reads it.
    assert_eq!(
        config,
        json!({"auths": {"registry.example.com": {
            "username": "robot", "password": PASSWORD,
            "auth": STANDARD.encode(format!("robot:{PASSWORD}")),
        }}})
    );
    if status == 201 {
        let mut made = call.body.clone();
        made["metadata"]["uid"] = json!(SECRET_UID);
        call.respond(201, made);
    } else {
        call.fail(409, "AlreadyExists", "secrets \"…-pull\" already exists");
    }
}

/// The Deployment's creation, answered with `status`; returns the pod's
/// `imagePullSecrets`.
async fn expect_deployment_created(server: &mut ApiServer, status: u16) -> Value {
    let call = server.expect("POST", &format!("{DEPLOYMENTS}?")).await;
    let secrets = call.body["spec"]["template"]["spec"]["imagePullSecrets"].clone();
    match status {
        201 => {
            let body = call.body.clone();
            call.respond(201, body);
        }
        409 => call.fail(409, "AlreadyExists", "deployments.apps exists"),
        code => call.fail(code, "Invalid", "spec.template: Invalid value"),
    }
    secrets
}

/// The deletion of the Secret a failed start made: only that one (its uid).
async fn expect_made_secret_deleted(server: &mut ApiServer) {
    let call = server.expect("DELETE", SECRET_PATH).await;
    assert_eq!(call.body["preconditions"]["uid"], SECRET_UID);
    call.respond(200, deleted(SECRET));
}

#[tokio::test]
async fn start_makes_the_pull_secret_before_the_deployment_that_names_it() {
    let (platform, mut server) = platform();
    let verifier = tokio::spawn(async move {
        // The pod names secrets itself, so Kubernetes would no longer add
        // the service account's: the agent adds them.
        server
            .expect("GET", ACCOUNT_PATH)
            .await
            .respond(200, service_account(json!([{"name": "team-registry"}])));
        expect_secret_created(&mut server, 201).await;
        let named = expect_deployment_created(&mut server, 201).await;
        assert_eq!(named, json!([{"name": SECRET}, {"name": "team-registry"}]));
        server.expect_nothing_more().await;
    });
    let report = within(platform.start(&private_spec()))
        .await
        .expect("starts");
    assert_eq!(report.phase, Phase::Starting);
    within(verifier).await.expect("scenario");
}

#[tokio::test]
async fn a_service_account_the_agent_may_not_read_leaves_the_sessions_own_secret() {
    let (platform, mut server) = platform();
    let verifier = tokio::spawn(async move {
        server.expect("GET", ACCOUNT_PATH).await.fail(
            403,
            "Forbidden",
            "serviceaccounts \"default\" is forbidden",
        );
        expect_secret_created(&mut server, 201).await;
        let named = expect_deployment_created(&mut server, 201).await;
        assert_eq!(named, json!([{"name": SECRET}]));
    });
    within(platform.start(&private_spec()))
        .await
        .expect("starts");
    within(verifier).await.expect("scenario");
}

/// A start delivered again after hibernation: a Secret someone deleted is
/// made again, one that exists is kept; the Deployment is scaled up.
#[tokio::test]
async fn a_redelivered_start_remakes_a_missing_secret_and_keeps_an_existing_one() {
    for secret_status in [201, 409] {
        let (platform, mut server) = platform();
        let verifier = tokio::spawn(async move {
            server
                .expect("GET", ACCOUNT_PATH)
                .await
                .fail(404, "NotFound", "no");
            expect_secret_created(&mut server, secret_status).await;
            expect_deployment_created(&mut server, 409).await;
            server
                .expect("GET", DEPLOYMENT_PATH)
                .await
                .respond(200, deployment_with_secret(0, true));
            expect_scale(&mut server, 1).await;
            // No deletion: the Deployment names the Secret.
            server.expect_nothing_more().await;
        });
        within(platform.start(&private_spec()))
            .await
            .expect("starts");
        within(verifier).await.expect("scenario");
    }
}

#[tokio::test]
async fn a_failed_start_removes_the_pull_secret_it_made() {
    let (platform, mut server) = platform();
    let verifier = tokio::spawn(async move {
        server
            .expect("GET", ACCOUNT_PATH)
            .await
            .respond(200, service_account(Value::Null));
        expect_secret_created(&mut server, 201).await;
        expect_deployment_created(&mut server, 422).await;
        expect_made_secret_deleted(&mut server).await;
    });
    let err = within(platform.start(&private_spec()))
        .await
        .expect_err("refused");
    assert!(matches!(err, PlatformError::Invalid(_)), "{err:?}");
    within(verifier).await.expect("scenario");
}

/// Another agent's Deployment of the same name, or one of this agent's
/// made before pull Secrets (its pods do not name one): the Secret this
/// start made goes again.
#[tokio::test]
async fn a_secret_no_deployment_of_ours_names_is_removed_again() {
    let ours_from_before = deployment_with_secret(1, false);
    for (existing, starts) in [(foreign_deployment(), false), (ours_from_before, true)] {
        let (platform, mut server) = platform();
        let verifier = tokio::spawn(async move {
            server
                .expect("GET", ACCOUNT_PATH)
                .await
                .fail(404, "NotFound", "no");
            expect_secret_created(&mut server, 201).await;
            expect_deployment_created(&mut server, 409).await;
            server
                .expect("GET", DEPLOYMENT_PATH)
                .await
                .respond(200, existing);
            expect_made_secret_deleted(&mut server).await;
        });
        let started = within(platform.start(&private_spec())).await;
        assert_eq!(started.is_ok(), starts, "{started:?}");
        within(verifier).await.expect("scenario");
    }
}

#[tokio::test]
async fn hibernate_and_wake_leave_the_pull_secret() {
    let (platform, mut server) = platform();
    let verifier = tokio::spawn(async move {
        for (before, after) in [(1, 0), (0, 1)] {
            server
                .expect("GET", DEPLOYMENT_PATH)
                .await
                .respond(200, deployment_with_secret(before, true));
            expect_scale(&mut server, after).await;
        }
        server.expect_nothing_more().await;
    });
    let hibernated = within(platform.hibernate(&session_id()))
        .await
        .expect("hibernates");
    assert_eq!(hibernated.phase, Phase::Hibernated);
    let woken = within(platform.wake(&session_id())).await.expect("wakes");
    assert_eq!(woken.phase, Phase::Waking);
    within(verifier).await.expect("scenario");
}

/// Terminate deletes the Secret the Deployment names, then the
/// Deployment; a Secret already gone is fine.
#[tokio::test]
async fn terminate_deletes_the_pull_secret_then_the_deployment() {
    for secret_gone in [false, true] {
        let (platform, mut server) = platform();
        let verifier = tokio::spawn(async move {
            server
                .expect("GET", DEPLOYMENT_PATH)
                .await
                .respond(200, deployment_with_secret(1, true));
            let call = server.expect("DELETE", SECRET_PATH).await;
            if secret_gone {
                call.fail(404, "NotFound", "secrets not found");
            } else {
                call.respond(200, deleted(SECRET));
            }
            let call = server
                .expect("DELETE", &format!("{DEPLOYMENT_PATH}?"))
                .await;
            call.respond(200, deployment_with_secret(1, true));
        });
        let report = within(platform.terminate(&session_id()))
            .await
            .expect("terminates");
        assert_eq!(report.phase, Phase::Terminated);
        within(verifier).await.expect("scenario");
    }
}

/// If the Secret cannot be deleted the Deployment stays, so a retried
/// terminate still knows the Secret is the session's.
#[tokio::test]
async fn terminate_keeps_the_deployment_while_its_secret_cannot_be_deleted() {
    let (platform, mut server) = platform();
    let verifier = tokio::spawn(async move {
        server
            .expect("GET", DEPLOYMENT_PATH)
            .await
            .respond(200, deployment_with_secret(1, true));
        server
            .expect("DELETE", SECRET_PATH)
            .await
            .fail(403, "Forbidden", "secrets is forbidden");
        server.expect_nothing_more().await;
    });
    let err = within(platform.terminate(&session_id()))
        .await
        .expect_err("forbidden");
    assert!(
        matches!(&err, PlatformError::Invalid(m) if m.contains("delete secret") && m.contains("Role")),
        "{err:?}"
    );
    within(verifier).await.expect("scenario");
}

/// Everything the platform logs, at every level, while it starts and
/// terminates a session with credentials: never the password, nor the
/// Secret's content.
#[tokio::test]
async fn the_credentials_are_never_logged() {
    let logs = Logs::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(logs.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let (platform, mut server) = platform();
    let verifier = tokio::spawn(async move {
        server
            .expect("GET", ACCOUNT_PATH)
            .await
            .fail(404, "NotFound", "no");
        expect_secret_created(&mut server, 201).await;
        expect_deployment_created(&mut server, 422).await;
        expect_made_secret_deleted(&mut server).await;
        server
            .expect("GET", DEPLOYMENT_PATH)
            .await
            .respond(200, deployment_with_secret(1, true));
        server
            .expect("DELETE", SECRET_PATH)
            .await
            .respond(200, deleted(SECRET));
        server
            .expect("DELETE", &format!("{DEPLOYMENT_PATH}?"))
            .await
            .respond(200, deployment_with_secret(1, true));
    });
    let err = within(platform.start(&private_spec()))
        .await
        .expect_err("refused");
    tracing::error!(error = %err, "the start failed");
    within(platform.terminate(&session_id()))
        .await
        .expect("terminates");
    within(verifier).await.expect("scenario");

    let text = logs.text();
    assert!(text.contains(SECRET), "the Secret's name is logged: {text}");
    let basic = STANDARD.encode(format!("robot:{PASSWORD}"));
    let spec = private_spec();
    let auth = spec.registry_auth.as_ref().expect("credentials");
    let content = STANDARD.encode(docker_config(&spec.image, auth));
    for secret in [PASSWORD, basic.as_str(), content.as_str()] {
        assert!(!text.contains(secret), "{secret} is in the log: {text}");
    }
    assert!(!text.contains("dockerconfigjson\":"), "{text}");
}

/// A log sink the test reads back.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl Logs {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("logs")).into_owned()
    }
}

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("logs").extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Logs {
    type Writer = Logs;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}
