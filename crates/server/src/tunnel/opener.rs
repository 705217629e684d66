//! Opening a data channel: ask the session's agent over its control
//! channel, then wait for its connection to arrive at the broker. Apart from
//! the application state, so that the web-app proxy's connection pool can
//! hold one.

use super::broker::TunnelBroker;
use crate::error::{ApiError, ApiResult};
use crate::hub::channels::AgentHub;
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
