//! The live control channels of connected agents, and what their latest
//! heartbeats said: the part of the hub that the application state holds
//! and every request may read. What needs the whole state (storing
//! heartbeats, dispatching commands, serving a channel) is in the rest of
//! `hub/`, above it.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use streamspace_protocol::{
    AgentId, NodeMetrics, PlatformHealth, ServerMessage, SessionId, SessionUsage,
};
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
#[derive(Debug, Clone)]
pub struct Beat {
    pub at: i64,
    pub metrics: NodeMetrics,
    /// Its platform's health, if the agent reports it.
    pub health: Option<PlatformHealth>,
}

impl Beat {
    /// What is wrong with the platform, if anything.
    pub fn problem(&self) -> Option<&str> {
        self.health.as_ref().and_then(|h| h.problem.as_deref())
    }
}

/// The connected agents, and which holds each secret: tunnel claims come
/// from anyone on the network, so finding the agent of a secret is one
/// lookup, not a scan of every agent under the lock all messages take.
#[derive(Default)]
struct Links {
    by_agent: HashMap<AgentId, Link>,
    by_secret: HashMap<String, AgentId>,
}

impl Links {
    /// The replaced link, if the agent was connected.
    fn insert(&mut self, agent_id: &AgentId, link: Link) -> Option<Link> {
        self.by_secret
            .insert(link.secret_hash.clone(), agent_id.clone());
        let old = self.by_agent.insert(agent_id.clone(), link)?;
        if old.secret_hash != self.by_agent[agent_id].secret_hash {
            self.by_secret.remove(&old.secret_hash);
        }
        Some(old)
    }

    fn remove(&mut self, agent_id: &AgentId) {
        if let Some(link) = self.by_agent.remove(agent_id) {
            self.by_secret.remove(&link.secret_hash);
        }
    }
}

#[derive(Default)]
pub struct AgentHub {
    links: Mutex<Links>,
    next_conn: AtomicU64,
    /// Latest heartbeats, and which are not stored yet: heartbeats are
    /// written in one batch per interval, not one write each (10,000 agents
    /// every 5 s would otherwise be 2,000 writes a second).
    beats: Mutex<Beats>,
    /// Where each agent asked to pre-pull a template's image stands.
    pub prepulls: super::prepulls::Board,
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
    fn links(&self) -> std::sync::MutexGuard<'_, Links> {
        // A panic while holding this lock cannot leave the maps inconsistent
        // (`Links` changes both without calling out), so poison is ignored.
        self.links.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a new connection for `agent_id`, replacing (and thereby
    /// closing) any older one. Returns the connection id and its outbox.
    pub(super) fn attach(
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
        if self.links().insert(agent_id, link).is_some() {
            tracing::info!(
                %agent_id,
                "a newer connection replaced the agent's previous one"
            );
        }
        (conn_id, rx)
    }

    /// Removes the connection if it is still the current one for the agent.
    pub(super) fn detach(&self, agent_id: &AgentId, conn_id: u64) -> bool {
        let mut links = self.links();
        if links
            .by_agent
            .get(agent_id)
            .is_some_and(|l| l.conn_id == conn_id)
        {
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
        self.links().by_agent.contains_key(agent_id)
    }

    /// The connected agent that holds this secret, if any.
    pub fn agent_for_secret(&self, secret_hash: &str) -> Option<AgentId> {
        self.links().by_secret.get(secret_hash).cloned()
    }

    /// Queues a message to a connected agent. `false` when the agent is not
    /// connected here or its connection is stuck.
    pub fn send(&self, agent_id: &AgentId, message: ServerMessage) -> bool {
        let links = self.links();
        let Some(link) = links.by_agent.get(agent_id) else {
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
        self.links().by_agent.len()
    }

    fn beats(&self) -> std::sync::MutexGuard<'_, Beats> {
        self.beats.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Keeps the heartbeat for the next batch; true when it tells of a
    /// change of the platform's health (a problem where the last beat here
    /// had none or another, or none where it had one), which is worth
    /// storing and announcing at once.
    pub fn record_heartbeat(
        &self,
        agent_id: &AgentId,
        beat: Beat,
        sessions: Vec<SessionUsage>,
    ) -> bool {
        let mut beats = self.beats();
        let before = beats
            .latest
            .get(agent_id)
            .map(|b| b.problem().map(str::to_owned));
        let health_changed = match before {
            Some(before) => before.as_deref() != beat.problem(),
            // The first beat here: news only if something is wrong (a
            // healthy one reaches the store with the batch).
            None => beat.problem().is_some(),
        };
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
        health_changed
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
        self.beats().latest.get(agent_id).cloned()
    }

    /// Heartbeats received since the last call, to store in one batch.
    pub(super) fn take_unsaved(&self) -> Vec<(AgentId, Beat)> {
        let mut beats = self.beats();
        let ids = std::mem::take(&mut beats.unsaved);
        ids.into_iter()
            .filter_map(|id| beats.latest.get(&id).map(|b| (id, b.clone())))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_heartbeat_is_news_when_the_platform_health_changes() {
        let hub = AgentHub::default();
        let agent = AgentId::from("a");
        let beat = |problem: Option<&str>| Beat {
            at: 1,
            metrics: NodeMetrics::default(),
            health: Some(PlatformHealth {
                problem: problem.map(str::to_owned),
            }),
        };
        let record = |b: Beat| hub.record_heartbeat(&agent, b, Vec::new());
        assert!(
            !record(beat(None)),
            "a healthy first beat waits for the batch"
        );
        assert!(!record(beat(None)));
        assert!(record(beat(Some("disk full"))));
        assert!(
            !record(beat(Some("disk full"))),
            "the same problem is no news"
        );
        assert!(record(beat(Some("engine hung"))), "another problem is");
        let older_agent = Beat {
            health: None,
            ..beat(None)
        };
        assert!(record(older_agent), "no word of health counts as healthy");
        let other = AgentId::from("b");
        assert!(hub.record_heartbeat(&other, beat(Some("x")), Vec::new()));
    }

    #[test]
    fn a_secret_finds_its_connected_agent_and_only_while_connected() {
        let hub = AgentHub::default();
        let (a, b) = (AgentId::from("a"), AgentId::from("b"));
        let (a1, _rx_a1) = hub.attach(&a, "hash-a1");
        let (_b1, _rx_b1) = hub.attach(&b, "hash-b");
        assert_eq!(hub.agent_for_secret("hash-a1"), Some(a.clone()));
        assert_eq!(hub.agent_for_secret("hash-b"), Some(b.clone()));
        assert_eq!(hub.agent_for_secret("hash-x"), None);

        // A reconnects with a new secret: the old one no longer names it,
        // and the old connection's late detach changes nothing.
        let (a2, _rx_a2) = hub.attach(&a, "hash-a2");
        assert_eq!(hub.agent_for_secret("hash-a1"), None);
        assert!(!hub.detach(&a, a1));
        assert_eq!(hub.agent_for_secret("hash-a2"), Some(a.clone()));

        assert!(hub.detach(&a, a2));
        assert_eq!(hub.agent_for_secret("hash-a2"), None);
        hub.disconnect(&b);
        assert_eq!(hub.agent_for_secret("hash-b"), None);
        assert_eq!(hub.connected_count(), 0);
    }
}
