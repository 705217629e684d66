//! Opening a data channel: ask the session's agent over its control
//! channel (held by this replica or another: `Bus::to_agent`), then wait
//! for its connection to arrive at the broker (here, or relayed here by the
//! replica it reached). Apart from the application state, so that the
//! web-app proxy's connection pool can hold one.

use super::broker::TunnelBroker;
use crate::cluster::bus::Bus;
use crate::error::{ApiError, ApiResult};
use crate::hub::channels::AgentHub;
use crate::store::Store;
use hyper::upgrade::Upgraded;
use std::sync::Arc;
use std::time::Duration;
use streamspace_protocol::{AgentId, ServerMessage, TunnelId};
use tokio::time::timeout;

/// What opening a data channel needs, without the rest of the application
/// state: the web-app proxy's connection pool holds one.
#[derive(Clone)]
pub struct TunnelOpener {
    pub hub: Arc<AgentHub>,
    pub broker: Arc<TunnelBroker>,
    pub limit: Duration,
    pub bus: Bus,
    pub store: Store,
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
        self.ask(agent_id, ask(request.id.clone())).await?;
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

    /// Sends `message` to the agent wherever its control channel is; a 503
    /// at once when it is connected to no replica, rather than a wait for
    /// the time limit.
    pub async fn ask(&self, agent_id: &AgentId, message: ServerMessage) -> ApiResult<()> {
        let reachable = self.hub.is_connected(agent_id) || self.online_elsewhere(agent_id).await?;
        if reachable && self.bus.to_agent(&self.hub, agent_id, message).await {
            return Ok(());
        }
        Err(ApiError::Unavailable(
            "the session's agent is not connected to any control-plane replica: try again \
             when it is back online"
                .into(),
        ))
    }

    /// Whether another replica holds the agent's control channel, as the
    /// store says (`agents.connected`, set by whichever replica holds it).
    async fn online_elsewhere(&self, agent_id: &AgentId) -> ApiResult<bool> {
        if !self.bus.is_shared() {
            return Ok(false);
        }
        let agent = self.store.get_agent(agent_id).await?;
        Ok(agent.is_some_and(|agent| agent.connected))
    }
}
