//! VNC tunnels: a viewer's WebSocket on `/vnc/{id}` spliced to a fresh data
//! channel that the session's agent dials back for this one tunnel.
//!
//! The broker pairs the two: the viewer side registers a pending tunnel and
//! asks the agent (over the control channel) to open it; the agent's data
//! connection claims it by id. Each tunnel is its own TCP connection end to
//! end, so one slow viewer never stalls another.

mod activity;
pub(crate) mod agent_side;
pub(crate) mod logs;
mod relay;
pub(crate) mod viewer;
mod websocket;

pub use logs::logs;

use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use streamspace_protocol::{AgentId, ServerMessage, TunnelId};

use hyper::upgrade::Upgraded;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::oneshot;
use tokio::time::timeout;

type Reply = oneshot::Sender<Result<Upgraded, String>>;

struct Pending {
    agent_id: AgentId,
    reply: Reply,
}

#[derive(Default)]
pub struct TunnelBroker {
    pending: Mutex<HashMap<TunnelId, Pending>>,
}

/// A tunnel the viewer side is waiting for. Dropping it (timeout, viewer
/// gone) withdraws the request so a late agent connection is refused.
pub struct TunnelRequest {
    pub id: TunnelId,
    pub reply: oneshot::Receiver<Result<Upgraded, String>>,
    broker: Arc<TunnelBroker>,
}

impl Drop for TunnelRequest {
    fn drop(&mut self) {
        self.broker.pending().remove(&self.id);
    }
}

impl TunnelBroker {
    fn pending(&self) -> std::sync::MutexGuard<'_, HashMap<TunnelId, Pending>> {
        // Single inserts/removes cannot leave the map inconsistent.
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a tunnel that `agent_id` is about to be asked to open.
    pub fn expect(self: &Arc<Self>, agent_id: &AgentId) -> TunnelRequest {
        let id = TunnelId::new();
        let (reply, rx) = oneshot::channel();
        let pending = Pending {
            agent_id: agent_id.clone(),
            reply,
        };
        self.pending().insert(id.clone(), pending);
        TunnelRequest {
            id,
            reply: rx,
            broker: Arc::clone(self),
        }
    }

    /// Hands the waiting viewer's reply channel to the agent connection that
    /// opened `tunnel_id`, if that agent is the one it was asked of.
    fn claim(&self, tunnel_id: &TunnelId, agent_id: &AgentId) -> Option<Reply> {
        let mut pending = self.pending();
        if pending.get(tunnel_id)?.agent_id != *agent_id {
            return None;
        }
        pending.remove(tunnel_id).map(|p| p.reply)
    }

    /// The agent could not open the tunnel; tell the waiting viewer why.
    pub fn fail(&self, tunnel_id: &TunnelId, agent_id: &AgentId, error: String) {
        if let Some(reply) = self.claim(tunnel_id, agent_id) {
            let _ = reply.send(Err(error));
        }
    }

    pub fn waiting(&self) -> usize {
        self.pending().len()
    }
}

/// Asks the agent to open a data channel (the message `ask` builds for the
/// new tunnel id) and waits for it, within the configured time limit.
pub async fn open_data_channel(
    state: &AppState,
    agent_id: &AgentId,
    ask: impl FnOnce(TunnelId) -> ServerMessage,
) -> ApiResult<Upgraded> {
    let mut request = state.tunnels.expect(agent_id);
    if !state.hub.send(agent_id, ask(request.id.clone())) {
        return Err(ApiError::Unavailable(
            "the session's agent is not connected: try again when it is back online".into(),
        ));
    }
    let limit = state.config.tunnel_timeout;
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
