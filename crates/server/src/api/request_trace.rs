//! One trace span per API request, for OpenTelemetry: named for the route
//! it matched (`POST /api/v1/sessions`), joining the caller's trace when the
//! request carries a W3C `traceparent` header. Commands the request issues
//! carry this span's trace context to the agent (`lifecycle.rs`).
//!
//! The span records the method, the route template, the status and the
//! replica; never the path itself or the query, which can hold share
//! tokens and names. Health checks and scrapes get no span: they come
//! every few seconds and say nothing; nor do the web UI's files, web apps
//! and unknown paths, which match no API route. Its target is off in the
//! default log filter, so logs look as before unless `STREAMSPACE_LOG`
//! asks for it.

use crate::state::AppState;
use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;
use tracing::field::Empty;

/// Paths polled by machines: load balancers, Kubernetes, Prometheus.
const UNTRACED: [&str; 3] = ["/healthz", "/readyz", "/metrics"];

/// Runs the request inside its span. A route layer: the span is named
/// when it starts, so it starts once routing has found the route (and
/// before the access rule, so refusals are traced too).
pub async fn span(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(MatchedPath::as_str);
    let Some(route) = route.filter(|route| !UNTRACED.contains(route)) else {
        return next.run(request).await;
    };
    let method = request.method();
    let span = tracing::info_span!(
        target: "streamspace::request",
        "request",
        otel.name = format!("{method} {route}"),
        otel.kind = "server",
        otel.status_code = Empty,
        http.request.method = %method,
        http.route = route,
        http.response.status_code = Empty,
        streamspace.replica = %state.replica.id,
    );
    let caller = request
        .headers()
        .get("traceparent")
        .and_then(|value| value.to_str().ok());
    streamspace_telemetry::context::adopt(&span, caller);
    let response = next.run(request).instrument(span.clone()).await;
    let status = response.status();
    span.record("http.response.status_code", status.as_u16());
    if status.is_server_error() {
        span.record("otel.status_code", "ERROR");
    }
    response
}
