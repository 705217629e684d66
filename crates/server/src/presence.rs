//! Whether an agent is reachable now, as views, live events and placement
//! all see it. Outside `api` because placement needs it too, and placement
//! is what the API calls.

use crate::state::AppState;
use crate::store::{AgentRecord, now_ms};

/// Whether the agent is reachable now: connected to this control plane, or
/// to another replica that recorded a recent heartbeat.
pub fn status(state: &AppState, agent: &AgentRecord) -> &'static str {
    let silence = state.config.agent_silence_limit().as_millis() as i64;
    let fresh = agent.last_heartbeat.is_some_and(|t| now_ms() - t < silence);
    let online = state.hub.is_connected(&agent.id) || (agent.connected && fresh);
    match (online, agent.draining) {
        (false, _) => "offline",
        (true, true) => "draining",
        (true, false) => "online",
    }
}

/// The agent with the latest heartbeat received here, which may be newer
/// than the stored one (heartbeats are stored in batches).
pub fn with_latest_beat(state: &AppState, mut agent: AgentRecord) -> AgentRecord {
    if let Some(beat) = state.hub.latest_heartbeat(&agent.id)
        && agent.last_heartbeat.is_none_or(|t| t < beat.at)
    {
        agent.last_heartbeat = Some(beat.at);
        agent.metrics = Some(beat.metrics);
    }
    agent
}
