//! VNC tunnels: a viewer's WebSocket on `/vnc/{id}` spliced to a fresh data
//! channel that the session's agent dials back for this one tunnel.
//!
//! The broker (`broker.rs`, held by the application state) pairs the two:
//! the viewer side registers a pending tunnel and asks the agent (over the
//! control channel) to open it; the agent's data connection claims it by
//! id. Each tunnel is its own TCP connection end to end, so one slow viewer
//! never stalls another.

pub(crate) mod activity;
pub(crate) mod agent_side;
pub(crate) mod broker;
pub(crate) mod logs;
mod relay;
pub(crate) mod viewer;
mod websocket;

pub use logs::logs;
pub(crate) use viewer::wake_if_needed;

use crate::error::{ApiError, ApiResult};
use crate::hub::channels::AgentHub;
use crate::state::AppState;
use broker::TunnelBroker;
use hyper::upgrade::Upgraded;
use std::sync::Arc;
use std::time::Duration;
use streamspace_protocol::{AgentId, ServerMessage, TunnelId};
use tokio::time::timeout;

/// Asks the agent to open a data channel (the message `ask` builds for the
/// new tunnel id) and waits for it, within the configured time limit.
pub async fn open_data_channel(
    state: &AppState,
    agent_id: &AgentId,
    ask: impl FnOnce(TunnelId) -> ServerMessage,
) -> ApiResult<Upgraded> {
    let opener = TunnelOpener {
        hub: state.hub.clone(),
        broker: state.tunnels.clone(),
        limit: state.config.tunnel_timeout,
    };
    opener.open(agent_id, ask).await
}

/// What opening a data channel needs, without the rest of the application
/// state: the web-app proxy's connection pool holds one.
#[derive(Clone)]
pub struct TunnelOpener {
    pub hub: Arc<AgentHub>,
    pub broker: Arc<TunnelBroker>,
    pub limit: Duration,
}

impl TunnelOpener {
    /// Asks the agent to open a data channel (the message `ask` builds for
    /// the new tunnel id) and waits for it, within the time limit.
    pub async fn open(
        &self,
        agent_id: &AgentId,
        ask: impl FnOnce(TunnelId) -> ServerMessage,
    ) -> ApiResult<Upgraded> {
        let mut request = self.broker.expect(agent_id);
        if !self.hub.send(agent_id, ask(request.id.clone())) {
            return Err(ApiError::Unavailable(
                "the session's agent is not connected: try again when it is back online".into(),
            ));
        }
        let limit = self.limit;
        match timeout(limit, &mut request.reply).await {
            Err(_) => Err(ApiError::GatewayTimeout(format!(
                "the agent did not open the tunnel within {limit:?}"
            ))),
            Ok(Err(_)) => Err(ApiError::Unavailable(
                "the tunnel request was withdrawn".into(),
            )),
            Ok(Ok(Err(reason))) => Err(ApiError::Unavailable(format!(
                "the agent could not reach the session: {reason}"
            ))),
            Ok(Ok(Ok(stream))) => Ok(stream),
        }
    }
}
