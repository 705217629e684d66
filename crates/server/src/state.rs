//! What every handler and background job shares: the configuration, the
//! store, the agent hub, the tunnel broker, the change notices, the limits.

use crate::changes::Changes;
use crate::config::Config;
use crate::hub::channels::AgentHub;
use crate::store::Store;
use crate::tunnel::broker::TunnelBroker;
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
    /// Upgraded connections, which axum does not track, so shutdown can
    /// wait for them.
    pub tasks: TaskTracker,
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Seals the sessions this control plane places (see `seal.rs`).
    pub sealer: crate::seal::Sealer,
    /// Failed-login throttling and the bound on password hashing.
    pub login: Arc<crate::auth::login_guard::LoginGuard>,
    /// Tells open streams that a user's logins or role changed.
    pub revocations: crate::auth::revocations::Revocations,
    /// Each user's budget of event, log and VNC streams.
    pub streams: Arc<crate::streams::StreamLimit>,
}
