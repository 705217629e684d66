//! What every handler and background job shares: the configuration, the
//! store, the agent hub, the tunnel broker, the change notices, the limits.
//!
//! Each part is imported from the file that defines it, and none of those
//! files imports this one: a part is a type and its own methods, and what
//! needs the whole state (handlers, dispatching commands, opening tunnels,
//! checking logins) lives in files above it. That keeps the parts free of
//! import circles through `AppState`.

use crate::auth::login_guard::LoginGuard;
use crate::auth::mfa::guard::MfaGuard;
use crate::auth::revocations::Revocations;
use crate::changes::Changes;
use crate::cluster::bus::Bus;
use crate::cluster::leader::Leader;
use crate::cluster::replica::Replica;
use crate::config::Config;
use crate::hub::channels::AgentHub;
use crate::metrics::Metrics;
use crate::seal::Sealer;
use crate::store::Store;
use crate::streams::StreamLimit;
use crate::tunnel::broker::TunnelBroker;
use crate::tunnel::share_ends::ShareEnds;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use url::Url;

/// Everything a request handler may need, cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    /// Where users and agents reach this server (resolved at startup).
    pub public_url: Arc<Url>,
    pub store: Store,
    pub hub: Arc<AgentHub>,
    pub tunnels: Arc<TunnelBroker>,
    pub changes: Changes,
    /// Fires when the server shuts down; long-lived connections watch it.
    pub shutdown: CancellationToken,
    /// Fires when this replica starts draining (SIGTERM), and at the latest
    /// with `shutdown` (its child): `/readyz` turns 503, agents are told to
    /// reconnect elsewhere, event streams end; tunnels wait for `shutdown`
    /// (`cluster/drain.rs`).
    pub draining: CancellationToken,
    /// Upgraded connections, which axum does not track, so shutdown can
    /// wait for them.
    pub tasks: TaskTracker,
    pub metrics: Arc<Metrics>,
    /// Seals the sessions this control plane places (see `seal.rs`).
    pub sealer: Sealer,
    /// Failed-login throttling and the bound on password hashing.
    pub login: Arc<LoginGuard>,
    /// The key sealing TOTP secrets and the wrong-code throttle.
    pub mfa: Arc<MfaGuard>,
    /// Tells open streams that a user's logins or role changed.
    pub revocations: Revocations,
    /// Each user's budget of event, log and VNC streams.
    pub streams: Arc<StreamLimit>,
    /// The web-app proxy's pooled client (`apps/`).
    pub apps: Arc<crate::apps::shared::Apps>,
    /// How fast people who proved nothing may add to the audit log.
    pub anonymous_events: Arc<crate::audit_log::flood::AnonymousBudget>,
    /// Tells guests' viewers that their share ended (`tunnel/guests.rs`).
    pub share_ends: ShareEnds,
    /// The admin settings, read at most once a second.
    pub settings: Arc<crate::settings_cache::SettingsCache>,
    /// Single sign-on, when configured.
    pub oidc: Option<Arc<crate::auth::oidc::Oidc>>,
    /// Session recordings under `DATA_DIR/recordings`.
    pub recordings: Arc<crate::recording::Recordings>,
    /// This process among the control plane's replicas (`cluster/`).
    pub replica: Arc<Replica>,
    /// Notices to and from the other replicas (`cluster/bus.rs`).
    pub bus: Bus,
    /// Whether this replica runs the singleton jobs (`cluster/leader.rs`).
    pub leader: Leader,
}
