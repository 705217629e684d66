//! The tunnel broker: pairs each viewer waiting for a tunnel with the
//! agent data connection that opens it, by tunnel id, and only if that
//! agent is the one that was asked. A part of the application state, so it
//! knows nothing of it: `tunnel/mod.rs` asks the agent, `agent_side.rs`
//! hands over the connection.
//!
//! A tunnel id starts with the id of the replica whose broker waits for it
//! (`{replica}{32 hex}`), so a data channel that reaches another replica
//! (through a load balancer) is relayed to this one (`tunnel/forward.rs`).
//! Agents treat ids as opaque.

use crate::cluster::replica::ReplicaId;
use hyper::upgrade::Upgraded;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use streamspace_protocol::{AgentId, TunnelId};
use tokio::sync::oneshot;

pub(super) type Reply = oneshot::Sender<Result<Upgraded, String>>;

struct Pending {
    agent_id: AgentId,
    reply: Reply,
}

pub struct TunnelBroker {
    /// The replica this broker is part of: every id it mints starts with it.
    replica: ReplicaId,
    pending: Mutex<HashMap<TunnelId, Pending>>,
}

/// Digits of the random part of a tunnel id, after the replica's id.
const RANDOM_DIGITS: usize = 32;

/// The replica waiting for `tunnel_id`: the id it starts with, if it has
/// the form `{replica}{32 hex}`. Ids of another form (an older control
/// plane's 32 digits) name no replica: only a local wait can match them.
pub fn waiting_replica(tunnel_id: &TunnelId) -> Option<&str> {
    let id = tunnel_id.as_str();
    // All hex digits first, so slicing cannot split a character.
    let well_formed =
        id.len() == ReplicaId::LEN + RANDOM_DIGITS && id.bytes().all(|b| b.is_ascii_hexdigit());
    well_formed.then(|| &id[..ReplicaId::LEN])
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
    pub fn new(replica: ReplicaId) -> Self {
        Self {
            replica,
            pending: Mutex::default(),
        }
    }

    /// Whether `tunnel_id` is one this broker would have minted, so the
    /// wait for it (if any) is here.
    pub fn is_local(&self, tunnel_id: &TunnelId) -> bool {
        waiting_replica(tunnel_id).is_none_or(|replica| replica == self.replica.as_str())
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, HashMap<TunnelId, Pending>> {
        // Single inserts/removes cannot leave the map inconsistent.
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a tunnel that `agent_id` is about to be asked to open.
    pub fn expect(self: &Arc<Self>, agent_id: &AgentId) -> TunnelRequest {
        let id = TunnelId::from(format!("{}{}", self.replica, TunnelId::new()));
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
    /// `false` when no viewer waits for it from this agent.
    pub fn fail(&self, tunnel_id: &TunnelId, agent_id: &AgentId, error: String) -> bool {
        let reply = self.claim(tunnel_id, agent_id);
        reply.is_some_and(|reply| reply.send(Err(error)).is_ok())
    }

    pub fn waiting(&self) -> usize {
        self.pending().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_carry_the_waiting_replica() {
        let replica = ReplicaId::new();
        let broker = Arc::new(TunnelBroker::new(replica.clone()));
        let request = broker.expect(&AgentId::from("agent"));
        assert_eq!(waiting_replica(&request.id), Some(replica.as_str()));
        assert!(broker.is_local(&request.id));
        let other = TunnelId::from(format!("{}{}", ReplicaId::new(), TunnelId::new()));
        assert!(!broker.is_local(&other), "{other} waits elsewhere");
        // An older control plane's id, and junk, name no replica.
        for id in [
            TunnelId::new(),
            TunnelId::from("x".repeat(48)),
            TunnelId::from("é".repeat(24)),
        ] {
            assert_eq!(waiting_replica(&id), None, "{id}");
            assert!(broker.is_local(&id));
        }
    }

    #[test]
    fn only_the_asked_agent_claims() {
        let broker = Arc::new(TunnelBroker::new(ReplicaId::new()));
        let request = broker.expect(&AgentId::from("a"));
        assert!(broker.claim(&request.id, &AgentId::from("b")).is_none());
        assert!(broker.claim(&request.id, &AgentId::from("a")).is_some());
        assert!(broker.claim(&request.id, &AgentId::from("a")).is_none());
    }
}
