//! A stand-in apiserver on kube's tower-test mock: each test reads the
//! requests the platform makes, asserts them exactly, and answers with
//! real-shaped objects.

use http::{Request, Response};
use http_body_util::BodyExt;
use kube::client::Body;
use serde_json::{Value, json};
use std::time::Duration;
use streamspace_kubernetes::objects::{deployment, validate};
use streamspace_kubernetes::{Client, KubernetesOptions, KubernetesPlatform, TunnelMode};
use streamspace_protocol::{AgentId, SessionId, SessionSpec};
use tower_test::mock::{Handle, SendResponse};

pub const NS: &str = "streamspace";
pub const AGENT: &str = "agent-1";
pub const SESSION: &str = "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b";
pub const DEPLOYMENT: &str = "streamspace-0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b";
pub const DEPLOYMENTS: &str = "/apis/apps/v1/namespaces/streamspace/deployments";
/// The session's Deployment.
pub const DEPLOYMENT_PATH: &str = "/apis/apps/v1/namespaces/streamspace/deployments/streamspace-0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b";
pub const PODS: &str = "/api/v1/namespaces/streamspace/pods";
/// `labelSelector` for everything agent-1 owns, URL-encoded.
pub const AGENT_SELECTOR: &str =
    "&labelSelector=app.kubernetes.io%2Fmanaged-by%3Dstreamspace%2Cio.streamspace.agent%3Dagent-1";
/// `labelSelector` for the pods of SESSION, URL-encoded.
pub const SESSION_SELECTOR: &str = "&labelSelector=app.kubernetes.io%2Fmanaged-by%3Dstreamspace%2Cio.streamspace.agent%3Dagent-1%2Cio.streamspace.session-id%3D0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b";

/// [`SESSION`] as the id the platform takes.
pub fn session_id() -> SessionId {
    SESSION.into()
}

/// [`AGENT`] as the id the platform takes.
pub fn agent_id() -> AgentId {
    AGENT.into()
}

/// How long a test waits for a request or an answer before failing.
const PATIENCE: Duration = Duration::from_secs(5);

pub struct ApiServer {
    handle: Handle<Request<Body>, Response<Body>>,
}

/// One request the platform made, with its JSON body (`null` if none).
pub struct Call {
    pub method: String,
    pub uri: String,
    pub content_type: Option<String>,
    pub body: Value,
    send: SendResponse<Response<Body>>,
}

pub fn mock_client() -> (Client, ApiServer) {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    (Client::new(service, NS), ApiServer { handle })
}

pub fn options() -> KubernetesOptions {
    KubernetesOptions {
        namespace: NS.into(),
        tunnel: TunnelMode::PodIp,
        ..KubernetesOptions::default()
    }
}

pub fn spec(home: bool) -> SessionSpec {
    let spec = SessionSpec::fixture(SESSION)
        .with_image("registry.example.com/streamspace/desktop:1.0")
        .with_env("VNC_GEOMETRY", "1280x800")
        .with_limits("1", "1Gi");
    match home {
        true => spec.with_home("streamspace-home-alice-desktop"),
        false => spec,
    }
}

/// The session's Deployment as the apiserver returns it: what the
/// platform creates, with `replicas` and status filled in.
pub fn deployment_json(replicas: i32, ready: i32) -> Value {
    let confinement = validate(&spec(true), &options()).expect("a valid spec");
    let made = deployment(&spec(true), &confinement, &agent_id(), &options(), &[]);
    let mut d = serde_json::to_value(made).expect("deployment serializes");
    d["metadata"]["uid"] = json!("d5a1e3c4-0000-4000-8000-000000000001");
    d["metadata"]["resourceVersion"] = json!("4711");
    d["metadata"]["creationTimestamp"] = json!("2026-05-04T10:00:00Z");
    d["spec"]["replicas"] = json!(replicas);
    d["status"] = json!({
        "observedGeneration": 1,
        "replicas": replicas,
        "readyReplicas": ready,
        "availableReplicas": ready,
    });
    d
}

/// A platform of agent [`AGENT`] in [`NS`] on the mocked apiserver.
pub fn platform() -> (KubernetesPlatform, ApiServer) {
    let (client, server) = mock_client();
    let platform = KubernetesPlatform::new(client, &agent_id(), options()).expect("platform");
    (platform, server)
}

/// The session's Deployment as another agent (`agent-2`) made it.
pub fn foreign_deployment() -> Value {
    let mut d = deployment_json(1, 1);
    d["metadata"]["labels"]["io.streamspace.agent"] = json!("agent-2");
    d
}

/// A pod from `tests/data/pods/<name>.json`.
pub fn pod(name: &str) -> Value {
    let path = format!("{}/tests/data/pods/{name}.json", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).expect("pod fixture");
    serde_json::from_str(&text).expect("pod fixture is JSON")
}

pub fn list(kind: &str, items: Vec<Value>) -> Value {
    json!({
        "apiVersion": if kind == "DeploymentList" { "apps/v1" } else { "v1" },
        "kind": kind,
        "metadata": {"resourceVersion": "5000"},
        "items": items,
    })
}

impl ApiServer {
    /// Fails the test if the platform makes another request soon (what a
    /// refusal or a finished scenario must not be followed by).
    pub async fn expect_nothing_more(&mut self) {
        let more = tokio::time::timeout(std::time::Duration::from_millis(300), self.next()).await;
        if let Ok(call) = more {
            panic!("unexpected request {} {}", call.method, call.uri);
        }
    }

    pub async fn next(&mut self) -> Call {
        let (request, send) = tokio::time::timeout(PATIENCE, self.handle.next_request())
            .await
            .expect("the platform made no further request")
            .expect("the client went away");
        let method = request.method().to_string();
        let uri = request.uri().to_string();
        let content_type = request
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let bytes = request
            .into_body()
            .collect()
            .await
            .expect("request body")
            .to_bytes();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).expect("request body is JSON")
        };
        Call {
            method,
            uri,
            content_type,
            body,
            send,
        }
    }

    /// The next request, which must be `method uri` exactly.
    pub async fn expect(&mut self, method: &str, uri: &str) -> Call {
        let call = self.next().await;
        assert_eq!(
            (call.method.as_str(), call.uri.as_str()),
            (method, uri),
            "unexpected request"
        );
        call
    }
}

impl Call {
    pub fn respond(self, status: u16, body: Value) {
        let bytes = serde_json::to_vec(&body).expect("response serializes");
        self.respond_raw(status, bytes);
    }

    pub fn respond_raw(self, status: u16, bytes: Vec<u8>) {
        let response = Response::builder()
            .status(status)
            .body(Body::from(bytes))
            .expect("response");
        self.send.send_response(response);
    }

    /// A `Status` failure as the apiserver sends it.
    pub fn fail(self, code: u16, reason: &str, message: &str) {
        self.respond(
            code,
            json!({
                "kind": "Status", "apiVersion": "v1", "metadata": {},
                "status": "Failure", "message": message, "reason": reason, "code": code,
            }),
        );
    }
}

/// Awaits `future`, failing the test if it takes longer than a few seconds
/// (a platform waiting for an answer to a request nobody expected).
pub async fn within<F: std::future::Future>(future: F) -> F::Output {
    tokio::time::timeout(PATIENCE, future)
        .await
        .expect("timed out: did the platform make a request the test did not expect?")
}

/// The merge patch of the session's `deployments/scale` to `replicas`, answered.
pub async fn expect_scale(server: &mut ApiServer, replicas: i32) {
    let call = server
        .expect("PATCH", &format!("{DEPLOYMENT_PATH}/scale?"))
        .await;
    assert_eq!(
        call.content_type.as_deref(),
        Some("application/merge-patch+json")
    );
    assert_eq!(call.body, json!({"spec": {"replicas": replicas}}));
    call.respond(
        200,
        json!({
            "kind": "Scale", "apiVersion": "autoscaling/v1",
            "metadata": {"name": DEPLOYMENT, "namespace": NS},
            "spec": {"replicas": replicas},
            "status": {"replicas": 1 - replicas, "selector": "io.streamspace.session-id=x"},
        }),
    );
}
