//! Control-plane settings. The CLI fills them from flags and `STREAMSPACE_*`
//! variables; the defaults run a single-host install.

use crate::auth::throttle::ThrottleLimits;
use crate::store::Limits;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use url::Url;

#[derive(Debug, Clone)]
pub struct Config {
    /// Where the HTTP server listens; port 0 picks a free port (tests).
    pub listen: SocketAddr,
    /// Holds the SQLite database and the bootstrap admin's password file.
    pub data_dir: PathBuf,
    /// `sqlite://…` or `postgres://…`; `None` means SQLite in `data_dir`.
    pub database_url: Option<String>,
    /// The URL users and agents reach this server at; `None` means
    /// `http://{listen}`.
    pub public_url: Option<Url>,
    /// Where the other replicas reach this one (default: this host's
    /// listener on loopback, which only replicas on the same host reach).
    pub internal_url: Option<Url>,
    /// Web apps are also served at `{session}--{port}.{apps_domain}`.
    pub apps_domain: Option<String>,
    /// Password for the `admin` user created on first start; random if unset.
    pub admin_password: Option<String>,
    /// How often agents send heartbeats (told to them in `welcome`).
    pub heartbeat_interval: Duration,
    /// How long a login token lives.
    pub token_ttl: Duration,
    /// How long an enrollment token stays usable.
    pub enrollment_ttl: Duration,
    /// How long a viewer waits for an agent to open a tunnel.
    pub tunnel_timeout: Duration,
    /// Per-user limits that apply unless an admin overrides them.
    pub quota_defaults: Limits,
    /// How often the reconciler compares desired and observed state.
    pub reconcile_interval: Duration,
    /// How long a viewer opening a hibernated session waits for it to wake.
    pub wake_timeout: Duration,
    /// What to do with a session container an agent reports that the store
    /// does not know.
    pub orphan_policy: OrphanPolicy,

    // Logins and revocation.
    /// Proxies whose `X-Forwarded-For` names the client (`--trusted-proxies`);
    /// otherwise the client is the TCP peer.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// How failed logins are throttled, per username and client address.
    pub login_throttle: ThrottleLimits,
    /// How often open event, VNC and log streams re-check their login: how
    /// long a revocation on another replica, or an expiry, takes to end them.
    pub revalidate_interval: Duration,
    /// How long admin settings read from the database are used before they
    /// are read again: how long a change that no notice told this replica
    /// of (a lost notice, an edit by hand) takes to apply here.
    pub settings_recheck: Duration,
    /// How often expired login and enrollment tokens are deleted.
    pub token_purge_interval: Duration,
    /// How often audit events older than the retention setting are deleted.
    pub audit_purge_interval: Duration,
    /// The key that seals secrets at rest (TOTP secrets, templates'
    /// `secret_env` values and registry passwords), shared by every replica
    /// (a mounted Secret); `None`: `DATA_DIR/mfa-key`, made on first start.
    pub secrets_key_file: Option<PathBuf>,
    /// Limits that keep slow, idle or too many clients from exhausting the
    /// HTTP server.
    pub http: HttpLimits,
    /// Most event streams, log streams and VNC viewers one user may have
    /// open at once on this process, all kinds together.
    pub max_streams_per_user: usize,
    /// How long shutdown waits for requests in flight, then for tunnels and
    /// agent channels, to end.
    pub shutdown_drain: Duration,
    /// How long a draining replica (SIGTERM) lets viewers' tunnels run on
    /// before it closes them and exits (`cluster/drain.rs`).
    pub drain_timeout: Duration,
    /// Certificate and key to serve HTTPS with; `None` serves plain HTTP
    /// (TLS then ends in a proxy in front).
    pub tls: Option<TlsFiles>,
    /// With TLS on, also serve plain HTTP on a random loopback port, for an
    /// agent in this same process (`up`): see `Application::agent_url`.
    pub loopback_listener: bool,
    /// Single sign-on with an OpenID Connect provider (docs/OIDC.md).
    pub oidc: Option<crate::auth::oidc::config::OidcConfig>,
    /// The caps on recordings' disk use (docs/RECORDING.md).
    pub recording_limits: crate::recording::limits::Limits,
    /// How often recordings beyond the retention settings are deleted.
    pub recording_purge_interval: Duration,
}

/// How long an HTTP client may take and how many may be connected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// From a connection's accept (TLS handshake included), or from the
    /// first byte of a later request, until the request's head is complete.
    pub header_read_timeout: Duration,
    /// From the end of a request's head until its body has all arrived;
    /// then the request is answered 408 and the connection closed. A total,
    /// not a gap between reads: a body trickled a byte at a time runs out
    /// too.
    pub body_read_timeout: Duration,
    /// How long a keep-alive connection may wait for its next request (from
    /// the last byte written), and a client may leave a response unread.
    pub idle_timeout: Duration,
    /// Most connections speaking HTTP at once. Upgraded connections (VNC
    /// tunnels, agent channels) no longer count: the application tracks them.
    pub max_connections: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            // 1 MiB (the largest body) at 35 KB/s.
            body_read_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            max_connections: 10_000,
        }
    }
}

/// PEM files: the certificate chain (leaf first) and its private key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// What happens to a container carrying StreamSpace labels that no session
/// in the store accounts for (a restored database, a hand-made container).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OrphanPolicy {
    /// Record it as a session of the user and template its labels name, if
    /// both exist; otherwise leave it alone and log it.
    #[default]
    Adopt,
    /// Remove its container (persistent homes are kept).
    Remove,
    /// Leave it alone and log it.
    Ignore,
}

impl std::str::FromStr for OrphanPolicy {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "adopt" => Ok(OrphanPolicy::Adopt),
            "remove" => Ok(OrphanPolicy::Remove),
            "ignore" => Ok(OrphanPolicy::Ignore),
            other => Err(format!(
                "unknown orphan policy {other:?}: use adopt, remove or ignore"
            )),
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from("./streamspace-data"),
            database_url: None,
            public_url: None,
            internal_url: None,
            apps_domain: None,
            admin_password: None,
            heartbeat_interval: Duration::from_secs(5),
            token_ttl: Duration::from_secs(7 * 24 * 3600),
            enrollment_ttl: Duration::from_secs(24 * 3600),
            tunnel_timeout: Duration::from_secs(10),
            quota_defaults: Limits::default(),
            reconcile_interval: Duration::from_secs(1),
            wake_timeout: Duration::from_secs(60),
            orphan_policy: OrphanPolicy::default(),
            trusted_proxies: Vec::new(),
            login_throttle: ThrottleLimits::default(),
            revalidate_interval: Duration::from_secs(30),
            settings_recheck: Duration::from_secs(1),
            token_purge_interval: Duration::from_secs(3600),
            audit_purge_interval: Duration::from_secs(3600),
            secrets_key_file: None,
            http: HttpLimits::default(),
            // A few browser tabs, each with its event stream, viewers and
            // logs, and room to spare; not the connection cap.
            max_streams_per_user: 32,
            shutdown_drain: Duration::from_secs(5),
            drain_timeout: Duration::from_secs(10),
            tls: None,
            loopback_listener: false,
            oidc: None,
            recording_limits: crate::recording::limits::Limits::default(),
            recording_purge_interval: Duration::from_secs(3600),
        }
    }
}

impl Config {
    /// An agent is considered gone when nothing arrived for this long.
    pub fn agent_silence_limit(&self) -> Duration {
        self.heartbeat_interval * 3
    }
}

/// Parses a duration as written in flags and templates (`"5s"`, `"30m"`).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim())
        .map_err(|e| format!("{text:?} is not a duration such as \"5s\" or \"30m\": {e}"))
}
