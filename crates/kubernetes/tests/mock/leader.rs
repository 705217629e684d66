//! Leader election on a Lease, and the agent identity kept in a Secret.

use crate::apiserver::*;
use serde_json::{Value, json};
use std::time::Duration;
use streamspace_kubernetes::leader::{LeaderElector, Leadership};
use streamspace_kubernetes::state_secret::StateSecret;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

const LEASE: &str = "/apis/coordination.k8s.io/v1/namespaces/streamspace/leases/streamspace-agent";
const LEASES: &str = "/apis/coordination.k8s.io/v1/namespaces/streamspace/leases?";

fn lease(holder: Option<&str>, renewed: &str, version: &str) -> Value {
    json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": "streamspace-agent", "namespace": NS, "resourceVersion": version},
        "spec": {
            "holderIdentity": holder,
            "leaseDurationSeconds": 15,
            "acquireTime": "2026-05-04T10:00:00.000000Z",
            "renewTime": renewed,
            "leaseTransitions": 3,
        }
    })
}

/// Elects `pod-a` on an apiserver without a lease.
async fn elect(server: &mut ApiServer, elector: &LeaderElector) -> Leadership {
    let shutdown = CancellationToken::new();
    let answering = async {
        server
            .expect("GET", LEASE)
            .await
            .fail(404, "NotFound", "not found");
        let call = server.expect("POST", LEASES).await;
        assert_eq!(call.body["metadata"]["name"], "streamspace-agent");
        assert_eq!(call.body["spec"]["holderIdentity"], "pod-a");
        assert_eq!(call.body["spec"]["leaseDurationSeconds"], 15);
        assert_eq!(call.body["spec"]["leaseTransitions"], 0);
        assert!(call.body["spec"]["renewTime"].is_string());
        let body = call.body.clone();
        call.respond(201, body);
    };
    let (leadership, ()) =
        within(futures::future::join(elector.acquire(&shutdown), answering)).await;
    leadership.expect("no error").expect("leads")
}

#[tokio::test(start_paused = true)]
async fn the_first_candidate_creates_the_lease_and_frees_it_on_release() {
    let (client, mut server) = mock_client();
    let elector = LeaderElector::new(client, NS, "streamspace-agent", "pod-a");
    let leadership = elect(&mut server, &elector).await;
    let lost = leadership.lost();
    let releasing = async {
        server.expect("GET", LEASE).await.respond(
            200,
            lease(Some("pod-a"), "2026-05-04T10:00:00.000000Z", "7"),
        );
        let call = server.expect("PUT", &format!("{LEASE}?")).await;
        // Freed: a standby takes over at once instead of after 15 s.
        assert!(
            call.body["spec"].get("holderIdentity").is_none(),
            "{}",
            call.body
        );
        assert_eq!(call.body["spec"]["leaseDurationSeconds"], 1);
        assert_eq!(call.body["metadata"]["resourceVersion"], "7");
        let body = call.body.clone();
        call.respond(200, body);
    };
    within(futures::future::join(leadership.release(), releasing)).await;
    assert!(!lost.is_cancelled());
}

#[tokio::test(start_paused = true)]
async fn a_standby_takes_over_only_after_the_lease_went_unrenewed_for_its_duration() {
    let (client, mut server) = mock_client();
    let elector = LeaderElector::new(client, NS, "streamspace-agent", "pod-a");
    let shutdown = CancellationToken::new();
    let started = Instant::now();
    let answering = async {
        // pod-b renews once (the record changes), then goes silent.
        let mut renewed = "2026-05-04T10:00:00.000000Z";
        let mut reads = 0;
        loop {
            let call = server.next().await;
            if call.method == "PUT" {
                assert_eq!(call.uri, format!("{LEASE}?"));
                assert_eq!(call.body["spec"]["holderIdentity"], "pod-a");
                assert_eq!(call.body["spec"]["leaseTransitions"], 4);
                assert_eq!(call.body["metadata"]["resourceVersion"], "9");
                let body = call.body.clone();
                call.respond(200, body);
                return reads;
            }
            assert_eq!((call.method.as_str(), call.uri.as_str()), ("GET", LEASE));
            reads += 1;
            if reads == 3 {
                renewed = "2026-05-04T10:00:04.000000Z";
            }
            call.respond(200, lease(Some("pod-b"), renewed, "9"));
        }
    };
    let (leadership, reads) = tokio::time::timeout(
        Duration::from_secs(60),
        futures::future::join(elector.acquire(&shutdown), answering),
    )
    .await
    .expect("took over in time");
    let leadership = leadership.expect("no error").expect("leads");
    // Reads every 2 s; the last change was seen at the third read (4 s),
    // so the lease counts as expired from 19 s on.
    assert!(
        started.elapsed() >= Duration::from_secs(19),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(reads, 11);
    drop(leadership);
}

#[tokio::test(start_paused = true)]
async fn the_leader_stops_when_another_replica_holds_the_lease() {
    let (client, mut server) = mock_client();
    let elector = LeaderElector::new(client, NS, "streamspace-agent", "pod-a");
    let leadership = elect(&mut server, &elector).await;
    let lost = leadership.lost();
    // The next renewal finds pod-b holding it (it judged ours expired).
    server.expect("GET", LEASE).await.respond(
        200,
        lease(Some("pod-b"), "2026-05-04T10:00:30.000000Z", "12"),
    );
    within(lost.cancelled()).await;
}

#[tokio::test(start_paused = true)]
async fn the_leader_stops_before_its_lease_can_expire_when_it_cannot_renew() {
    let (client, mut server) = mock_client();
    let elector = LeaderElector::new(client, NS, "streamspace-agent", "pod-a");
    let started = Instant::now();
    let leadership = elect(&mut server, &elector).await;
    let lost = leadership.lost();
    // The apiserver stops answering.
    let _hanging = server.expect("GET", LEASE).await;
    tokio::time::timeout(Duration::from_secs(60), lost.cancelled())
        .await
        .expect("gave up leading");
    let gave_up = started.elapsed();
    assert!(
        gave_up >= Duration::from_secs(10) && gave_up < Duration::from_secs(15),
        "gave up after {gave_up:?}: must be before the 15 s lease expires for others"
    );
}

#[tokio::test]
async fn acquire_returns_at_shutdown_while_standing_by() {
    let (client, mut server) = mock_client();
    let elector = LeaderElector::new(client, NS, "streamspace-agent", "pod-a");
    let shutdown = CancellationToken::new();
    let answering = async {
        server.expect("GET", LEASE).await.respond(
            200,
            lease(Some("pod-b"), "2026-05-04T10:00:00.000000Z", "9"),
        );
        shutdown.cancel();
    };
    let (leadership, ()) =
        within(futures::future::join(elector.acquire(&shutdown), answering)).await;
    assert!(leadership.expect("no error").is_none());
}

const SECRET: &str = "/api/v1/namespaces/streamspace/secrets/streamspace-agent-identity";

#[tokio::test]
async fn identity_is_read_from_and_saved_to_the_secret() {
    let (client, mut server) = mock_client();
    let secret = StateSecret::new(client, NS, "streamspace-agent-identity");

    // The Secret the manifests create is empty: not enrolled yet.
    let answering = async {
        server.expect("GET", SECRET).await.respond(
            200,
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "streamspace-agent-identity"}, "type": "Opaque"}),
        );
    };
    let (loaded, ()) = within(futures::future::join(secret.load(), answering)).await;
    assert_eq!(loaded.expect("loads"), None);

    let identity = br#"{"agent_id":"agent-1"}"#;
    let answering = async {
        let call = server.expect("PATCH", &format!("{SECRET}?")).await;
        assert_eq!(
            call.content_type.as_deref(),
            Some("application/merge-patch+json")
        );
        assert_eq!(
            call.body,
            json!({"data": {"agent.json": "eyJhZ2VudF9pZCI6ImFnZW50LTEifQ=="}})
        );
        let body = call.body.clone();
        call.respond(200, body);
    };
    let (stored, ()) = within(futures::future::join(secret.store(identity), answering)).await;
    stored.expect("stores");

    let answering = async {
        server.expect("GET", SECRET).await.respond(
            200,
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "streamspace-agent-identity"},
                   "data": {"agent.json": "eyJhZ2VudF9pZCI6ImFnZW50LTEifQ=="}}),
        );
    };
    let (loaded, ()) = within(futures::future::join(secret.load(), answering)).await;
    assert_eq!(loaded.expect("loads").as_deref(), Some(&identity[..]));
}

#[tokio::test]
async fn a_missing_identity_secret_is_created() {
    let (client, mut server) = mock_client();
    let secret = StateSecret::new(client, NS, "streamspace-agent-identity");
    let answering = async {
        server.expect("PATCH", &format!("{SECRET}?")).await.fail(
            404,
            "NotFound",
            "secrets \"streamspace-agent-identity\" not found",
        );
        let call = server
            .expect("POST", "/api/v1/namespaces/streamspace/secrets?")
            .await;
        assert_eq!(call.body["metadata"]["name"], "streamspace-agent-identity");
        assert_eq!(call.body["type"], "Opaque");
        assert_eq!(call.body["data"]["agent.json"], "e30=");
        let body = call.body.clone();
        call.respond(201, body);
    };
    let (stored, ()) = within(futures::future::join(secret.store(b"{}"), answering)).await;
    stored.expect("creates");
}
