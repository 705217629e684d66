//! OpenTelemetry traces and command latency metrics, for real: a control
//! plane and a Docker agent, both exporting to an OTLP/HTTP receiver the
//! test runs; one trace covers the API request that created a session and
//! the agent's execution of its start command.

use crate::{Cluster, RUNNING_LIMIT, bin};
use serde_json::json;
use std::time::Duration;
use streamspace_testkit::Options;
use streamspace_testkit::otlp::{Receiver, Span};

/// The batch processor exports every 5 s by default.
const EXPORTED: Duration = Duration::from_secs(20);
/// A caller's own trace, which a request's `traceparent` header joins.
const CALLER_TRACE: &str = "0af7651916cd43dd8448eb211c80319c";

fn exporting_to(receiver: &Receiver) -> Options {
    Options {
        args: vec!["--otlp-endpoint".into(), receiver.url.to_string()],
        ..Options::default()
    }
}

/// The agent's span for running `action` on `session_id`.
fn command_span<'a>(spans: &'a [Span], action: &str, session_id: &str) -> Option<&'a Span> {
    spans.iter().find(|s| {
        s.service == "streamspace-agent"
            && s.name == "command"
            && s.attribute("action") == Some(action)
            && s.attribute("session_id") == Some(session_id)
    })
}

#[tokio::test]
async fn one_trace_runs_from_the_api_request_to_the_agents_command() -> anyhow::Result<()> {
    let receiver = Receiver::start().await?;
    let cluster = Cluster::start_with("traced", exporting_to(&receiver)).await?;
    let (cp, admin) = (&cluster.cp, &cluster.admin);

    let session = admin.create_session(json!({"template": "desktop"})).await?;
    let id = session["id"].as_str().unwrap_or_default().to_owned();
    admin.wait_for_phase(&id, "Running", RUNNING_LIMIT).await?;

    // The request's span on the server and the agent's span for the start
    // command share one trace; the agent's hangs under a server span of it.
    let (request, command) = receiver
        .wait_for(EXPORTED, "the request's and the command's spans", |spans| {
            let command = command_span(spans, "start", &id)?;
            let request = spans.iter().find(|s| {
                s.service == "streamspace-server"
                    && s.name == "POST /api/v1/sessions"
                    && s.trace_id == command.trace_id
            })?;
            Some((request.clone(), command.clone()))
        })
        .await?;
    assert_eq!(request.attribute("http.response.status_code"), Some("201"));
    assert_eq!(request.attribute("http.route"), Some("/api/v1/sessions"));
    assert_eq!(
        request.parent_span_id, "",
        "a request without traceparent starts a trace"
    );
    let spans = receiver.spans();
    let parent = spans
        .iter()
        .find(|s| s.span_id == command.parent_span_id)
        .expect("the command's parent span was exported");
    assert_eq!(parent.service, "streamspace-server");
    assert_eq!(parent.trace_id, request.trace_id);
    // The Docker platform's own work is inside the command's span.
    let platform = receiver
        .wait_for(EXPORTED, "the platform's span under the command", |spans| {
            spans
                .iter()
                .find(|s| s.parent_span_id == command.span_id && s.name == "start")
                .cloned()
        })
        .await?;
    assert_eq!(platform.trace_id, request.trace_id);

    // A caller's traceparent header: the request joins the caller's trace,
    // and so does the agent's terminate.
    let caller = format!("00-{CALLER_TRACE}-b7ad6b7169203331-01");
    let answer = reqwest::Client::new()
        .delete(cp.url.join(&format!("/api/v1/sessions/{id}"))?)
        .bearer_auth(admin.token.as_deref().unwrap_or_default())
        .header("traceparent", &caller)
        .send()
        .await?;
    assert!(answer.status().is_success(), "{}", answer.status());
    let terminate = receiver
        .wait_for(EXPORTED, "the terminate in the caller's trace", |spans| {
            command_span(spans, "terminate", &id).cloned()
        })
        .await?;
    assert_eq!(terminate.trace_id, CALLER_TRACE);
    let deleted = receiver.spans();
    let request = deleted
        .iter()
        .find(|s| s.name == "DELETE /api/v1/sessions/{id}")
        .expect("the DELETE request's span");
    assert_eq!(request.trace_id, CALLER_TRACE);
    assert_eq!(request.parent_span_id, "b7ad6b7169203331");
    // The route template, never the path (which can hold share tokens).
    assert!(
        !request.attributes.values().any(|v| v.contains(&id)),
        "the path leaked into {:?}",
        request.attributes
    );

    // Health checks and scrapes make no spans.
    let metrics = admin.text("/metrics").await?;
    assert!(
        !receiver.spans().iter().any(|s| s.name.contains("/metrics")),
        "a scrape was traced"
    );
    assert_command_latencies(&metrics);
    Ok(())
}

/// The start was acknowledged and finished, and its latencies counted on
/// the replica the agent reports to; the replica names itself.
fn assert_command_latencies(metrics: &str) {
    let sample = |series: &str| -> f64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("no {series} in\n{metrics}"))
    };
    for stage in ["ack", "result"] {
        let labels = format!("{{action=\"start\",stage=\"{stage}\"}}");
        let count = sample(&format!("streamspace_command_seconds_count{labels}"));
        let sum = sample(&format!("streamspace_command_seconds_sum{labels}"));
        assert_eq!(count, 1.0, "one start {stage}");
        assert!(
            sum > 0.0 && sum < RUNNING_LIMIT.as_secs_f64(),
            "{stage} took {sum} s"
        );
    }
    // The start's result comes after the desktop answers, its ack at once.
    let ack = sample("streamspace_command_seconds_sum{action=\"start\",stage=\"ack\"}");
    let result = sample("streamspace_command_seconds_sum{action=\"start\",stage=\"result\"}");
    assert!(ack < result, "ack {ack} s, result {result} s");
    let version = env!("CARGO_PKG_VERSION");
    let info = metrics
        .lines()
        .find(|l| l.starts_with("streamspace_replica_info{"))
        .unwrap_or_else(|| panic!("no replica_info in\n{metrics}"));
    assert!(
        info.contains(&format!("version=\"{version}\"")) && info.ends_with(" 1"),
        "{info}"
    );
}

#[tokio::test]
async fn a_bad_otlp_endpoint_is_refused_before_starting() -> anyhow::Result<()> {
    let output = tokio::process::Command::new(bin())
        .args(["server", "--otlp-endpoint", "collector:4318"])
        .output()
        .await?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--otlp-endpoint"), "{stderr}");
    Ok(())
}
