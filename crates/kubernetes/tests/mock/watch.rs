//! Phases from watches: the platform lists and watches its Deployments and
//! pods by label, turns every change into a report, and serves status and
//! tunnels from what it watched.

use crate::apiserver::*;
use futures::StreamExt;
use serde_json::{Value, json};
use streamspace_agent::Platform;
use streamspace_kubernetes::KubernetesPlatform;
use streamspace_protocol::{Phase, SessionReport};
use tokio::sync::mpsc;

/// The platform's `watch()` polled in the background; reports arrive on
/// the channel.
fn start_watch(platform: &KubernetesPlatform) -> mpsc::UnboundedReceiver<SessionReport> {
    let mut reports = platform.watch();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(report) = reports.next().await {
            if tx.send(report).is_err() {
                break;
            }
        }
    });
    rx
}

async fn next_report(rx: &mut mpsc::UnboundedReceiver<SessionReport>) -> SessionReport {
    within(rx.recv()).await.expect("the watch ended")
}

/// Answers the initial list of both watchers (in whichever order they
/// come) with one Deployment and its pods.
async fn answer_lists(server: &mut ApiServer, deployment: Value, pods: Vec<Value>) {
    let mut deployment = Some(deployment);
    let mut pods = Some(pods);
    for _ in 0..2 {
        let call = server.next().await;
        assert_eq!(call.method, "GET");
        if call.uri == format!("{DEPLOYMENTS}?{AGENT_SELECTOR}&limit=500") {
            let items = deployment.take().into_iter().collect();
            call.respond(200, list("DeploymentList", items));
        } else if call.uri == format!("{PODS}?{AGENT_SELECTOR}&limit=500") {
            call.respond(200, list("PodList", pods.take().unwrap_or_default()));
        } else {
            panic!("unexpected request {} {}", call.method, call.uri);
        }
    }
}

fn watch_uri(collection: &str, resource_version: &str) -> String {
    format!(
        "{collection}?&watch=true&timeoutSeconds=290{AGENT_SELECTOR}&allowWatchBookmarks=true&resourceVersion={resource_version}"
    )
}

/// A watch response body: one JSON event per line.
fn events(events: &[(&str, Value)]) -> Vec<u8> {
    events
        .iter()
        .flat_map(|(kind, object)| {
            let mut line = serde_json::to_vec(&json!({"type": kind, "object": object}))
                .expect("event serializes");
            line.push(b'\n');
            line
        })
        .collect()
}

/// The two watch requests that follow the lists, as (deployments, pods).
async fn watches(server: &mut ApiServer) -> (Call, Call) {
    let first = server.next().await;
    let second = server.next().await;
    let deployments_uri = watch_uri(DEPLOYMENTS, "5000");
    let pods_uri = watch_uri(PODS, "5000");
    let (deployments, pods) = if first.uri == deployments_uri {
        (first, second)
    } else {
        (second, first)
    };
    assert_eq!(deployments.uri, deployments_uri);
    assert_eq!(pods.uri, pods_uri);
    (deployments, pods)
}

fn with_version(mut object: Value, version: &str) -> Value {
    object["metadata"]["resourceVersion"] = json!(version);
    object
}

#[tokio::test]
async fn watch_reports_starting_running_hibernated_and_our_terminate() {
    let (client, mut server) = mock_client();
    let platform = KubernetesPlatform::new(client, &agent_id(), options()).expect("platform");
    let mut reports = start_watch(&platform);

    answer_lists(
        &mut server,
        deployment_json(1, 0),
        vec![pod("container-creating")],
    )
    .await;
    let report = next_report(&mut reports).await;
    assert_eq!(
        (report.session_id.as_str(), report.phase),
        (SESSION, Phase::Starting)
    );

    let (deployment_watch, pod_watch) = watches(&mut server).await;
    pod_watch.respond_raw(
        200,
        events(&[("MODIFIED", with_version(pod("ready"), "5001"))]),
    );
    assert_eq!(next_report(&mut reports).await.phase, Phase::Running);
    // The pod watcher watches on from the last version it saw.
    let pod_rewatch = server.expect("GET", &watch_uri(PODS, "5001")).await;

    // Status and tunnels now come from the watch: no request is made (an
    // unanswered one would time this out).
    let status = within(platform.status(&session_id()))
        .await
        .expect("status");
    assert_eq!(status.phase, Phase::Running);

    deployment_watch.respond_raw(
        200,
        events(&[("MODIFIED", with_version(deployment_json(0, 1), "5002"))]),
    );
    assert_eq!(next_report(&mut reports).await.phase, Phase::Hibernated);
    let deployment_rewatch = server.expect("GET", &watch_uri(DEPLOYMENTS, "5002")).await;

    // Our own terminate: its deletion event is Terminated.
    let terminating = async {
        let call = server
            .expect("GET", &format!("{DEPLOYMENTS}/{DEPLOYMENT}"))
            .await;
        call.respond(200, deployment_json(0, 0));
        let call = server
            .expect("DELETE", &format!("{DEPLOYMENTS}/{DEPLOYMENT}?"))
            .await;
        call.respond(200, deployment_json(0, 0));
    };
    let (terminated, ()) = within(futures::future::join(
        platform.terminate(&session_id()),
        terminating,
    ))
    .await;
    assert_eq!(terminated.expect("terminates").phase, Phase::Terminated);
    deployment_rewatch.respond_raw(
        200,
        events(&[("DELETED", with_version(deployment_json(0, 0), "5003"))]),
    );
    assert_eq!(next_report(&mut reports).await.phase, Phase::Terminated);
    drop(pod_rewatch);
}

#[tokio::test]
async fn watch_reports_failures_and_deletions_done_outside_streamspace() {
    let (client, mut server) = mock_client();
    let platform = KubernetesPlatform::new(client, &agent_id(), options()).expect("platform");
    let mut reports = start_watch(&platform);

    answer_lists(&mut server, deployment_json(1, 0), vec![pod("pending")]).await;
    assert_eq!(next_report(&mut reports).await.phase, Phase::Starting);

    let (deployment_watch, pod_watch) = watches(&mut server).await;
    pod_watch.respond_raw(
        200,
        events(&[
            ("MODIFIED", with_version(pod("unschedulable"), "5001")),
            // The same state again changes nothing and is not repeated.
            ("MODIFIED", with_version(pod("unschedulable"), "5002")),
            ("MODIFIED", with_version(pod("image-pull-backoff"), "5003")),
        ]),
    );
    let report = next_report(&mut reports).await;
    assert_eq!(report.phase, Phase::Failed);
    assert!(report.message.unwrap_or_default().contains("Unschedulable"));
    let report = next_report(&mut reports).await;
    assert_eq!(report.phase, Phase::Failed);
    assert!(
        report
            .message
            .unwrap_or_default()
            .contains("ImagePullBackOff")
    );
    let _pod_rewatch = server.expect("GET", &watch_uri(PODS, "5003")).await;

    deployment_watch.respond_raw(
        200,
        events(&[("DELETED", with_version(deployment_json(1, 0), "5004"))]),
    );
    let report = next_report(&mut reports).await;
    assert_eq!(report.phase, Phase::Failed);
    let message = report.message.unwrap_or_default();
    assert!(
        message.contains("was deleted outside StreamSpace") && message.contains("claim"),
        "{message}"
    );
    let _deployment_rewatch = server.expect("GET", &watch_uri(DEPLOYMENTS, "5004")).await;
}

/// A Deployment deleted while the pod watcher is still listing: its
/// deletion must be reported once both lists are in, not dropped because
/// the view was incomplete when it came.
#[tokio::test]
async fn a_deletion_before_the_pods_are_listed_is_still_reported() {
    let (client, mut server) = mock_client();
    let platform = KubernetesPlatform::new(client, &agent_id(), options()).expect("platform");
    let mut reports = start_watch(&platform);

    // Answer the Deployments' list; hold the pods' list back.
    let mut pods_list = None;
    while pods_list.is_none() {
        let call = server.next().await;
        if call.uri == format!("{DEPLOYMENTS}?{AGENT_SELECTOR}&limit=500") {
            call.respond(200, list("DeploymentList", vec![deployment_json(1, 1)]));
        } else {
            assert_eq!(call.uri, format!("{PODS}?{AGENT_SELECTOR}&limit=500"));
            pods_list = Some(call);
        }
    }
    let deployment_watch = server.expect("GET", &watch_uri(DEPLOYMENTS, "5000")).await;
    deployment_watch.respond_raw(
        200,
        events(&[("DELETED", with_version(deployment_json(1, 1), "5001"))]),
    );
    // Watching on from the deletion: the event was taken in.
    let _deployment_rewatch = server.expect("GET", &watch_uri(DEPLOYMENTS, "5001")).await;

    let pods_list = pods_list.expect("the pods' list");
    pods_list.respond(200, list("PodList", vec![pod("ready")]));
    let report = next_report(&mut reports).await;
    assert_eq!(
        (report.session_id.as_str(), report.phase),
        (SESSION, Phase::Failed)
    );
    let message = report.message.unwrap_or_default();
    assert!(
        message.contains("was deleted outside StreamSpace"),
        "{message}"
    );
    let _pod_watch = server.expect("GET", &watch_uri(PODS, "5000")).await;
}

#[tokio::test]
async fn a_broken_watch_ends_the_stream_so_the_runtime_resubscribes() {
    let (client, mut server) = mock_client();
    let platform = KubernetesPlatform::new(client, &agent_id(), options()).expect("platform");
    let mut reports = start_watch(&platform);
    let call = server.next().await;
    call.fail(403, "Forbidden", "deployments.apps is forbidden");
    assert!(within(reports.recv()).await.is_none(), "the stream ends");
}

#[tokio::test]
async fn once_the_watch_is_gone_status_asks_the_apiserver_again() {
    let (client, mut server) = mock_client();
    let platform = KubernetesPlatform::new(client, &agent_id(), options()).expect("platform");
    let mut reports = platform.watch();
    let lists = answer_lists(&mut server, deployment_json(1, 0), vec![pod("ready")]);
    let (report, ()) = within(futures::future::join(reports.next(), lists)).await;
    assert_eq!(report.expect("a report").phase, Phase::Running);
    // Served from the watch's stores: no request.
    let status = within(platform.status(&session_id()))
        .await
        .expect("status");
    assert_eq!(status.phase, Phase::Running);

    drop(reports);
    let answering = async {
        let deployment = format!("{DEPLOYMENTS}/{DEPLOYMENT}");
        let call = server.expect("GET", &deployment).await;
        call.respond(200, deployment_json(0, 0));
        let call = server
            .expect("GET", &format!("{PODS}?{SESSION_SELECTOR}"))
            .await;
        call.respond(200, list("PodList", Vec::new()));
    };
    let (status, ()) = within(futures::future::join(
        platform.status(&session_id()),
        answering,
    ))
    .await;
    assert_eq!(status.expect("status").phase, Phase::Hibernated);
}
