//! A change of an agent's platform health, applied: stored at once
//! (placement on every replica reads it; the batch of heartbeats would be
//! an interval late), announced on the live streams, and with it the
//! sessions waiting on the agent, whose views say why they wait.

use crate::presence;
use crate::state::AppState;
use crate::store::StoreResult;
use streamspace_protocol::{AgentId, PlatformHealth};

pub async fn changed(
    state: &AppState,
    agent_id: &AgentId,
    health: Option<&PlatformHealth>,
) -> StoreResult<()> {
    state.store.set_agent_health(agent_id, health).await?;
    match health.and_then(|h| h.problem.as_deref()) {
        Some(problem) => tracing::warn!(%agent_id, problem, "agent degraded"),
        None => tracing::info!(%agent_id, "agent's platform is healthy again"),
    }
    state.changes.agent_changed(agent_id);
    for session in state.store.agent_sessions(agent_id).await? {
        if presence::waits_on_platform(session.phase) {
            state.changes.session_changed(&session.id, &session.user_id);
        }
    }
    Ok(())
}
