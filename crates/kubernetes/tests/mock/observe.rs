//! Status (the phase mapping through the apiserver), inventory and adoption,
//! logs, the pod-IP tunnel, capacity and metrics, health.

use crate::apiserver::*;
use futures::StreamExt;
use serde_json::json;
use streamspace_agent::{Platform, PlatformError};
use streamspace_kubernetes::{KubernetesOptions, KubernetesPlatform};
use streamspace_protocol::{Cpu, Memory, Phase, SessionOrigin};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn platform_with(options: KubernetesOptions) -> (KubernetesPlatform, ApiServer) {
    let (client, server) = mock_client();
    let platform = KubernetesPlatform::new(client, &agent_id(), options).expect("platform");
    (platform, server)
}

/// Answers the two requests of a status: the Deployment, then its pods.
async fn answer_status(
    server: &mut ApiServer,
    deployment: serde_json::Value,
    pods: Vec<serde_json::Value>,
) {
    server
        .expect("GET", DEPLOYMENT_PATH)
        .await
        .respond(200, deployment);
    server
        .expect("GET", &format!("{PODS}?{SESSION_SELECTOR}"))
        .await
        .respond(200, list("PodList", pods));
}

#[tokio::test]
async fn status_maps_real_pod_status_to_phases() {
    let cases = [
        ("pending", Phase::Starting, None),
        ("container-creating", Phase::Starting, None),
        ("running-not-ready", Phase::Starting, None),
        ("ready", Phase::Running, None),
        (
            "image-pull-backoff",
            Phase::Failed,
            Some("ImagePullBackOff: Back-off pulling image"),
        ),
        (
            "err-image-pull",
            Phase::Failed,
            Some("ErrImagePull: rpc error"),
        ),
        (
            "crash-loop-backoff",
            Phase::Failed,
            Some("CrashLoopBackOff: back-off 40s restarting failed container=session"),
        ),
        (
            "unschedulable",
            Phase::Failed,
            Some("Unschedulable: 0/3 nodes are available: 3 Insufficient cpu."),
        ),
    ];
    for (fixture, phase, message) in cases {
        let (platform, mut server) = platform_with(options());
        let answering = async {
            answer_status(&mut server, deployment_json(1, 0), vec![pod(fixture)]).await;
        };
        let (report, ()) = within(futures::future::join(
            platform.status(&session_id()),
            answering,
        ))
        .await;
        let report = report.expect("status");
        assert_eq!(report.phase, phase, "{fixture}: {report:?}");
        match message {
            Some(expected) => {
                let actual = report.message.unwrap_or_default();
                assert!(actual.contains(expected), "{fixture}: {actual}");
            }
            None => assert_eq!(report.message, None, "{fixture}"),
        }
    }
}

#[tokio::test]
async fn status_of_a_scaled_down_deployment_is_hibernated() {
    let (platform, mut server) = platform_with(options());
    let answering = answer_status(&mut server, deployment_json(0, 0), vec![]);
    let (report, ()) = within(futures::future::join(
        platform.status(&session_id()),
        answering,
    ))
    .await;
    assert_eq!(report.expect("status").phase, Phase::Hibernated);
}

#[tokio::test]
async fn status_of_a_missing_session_is_not_found() {
    let (platform, mut server) = platform_with(options());
    let answering = async {
        server
            .expect("GET", DEPLOYMENT_PATH)
            .await
            .fail(404, "NotFound", "not found");
    };
    let (report, ()) = within(futures::future::join(
        platform.status(&session_id()),
        answering,
    ))
    .await;
    assert!(
        matches!(report, Err(PlatformError::NotFound(_))),
        "{report:?}"
    );
}

#[tokio::test]
async fn inventory_lists_by_label_and_reports_every_session_with_its_origin() {
    let (platform, mut server) = platform_with(options());
    let with_id = |mut d: serde_json::Value, id: &str| {
        d["metadata"]["name"] = json!(format!("streamspace-{id}"));
        d["metadata"]["labels"]["io.streamspace.session-id"] = json!(id);
        d
    };
    let pod_of = |fixture: &str, id: &str| {
        let mut p = pod(fixture);
        p["metadata"]["labels"]["io.streamspace.session-id"] = json!(id);
        p
    };
    let answering = async {
        server
            .expect("GET", &format!("{DEPLOYMENTS}?{AGENT_SELECTOR}"))
            .await
            .respond(
                200,
                list(
                    "DeploymentList",
                    vec![
                        with_id(deployment_json(1, 1), "s-running"),
                        with_id(deployment_json(0, 0), "s-hibernated"),
                        with_id(deployment_json(1, 0), "s-crashing"),
                    ],
                ),
            );
        server
            .expect("GET", &format!("{PODS}?{AGENT_SELECTOR}"))
            .await
            .respond(
                200,
                list(
                    "PodList",
                    vec![
                        pod_of("ready", "s-running"),
                        pod_of("crash-loop-backoff", "s-crashing"),
                        // A pod whose Deployment is gone is nobody's session.
                        pod_of("ready", "s-orphan-pod"),
                    ],
                ),
            );
    };
    let (reports, ()) = within(futures::future::join(platform.inventory(), answering)).await;
    let reports = reports.expect("inventory");
    let phases: Vec<(&str, Phase)> = reports
        .iter()
        .map(|r| (r.session_id.as_str(), r.phase))
        .collect();
    assert_eq!(
        phases,
        [
            ("s-crashing", Phase::Failed),
            ("s-hibernated", Phase::Hibernated),
            ("s-running", Phase::Running),
        ]
    );
    let origin = SessionOrigin::named("alice", "desktop");
    assert!(reports.iter().all(|r| r.origin.as_ref() == Some(&origin)));
}

#[tokio::test]
async fn logs_stream_the_session_containers_output() {
    let (platform, mut server) = platform_with(options());
    let answering = async {
        answer_status(&mut server, deployment_json(1, 1), vec![pod("ready")]).await;
        server
            .expect(
                "GET",
                &format!(
                    "{PODS}/streamspace-0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b-6d9f7c8b5-x7k2p/log?&container=session&follow=true&tailLines=20"
                ),
            )
            .await
            .respond_raw(200, b"Xvnc started\nxterm started\n".to_vec());
    };
    let (logs, ()) = within(futures::future::join(
        platform.logs(&session_id(), Some(20), true),
        answering,
    ))
    .await;
    let chunks: Vec<_> = within(logs.expect("logs").collect::<Vec<_>>()).await;
    let text: Vec<u8> = chunks
        .into_iter()
        .flat_map(|c| c.expect("chunk").to_vec())
        .collect();
    assert_eq!(text, b"Xvnc started\nxterm started\n");
}

#[tokio::test]
async fn logs_of_a_hibernated_session_say_why_there_are_none() {
    let (platform, mut server) = platform_with(options());
    let answering = answer_status(&mut server, deployment_json(0, 0), vec![]);
    let (logs, ()) = within(futures::future::join(
        platform.logs(&session_id(), None, false),
        answering,
    ))
    .await;
    let Err(PlatformError::Invalid(message)) = logs else {
        panic!("expected an explanation");
    };
    assert!(message.contains("hibernated"), "{message}");
}

#[tokio::test]
async fn pod_ip_tunnel_dials_the_ready_pods_ip() {
    // The "pod" is a listener on loopback that speaks first, like VNC.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let server_side = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.expect("accept");
        socket.write_all(b"RFB 003.008\n").await.expect("banner");
    });
    let mut ready = pod("ready");
    ready["status"]["podIP"] = json!("127.0.0.1");
    let (platform, mut server) = platform_with(options());
    let answering = answer_status(&mut server, deployment_json(1, 1), vec![ready]);
    let (stream, ()) = within(futures::future::join(
        platform.connect(&session_id(), port),
        answering,
    ))
    .await;
    let mut stream = stream.expect("connected");
    let mut banner = [0u8; 12];
    within(stream.read_exact(&mut banner))
        .await
        .expect("banner");
    assert_eq!(&banner, b"RFB 003.008\n");
    server_side.await.expect("server side");
}

#[tokio::test]
async fn tunnel_to_a_session_that_is_not_ready_is_refused() {
    let (platform, mut server) = platform_with(options());
    let answering = answer_status(
        &mut server,
        deployment_json(1, 0),
        vec![pod("container-creating")],
    );
    let (stream, ()) = within(futures::future::join(
        platform.connect(&session_id(), 5901),
        answering,
    ))
    .await;
    let Err(PlatformError::Invalid(message)) = stream else {
        panic!("expected a refusal");
    };
    assert!(
        message.contains("is not running (phase Starting)"),
        "{message}"
    );
}

fn node(name: &str) -> serde_json::Value {
    json!({
        "metadata": {"name": name},
        "spec": {},
        "status": {
            "allocatable": {"cpu": "3920m", "memory": "16Gi", "pods": "110"},
            "conditions": [{"type": "Ready", "status": "True"}],
        }
    })
}

#[tokio::test]
async fn capacity_sums_node_allocatable_and_metrics_use_metrics_server() {
    let (platform, mut server) = platform_with(options());
    let answering = async {
        server
            .expect("GET", "/api/v1/nodes?")
            .await
            .respond(200, list("NodeList", vec![node("a"), node("b")]));
    };
    let (capacity, ()) = within(futures::future::join(platform.capacity(), answering)).await;
    let capacity = capacity.expect("capacity");
    assert_eq!(capacity.max_sessions, 100);
    assert_eq!(capacity.cpu, Some(Cpu(7840)));
    assert_eq!(capacity.memory, Some(Memory(32 << 30)));

    // Node totals are cached; load comes from metrics.k8s.io.
    let answering = async {
        server
            .expect("GET", &format!("{DEPLOYMENTS}?{AGENT_SELECTOR}"))
            .await
            .respond(
                200,
                list(
                    "DeploymentList",
                    vec![deployment_json(1, 1), deployment_json(0, 0)],
                ),
            );
        server
            .expect("GET", "/apis/metrics.k8s.io/v1beta1/nodes")
            .await
            .respond(
                200,
                json!({
                    "kind": "NodeMetricsList", "apiVersion": "metrics.k8s.io/v1beta1",
                    "items": [
                        {"metadata": {"name": "a"}, "usage": {"cpu": "1960000000n", "memory": "8Gi"}},
                        {"metadata": {"name": "b"}, "usage": {"cpu": "1960m", "memory": "8Gi"}},
                    ]
                }),
            );
    };
    let (metrics, ()) = within(futures::future::join(platform.metrics(), answering)).await;
    let metrics = metrics.expect("metrics");
    assert_eq!(metrics.sessions_running, 1);
    assert!((metrics.cpu_percent - 50.0).abs() < 0.01, "{metrics:?}");
    assert_eq!(metrics.memory_used_bytes, 16 << 30);
    assert_eq!(metrics.memory_total_bytes, 32 << 30);
}

#[tokio::test]
async fn session_usage_comes_from_pod_metrics() {
    let (platform, mut server) = platform_with(options());
    let answering = async {
        server
            .expect(
                "GET",
                &format!("/apis/metrics.k8s.io/v1beta1/namespaces/{NS}/pods?{AGENT_SELECTOR}"),
            )
            .await
            .respond(
                200,
                json!({
                    "kind": "PodMetricsList", "apiVersion": "metrics.k8s.io/v1beta1",
                    "items": [{
                        "metadata": {"name": "p", "labels": {"io.streamspace.session-id": SESSION}},
                        "timestamp": "2026-01-01T00:00:00Z", "window": "15s",
                        "containers": [
                            {"name": "session", "usage": {"cpu": "120000000n", "memory": "20Mi"}},
                            {"name": "helper", "usage": {"cpu": "5m", "memory": "1Mi"}},
                        ]
                    }]
                }),
            );
    };
    let (usage, ()) = within(futures::future::join(platform.usage(), answering)).await;
    let usage = usage.expect("usage");
    assert_eq!(usage.len(), 1);
    assert_eq!(usage[0].session_id, SESSION);
    assert_eq!(usage[0].cpu_millicores, 125);
    assert_eq!(usage[0].memory_bytes, 21 << 20);

    // Without a metrics server there is nothing to report, and no error.
    let answering = async {
        server
            .expect(
                "GET",
                &format!("/apis/metrics.k8s.io/v1beta1/namespaces/{NS}/pods?{AGENT_SELECTOR}"),
            )
            .await
            .fail(
                404,
                "NotFound",
                "the server could not find the requested resource",
            );
    };
    let (usage, ()) = within(futures::future::join(platform.usage(), answering)).await;
    assert_eq!(usage.expect("no error"), Vec::new());
}

#[tokio::test]
async fn without_node_access_or_metrics_server_only_sessions_are_counted() {
    let (platform, mut server) = platform_with(options());
    let answering = async {
        server
            .expect("GET", &format!("{DEPLOYMENTS}?{AGENT_SELECTOR}"))
            .await
            .respond(200, list("DeploymentList", vec![deployment_json(1, 1)]));
        server.expect("GET", "/api/v1/nodes?").await.fail(
            403,
            "Forbidden",
            "nodes is forbidden: User \"system:serviceaccount:streamspace:streamspace-agent\" cannot list resource \"nodes\"",
        );
        server
            .expect("GET", "/apis/metrics.k8s.io/v1beta1/nodes")
            .await
            .fail(
                404,
                "NotFound",
                "the server could not find the requested resource",
            );
    };
    let (metrics, ()) = within(futures::future::join(platform.metrics(), answering)).await;
    let metrics = metrics.expect("metrics degrade gracefully");
    assert_eq!(metrics.sessions_running, 1);
    assert_eq!(metrics.cpu_percent, 0.0);
    assert_eq!(metrics.memory_total_bytes, 0);
}

#[tokio::test]
async fn health_is_the_apiserver_answering() {
    let (platform, mut server) = platform_with(options());
    let answering = async {
        server.expect("GET", "/version").await.respond(
            200,
            json!({"major": "1", "minor": "37", "gitVersion": "v1.37.0"}),
        );
    };
    let (health, ()) = within(futures::future::join(platform.health(), answering)).await;
    assert_eq!(health.problem, None);

    let failing = async {
        server.expect("GET", "/version").await.fail(
            503,
            "ServiceUnavailable",
            "etcd is unavailable",
        );
    };
    let (health, ()) = within(futures::future::join(platform.health(), failing)).await;
    let problem = health.problem.expect("degraded");
    assert!(
        problem.starts_with("the Kubernetes apiserver does not answer:")
            && problem.contains("etcd is unavailable"),
        "{problem}"
    );
}
