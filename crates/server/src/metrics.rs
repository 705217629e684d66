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

/// Why something failed or ended: login failures, dropped connections.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ScopeLabel {
    scope: &'static str,
}

/// Why a login failed: the `reason` label of `login_failures`.
const LOGIN_FAILURES: [&str; 3] = ["bad_credentials", "throttled", "busy"];

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
    /// Successful logins (`POST /auth/login`; not password changes).
    pub logins: Counter,
    login_failures: Family<ReasonLabel, Counter>,
    login_lockouts: Family<ScopeLabel, Gauge>,
    password_hashes: Gauge,
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
            logins: Counter::default(),
            login_failures: Family::default(),
            login_lockouts: Family::default(),
            password_hashes: Gauge::default(),
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
        registry.register("logins", "Successful logins", metrics.logins.clone());
        registry.register(
            "login_failures",
            "Failed logins and password checks by reason: bad_credentials (unknown \
             username or wrong password, one reason so that this public page does not \
             tell which usernames exist), throttled (refused by a lockout), busy \
             (password hashing queue full)",
            metrics.login_failures.clone(),
        );
        for reason in LOGIN_FAILURES {
            let _ = metrics
                .login_failures
                .get_or_create(&ReasonLabel { reason });
        }
        registry.register(
            "login_lockouts",
            "Usernames (scope=user) and client addresses (scope=address) locked out now",
            metrics.login_lockouts.clone(),
        );
        registry.register(
            "password_hashes",
            "Password hashes running or waiting for a worker",
            metrics.password_hashes.clone(),
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
    /// Counts a failed login; `reason` is one of `LOGIN_FAILURES`.
    pub fn login_failed(&self, reason: &'static str) {
        self.login_failures
            .get_or_create(&ReasonLabel { reason })
            .inc();
    }

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
    let (users, addresses) = state.login.throttle.locked();
    for (scope, n) in [("user", users), ("address", addresses)] {
        metrics
            .login_lockouts
            .get_or_create(&ScopeLabel { scope })
            .set(n as i64);
    }
    metrics
        .password_hashes
        .set(state.login.work.in_use() as i64);
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
