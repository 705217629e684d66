//! The agent hub: the live control channels of connected agents, and the one
//! way commands reach them (stored first, then sent).

pub(crate) mod connection;
mod orphans;
mod rate;
mod reports;

use crate::state::AppState;
use crate::store::StoreResult;
use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use streamspace_protocol::{AgentId, Command, NodeMetrics, ServerMessage, SessionId, SessionUsage};
use tokio::sync::mpsc;

/// Outgoing messages queued per agent before the connection is considered
/// stuck and closed.
const OUTBOX: usize = 1024;

struct Link {
    conn_id: u64,
    secret_hash: String,
    outbox: mpsc::Sender<ServerMessage>,
}

/// An agent's latest heartbeat.
#[derive(Debug, Clone, Copy)]
pub struct Beat {
    pub at: i64,
    pub metrics: NodeMetrics,
}

#[derive(Default)]
pub struct AgentHub {
    links: Mutex<HashMap<AgentId, Link>>,
    next_conn: AtomicU64,
    /// Latest heartbeats, and which are not stored yet: heartbeats are
    /// written in one batch per interval, not one write each (10,000 agents
    /// every 5 s would otherwise be 2,000 writes a second).
    beats: Mutex<Beats>,
}

#[derive(Default)]
struct Beats {
    latest: HashMap<AgentId, Beat>,
    unsaved: HashSet<AgentId>,
    /// What each running session used at its agent's last heartbeat, by
    /// (agent, session): an agent's figures only ever describe its own
    /// sessions, whatever ids it sends. And which sessions each agent
    /// reported (to drop those it stops reporting).
    usage: HashMap<(AgentId, SessionId), SessionUsage>,
    reported: HashMap<AgentId, Vec<SessionId>>,
}

impl AgentHub {
    fn links(&self) -> std::sync::MutexGuard<'_, HashMap<AgentId, Link>> {
        // A panic while holding this lock cannot leave the map inconsistent
        // (every operation is a single insert/remove), so poison is ignored.
        self.links.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a new connection for `agent_id`, replacing (and thereby
    /// closing) any older one. Returns the connection id and its outbox.
    fn attach(
        &self,
        agent_id: &AgentId,
        secret_hash: &str,
    ) -> (u64, mpsc::Receiver<ServerMessage>) {
        let (outbox, rx) = mpsc::channel(OUTBOX);
        let conn_id = self.next_conn.fetch_add(1, Ordering::Relaxed);
        let link = Link {
            conn_id,
            secret_hash: secret_hash.to_owned(),
            outbox,
        };
        if self.links().insert(agent_id.clone(), link).is_some() {
            tracing::info!(
                %agent_id,
                "a newer connection replaced the agent's previous one"
            );
        }
        (conn_id, rx)
    }

    /// Removes the connection if it is still the current one for the agent.
    fn detach(&self, agent_id: &AgentId, conn_id: u64) -> bool {
        let mut links = self.links();
        if links.get(agent_id).is_some_and(|l| l.conn_id == conn_id) {
            links.remove(agent_id);
            true
        } else {
            false
        }
    }

    /// Closes the agent's connection, if any (used when an agent is deleted).
    pub fn disconnect(&self, agent_id: &AgentId) {
        self.links().remove(agent_id);
    }

    pub fn is_connected(&self, agent_id: &AgentId) -> bool {
        self.links().contains_key(agent_id)
    }

    /// The connected agent that holds this secret, if any.
    pub fn agent_for_secret(&self, secret_hash: &str) -> Option<AgentId> {
        self.links()
            .iter()
            .find(|(_, link)| link.secret_hash == secret_hash)
            .map(|(id, _)| id.clone())
    }

    /// Queues a message to a connected agent. `false` when the agent is not
    /// connected here or its connection is stuck.
    pub fn send(&self, agent_id: &AgentId, message: ServerMessage) -> bool {
        let links = self.links();
        let Some(link) = links.get(agent_id) else {
            return false;
        };
        match link.outbox.try_send(message) {
            Ok(()) => true,
            Err(err) => {
                tracing::warn!(%agent_id, error = %err, "agent outbox is full or closed");
                false
            }
        }
    }

    pub fn connected_count(&self) -> usize {
        self.links().len()
    }

    fn beats(&self) -> std::sync::MutexGuard<'_, Beats> {
        self.beats.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn record_heartbeat(&self, agent_id: &AgentId, beat: Beat, sessions: Vec<SessionUsage>) {
        let mut beats = self.beats();
        beats.latest.insert(agent_id.clone(), beat);
        beats.unsaved.insert(agent_id.clone());
        let ids: Vec<SessionId> = sessions.iter().map(|s| s.session_id.clone()).collect();
        for old in beats
            .reported
            .insert(agent_id.clone(), ids)
            .unwrap_or_default()
        {
            beats.usage.remove(&(agent_id.clone(), old));
        }
        for usage in sessions {
            let key = (agent_id.clone(), usage.session_id.clone());
            beats.usage.insert(key, usage);
        }
    }

    /// What a session used at the last heartbeat of `agent_id`, the agent
    /// it is placed on, if measured.
    pub fn session_usage(
        &self,
        agent_id: &AgentId,
        session_id: &SessionId,
    ) -> Option<SessionUsage> {
        let key = (agent_id.clone(), session_id.clone());
        self.beats().usage.get(&key).cloned()
    }

    /// The latest heartbeat received here, stored or not.
    pub fn latest_heartbeat(&self, agent_id: &AgentId) -> Option<Beat> {
        self.beats().latest.get(agent_id).copied()
    }

    /// Heartbeats received since the last call, to store in one batch.
    fn take_unsaved(&self) -> Vec<(AgentId, Beat)> {
        let mut beats = self.beats();
        let ids = std::mem::take(&mut beats.unsaved);
        ids.into_iter()
            .filter_map(|id| beats.latest.get(&id).map(|b| (id, *b)))
            .collect()
    }

    pub fn forget(&self, agent_id: &AgentId) {
        let mut beats = self.beats();
        beats.latest.remove(agent_id);
        for old in beats.reported.remove(agent_id).unwrap_or_default() {
            beats.usage.remove(&(agent_id.clone(), old));
        }
    }
}

/// Heartbeats stored per write while flushing.
const FLUSH_CHUNK: usize = 250;

/// Stores received heartbeats once per heartbeat interval until shutdown.
pub async fn save_heartbeats(state: AppState) {
    let interval = state.config.heartbeat_interval;
    let mut tick = tokio::time::interval(interval);
    loop {
        let stopping = tokio::select! {
            _ = tick.tick() => false,
            _ = state.shutdown.cancelled() => true,
        };
        let batch = state.hub.take_unsaved();
        // SQLite has one writer: spread the chunks over half an interval so
        // a request that writes waits for one chunk at most, not for all.
        let chunks = batch.len().div_ceil(FLUSH_CHUNK).max(1) as u32;
        let pause = if stopping {
            Duration::ZERO
        } else {
            interval / 2 / chunks
        };
        for (i, chunk) in batch.chunks(FLUSH_CHUNK).enumerate() {
            if i > 0 {
                tokio::time::sleep(pause).await;
            }
            if let Err(err) = state.store.record_heartbeats(chunk).await {
                tracing::error!(error = %err, "cannot store heartbeats");
            }
        }
        if stopping {
            return;
        }
    }
}

/// Sends a command that is already stored. If the agent is not connected it
/// stays pending and goes out when the agent next connects.
pub async fn dispatch(state: &AppState, agent_id: &AgentId, command: Command) -> StoreResult<()> {
    let id = command.id.clone();
    if state.hub.send(agent_id, ServerMessage::Command(command)) {
        state.metrics.commands_dispatched.inc();
        state.store.mark_command_sent(&id).await?;
    } else {
        tracing::info!(%agent_id, command_id = %id, "agent not connected; command queued");
    }
    Ok(())
}
