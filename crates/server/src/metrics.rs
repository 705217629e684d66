//! The control plane's metrics, in one registry: what `GET /metrics`
//! (`api/metrics.rs`) encodes in Prometheus' text exposition format.
//!
//! Counters are updated where things happen (cheap atomic adds on the tunnel
//! path); gauges that describe the hub, the login throttle and the store are
//! set from them when scraped. Nothing here reads those parts itself: the
//! HTTP server (`serve/`) counts into [`HttpMetrics`] from below the
//! application state, and the scrape handler reads the state from above.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::collections::HashMap;
use streamspace_protocol::Phase;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DirectionLabel {
    pub direction: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    pub outcome: &'static str,
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

/// A command's action and how far it got: the labels of `command_seconds`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CommandStageLabel {
    action: &'static str,
    stage: &'static str,
}

/// This replica: the labels of `replica_info`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReplicaLabel {
    replica: String,
    version: &'static str,
}

/// The actions commands have (`Action::name`); another is counted as `other`.
const COMMAND_ACTIONS: [&str; 4] = ["start", "hibernate", "wake", "terminate"];
/// How far a command got: the agent acknowledged it, or reported its result.
pub const COMMAND_STAGES: [&str; 2] = ["ack", "result"];
/// Seconds from issue to ack or result: an ack takes milliseconds, a start
/// seconds (minutes when it pulls a large image).
const COMMAND_BUCKETS: [f64; 15] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
];

fn command_histogram() -> Histogram {
    Histogram::new(COMMAND_BUCKETS)
}

/// Why a login failed: the `reason` label of `login_failures`.
const LOGIN_FAILURES: [&str; 5] = [
    "bad_credentials",
    "bad_code",
    "throttled",
    "busy",
    "sso_refused",
];

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
    command_seconds: Family<CommandStageLabel, Histogram, fn() -> Histogram>,
    replica_info: Family<ReplicaLabel, Gauge>,
    /// Agents' data channels this replica relayed to the replica waiting
    /// for them (`tunnel/forward.rs`), and the bytes, both ways.
    pub tunnels_relayed: Counter,
    pub tunnel_relayed_bytes: Counter,
    /// Successful logins (`POST /auth/login`; not password changes).
    pub logins: Counter,
    login_failures: Family<ReasonLabel, Counter>,
    login_lockouts: Family<ScopeLabel, Gauge>,
    password_hashes: Gauge,
    /// Connections, timeouts, evictions, certificate reloads (`serve/`).
    pub http: HttpMetrics,
    agents_connected: Gauge,
    /// 1 on the replica holding the singleton lock (`cluster/leader.rs`).
    singleton_leader: Gauge,
    sessions: Family<PhaseLabel, Gauge>,
    /// When the scrape handler last counted sessions in the store; held
    /// while it counts, so concurrent scrapes share one count.
    pub sessions_counted: tokio::sync::Mutex<Option<std::time::Instant>>,
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
            command_seconds: Family::new_with_constructor(command_histogram),
            replica_info: Family::default(),
            tunnels_relayed: Counter::default(),
            tunnel_relayed_bytes: Counter::default(),
            logins: Counter::default(),
            login_failures: Family::default(),
            login_lockouts: Family::default(),
            password_hashes: Gauge::default(),
            http: Default::default(),
            agents_connected: Gauge::default(),
            singleton_leader: Gauge::default(),
            sessions: Family::default(),
            sessions_counted: Default::default(),
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
        // Both directions exist from the start, at 0, so a dashboard's rate
        // and an alert on them work before the first tunnel.
        for direction in ["to_viewer", "from_viewer"] {
            let _ = metrics.bytes(direction);
        }
        registry.register(
            "commands_dispatched",
            "Commands handed to connected agents",
            metrics.commands_dispatched.clone(),
        );
        registry.register(
            "command_seconds",
            "Seconds from a command's issue to its ack or result (stage), by action, \
             measured on the replica the agent reports to",
            metrics.command_seconds.clone(),
        );
        for action in COMMAND_ACTIONS {
            for stage in COMMAND_STAGES {
                let label = CommandStageLabel { action, stage };
                let _ = metrics.command_seconds.get_or_create(&label);
            }
        }
        registry.register(
            "replica_info",
            "This control-plane replica (1): its id and version",
            metrics.replica_info.clone(),
        );
        registry.register(
            "tunnels_relayed",
            "Agents' data channels this replica relayed to the replica waiting for them",
            metrics.tunnels_relayed.clone(),
        );
        registry.register(
            "tunnel_relayed_bytes",
            "Bytes this replica relayed between agents and other replicas, both ways",
            metrics.tunnel_relayed_bytes.clone(),
        );
        registry.register("logins", "Successful logins", metrics.logins.clone());
        registry.register(
            "login_failures",
            "Failed logins and password checks by reason: bad_credentials (unknown \
             username or wrong password, one reason so that this public page does not \
             tell which usernames exist), throttled (refused by a lockout), busy \
             (password hashing queue full), sso_refused (a single sign-on callback \
             refused: see docs/OIDC.md)",
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
            "singleton_leader",
            "1 on the replica that runs the singleton jobs (idle hibernation, purges, warm pools)",
            metrics.singleton_leader.clone(),
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

    /// A command's issue-to-`stage` latency (`stage` one of
    /// `COMMAND_STAGES`).
    pub fn command_reported(&self, action: &str, stage: &'static str, seconds: f64) {
        let action = COMMAND_ACTIONS
            .into_iter()
            .find(|known| *known == action)
            .unwrap_or("other");
        self.command_seconds
            .get_or_create(&CommandStageLabel { action, stage })
            .observe(seconds);
    }

    pub fn bytes(&self, direction: &'static str) -> Counter {
        self.tunnel_bytes
            .get_or_create(&DirectionLabel { direction })
            .clone()
    }

    // The gauges below describe other parts of the control plane rather
    // than count events: the scrape handler sets them just before encoding.

    pub fn set_agents_connected(&self, agents: usize) {
        self.agents_connected.set(agents as i64);
    }

    pub fn set_singleton_leader(&self, held: bool) {
        self.singleton_leader.set(i64::from(held));
    }

    /// Usernames and client addresses locked out now.
    pub fn set_login_lockouts(&self, users: usize, addresses: usize) {
        for (scope, n) in [("user", users), ("address", addresses)] {
            self.login_lockouts
                .get_or_create(&ScopeLabel { scope })
                .set(n as i64);
        }
    }

    /// This replica's id and version, as the `replica_info` series (1).
    pub fn set_replica(&self, replica: &str) {
        let label = ReplicaLabel {
            replica: replica.to_owned(),
            version: env!("CARGO_PKG_VERSION"),
        };
        self.replica_info.get_or_create(&label).set(1);
    }

    pub fn set_password_hashes(&self, running_or_waiting: usize) {
        self.password_hashes.set(running_or_waiting as i64);
    }

    /// Sessions by observed phase, as the store counts them; a phase it
    /// does not name has none.
    pub fn set_sessions(&self, by_phase: &HashMap<String, i64>) {
        for phase in Phase::ALL {
            let n = by_phase.get(phase.as_str()).copied().unwrap_or(0);
            let label = PhaseLabel {
                phase: phase.as_str(),
            };
            self.sessions.get_or_create(&label).set(n);
        }
    }

    /// Every metric in the text exposition format.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut text = String::new();
        encode(&mut text, &self.registry)?;
        Ok(text)
    }
}

/// What the HTTP server counts (`serve/`, and certificate reloads in
/// `tls.rs`). Part of [`Metrics`], and kept here rather than in `serve/`
/// so the server and the registry share one definition of its labels.
#[derive(Clone, Debug, Default)]
pub struct HttpMetrics {
    /// Connections speaking HTTP now (upgraded ones have left).
    pub open: Gauge,
    pub accepted: Counter,
    /// Connections the server closed, by one of `DROP_REASONS`.
    pub dropped: Family<ReasonLabel, Counter>,
    /// Certificate reloads on SIGHUP: `ok` or `failed`.
    pub tls_reloads: Family<OutcomeLabel, Counter>,
}

/// Why the server closed a connection: `write_stall` is a response left
/// unread, `body_timeout` a request body that did not arrive in time (408),
/// `refused` a newcomer at the cap with nothing to evict.
pub const DROP_REASONS: [&str; 7] = [
    "header_timeout",
    "body_timeout",
    "idle_timeout",
    "write_stall",
    "evicted",
    "refused",
    "tls_handshake",
];
const RELOAD_OUTCOMES: [&str; 2] = ["ok", "failed"];

impl HttpMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "http_connections",
            "Connections speaking HTTP now (upgraded tunnels and agent channels are not counted)",
            self.open.clone(),
        );
        registry.register(
            "http_connections_accepted",
            "Connections accepted",
            self.accepted.clone(),
        );
        registry.register(
            "http_connections_dropped",
            "Connections the server closed, by reason",
            self.dropped.clone(),
        );
        registry.register(
            "tls_reloads",
            "Certificate reloads on SIGHUP, by outcome",
            self.tls_reloads.clone(),
        );
        // Every series exists from the start, at 0, so a rate or an alert
        // on one works before the first event.
        for reason in DROP_REASONS {
            let _ = self.dropped.get_or_create(&ReasonLabel { reason });
        }
        for outcome in RELOAD_OUTCOMES {
            let _ = self.tls_reloads.get_or_create(&OutcomeLabel { outcome });
        }
    }

    /// Counts a closed connection; `reason` is one of `DROP_REASONS`.
    pub fn dropped(&self, reason: &'static str) {
        self.dropped.get_or_create(&ReasonLabel { reason }).inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_latencies_are_counted_by_action_and_stage() {
        let metrics = Metrics::default();
        metrics.command_reported("start", "ack", 0.02);
        metrics.command_reported("start", "result", 3.0);
        metrics.command_reported("launch", "ack", 0.5);
        metrics.set_replica("0123456789abcdef");
        let text = metrics.encode().expect("encodes");
        for series in [
            "streamspace_command_seconds_count{action=\"start\",stage=\"ack\"} 1",
            "streamspace_command_seconds_bucket{le=\"0.025\",action=\"start\",stage=\"ack\"} 1",
            "streamspace_command_seconds_bucket{le=\"2.5\",action=\"start\",stage=\"result\"} 0",
            "streamspace_command_seconds_count{action=\"start\",stage=\"result\"} 1",
            "streamspace_command_seconds_count{action=\"wake\",stage=\"result\"} 0",
            "streamspace_command_seconds_count{action=\"other\",stage=\"ack\"} 1",
            "streamspace_replica_info{replica=\"0123456789abcdef\",version=\"",
        ] {
            assert!(text.contains(series), "no {series} in {text}");
        }
    }

    #[test]
    fn every_drop_reason_is_a_series_from_the_start() {
        let metrics = HttpMetrics::default();
        let mut registry = Registry::default();
        metrics.register(&mut registry);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).expect("encodes");
        for reason in DROP_REASONS {
            let series = format!("http_connections_dropped_total{{reason=\"{reason}\"}} 0");
            assert!(text.contains(&series), "no {series} in {text}");
        }
    }
}
