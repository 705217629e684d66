//! Whether an agent is reachable and healthy now, as views, live events and
//! placement all see it. Outside `api` because placement needs it too, and
//! placement is what the API calls.

use crate::state::AppState;
use crate::store::{AgentRecord, now_ms};
use streamspace_protocol::Phase;

/// Whether the agent is reachable now (connected to this control plane, or
/// to another replica that recorded a recent heartbeat), and if so whether
/// it takes sessions: `draining` by an admin's choice, `degraded` when its
/// platform's last health check found a problem.
pub fn status(state: &AppState, agent: &AgentRecord) -> &'static str {
    let silence = state.config.agent_silence_limit().as_millis() as i64;
    let fresh = agent.last_heartbeat.is_some_and(|t| now_ms() - t < silence);
    let online = state.hub.is_connected(&agent.id) || (agent.connected && fresh);
    match (online, agent.draining) {
        (false, _) => "offline",
        (true, true) => "draining",
        (true, false) if problem(state, agent).is_some() => "degraded",
        (true, false) => "online",
    }
}

/// What is wrong with the agent's platform, as its latest health check
/// said: the heartbeat received here when it is connected here (stored
/// ones are a batch behind), else the stored one.
pub fn problem(state: &AppState, agent: &AgentRecord) -> Option<String> {
    let here = state
        .hub
        .is_connected(&agent.id)
        .then(|| state.hub.latest_heartbeat(&agent.id))
        .flatten();
    match here {
        Some(beat) => beat.problem().map(str::to_owned),
        None => agent.health.as_ref().and_then(|h| h.problem.clone()),
    }
}

/// Phases in which a session waits on its agent's platform to get
/// somewhere (a start, a pull, a wake).
pub fn waits_on_platform(phase: Phase) -> bool {
    matches!(
        phase,
        Phase::Pending | Phase::Pulling | Phase::Starting | Phase::Waking
    )
}

/// The message of a session waiting on agent `name`, degraded by `problem`.
pub fn waiting_message(name: &str, problem: &str) -> String {
    format!(
        "waiting for agent {name}, which is degraded: {problem}; the session goes on \
         once its platform answers again"
    )
}

/// The agent with the latest heartbeat received here, which may be newer
/// than the stored one (heartbeats are stored in batches).
pub fn with_latest_beat(state: &AppState, mut agent: AgentRecord) -> AgentRecord {
    if let Some(beat) = state.hub.latest_heartbeat(&agent.id)
        && agent.last_heartbeat.is_none_or(|t| t < beat.at)
    {
        agent.last_heartbeat = Some(beat.at);
        agent.metrics = Some(beat.metrics);
        agent.health = beat.health;
    }
    agent
}
