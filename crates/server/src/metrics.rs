//! Prometheus metrics at `GET /metrics` (text exposition format).
//!
//! Counters are updated where things happen (cheap atomic adds on the tunnel
//! path); gauges that describe the store are computed when scraped.

use crate::state::AppState;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::{StatusCode, header};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use streamspace_protocol::Phase;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DirectionLabel {
    pub direction: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PhaseLabel {
    phase: &'static str,
}

/// The control plane's metrics, shared by every request.
pub struct Metrics {
    registry: Registry,
    pub tunnels_opened: Counter,
    pub tunnels_open: Gauge,
    /// Tunnels whose bytes to the viewer the kernel moves (splice(2)).
    pub tunnels_zero_copy: Counter,
    /// Bytes through VNC tunnels, `to_viewer` and `from_viewer`.
    pub tunnel_bytes: Family<DirectionLabel, Counter>,
    pub commands_dispatched: Counter,
    /// Connections, timeouts, evictions, certificate reloads (`serve/`).
    pub http: crate::serve::HttpMetrics,
    agents_connected: Gauge,
    sessions: Family<PhaseLabel, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("streamspace");
        let metrics = Metrics {
            tunnels_opened: Counter::default(),
            tunnels_open: Gauge::default(),
            tunnels_zero_copy: Counter::default(),
            tunnel_bytes: Family::default(),
            commands_dispatched: Counter::default(),
            http: Default::default(),
            agents_connected: Gauge::default(),
            sessions: Family::default(),
            registry: Registry::default(),
        };
        registry.register(
            "tunnels_opened",
            "VNC tunnels opened",
            metrics.tunnels_opened.clone(),
        );
        registry.register(
            "tunnels_open",
            "VNC tunnels open now",
            metrics.tunnels_open.clone(),
        );
        registry.register(
            "tunnels_zero_copy",
            "VNC tunnels opened whose bytes to the viewer are spliced in the kernel",
            metrics.tunnels_zero_copy.clone(),
        );
        registry.register(
            "tunnel_bytes",
            "Bytes carried by VNC tunnels",
            metrics.tunnel_bytes.clone(),
        );
        registry.register(
            "commands_dispatched",
            "Commands handed to connected agents",
            metrics.commands_dispatched.clone(),
        );
        registry.register(
            "agents_connected",
            "Agents with a control channel to this control plane",
            metrics.agents_connected.clone(),
        );
        registry.register(
            "sessions",
            "Sessions by observed phase",
            metrics.sessions.clone(),
        );
        metrics.http.register(&mut registry);
        Metrics {
            registry,
            ..metrics
        }
    }
}

impl Metrics {
    pub fn bytes(&self, direction: &'static str) -> Counter {
        self.tunnel_bytes
            .get_or_create(&DirectionLabel { direction })
            .clone()
    }
}

/// Prometheus metrics
///
/// Counts only, no names or ids.
#[utoipa::path(
    get,
    operation_id = "metrics",
    path = "/metrics",
    tag = "system",
    responses(
        (status = 200, description = "OpenMetrics text",
            content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8", body = String),
        (status = 500, description = "The metrics could not be encoded (empty body)"),
    ),
)]
pub async fn serve(State(state): State<AppState>) -> Response {
    let metrics = &state.metrics;
    metrics
        .agents_connected
        .set(state.hub.connected_count() as i64);
    match state.store.count_sessions_by_phase().await {
        Ok(counts) => {
            for phase in Phase::ALL {
                let n = counts.get(phase.as_str()).copied().unwrap_or(0);
                let label = PhaseLabel {
                    phase: phase.as_str(),
                };
                metrics.sessions.get_or_create(&label).set(n);
            }
        }
        Err(err) => tracing::warn!(error = %err, "cannot count sessions for metrics"),
    }
    let mut text = String::new();
    if encode(&mut text, &metrics.registry).is_err() {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response()
}
