//! The tunnel broker: pairs each viewer waiting for a tunnel with the
//! agent data connection that opens it, by tunnel id, and only if that
//! agent is the one that was asked. A part of the application state, so it
//! knows nothing of it: `tunnel/mod.rs` asks the agent, `agent_side.rs`
//! hands over the connection.

use hyper::upgrade::Upgraded;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use streamspace_protocol::{AgentId, TunnelId};
use tokio::sync::oneshot;

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
    pub(super) fn claim(&self, tunnel_id: &TunnelId, agent_id: &AgentId) -> Option<Reply> {
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
