//! The reconciler: compares what each session should be (its desired state)
//! with what its agent reports (its phase) and issues durable, idempotent
//! commands until they agree, with backoff, giving up with a clear `Failed`
//! after a bounded time. It also hibernates sessions that went idle.
//!
//! It only converges sessions whose agent is connected to this control
//! plane: an offline agent's sessions are left as they are (nothing is
//! rescheduled blindly), and with several replicas each agent's sessions
//! are reconciled by the one replica it is connected to. Idle hibernation
//! is a singleton instead: the replica holding the singleton lock
//! (`cluster/leader.rs`) hibernates the idle sessions of every online
//! agent, wherever it is connected (the command reaches it through the
//! bus), so a replica that dies does not leave its agents' sessions
//! running forever: the next holder takes over within a retry and a pass.

use crate::lifecycle::{action_for, audit, change_state};
use crate::state::AppState;
use crate::store::{AuditEntry, SessionRecord, StoreResult, now_ms};
use std::collections::HashSet;
use std::time::Duration;
use streamspace_protocol::{AgentId, Command, CommandId, DesiredState, Phase, ServerMessage};

/// A stored command not yet handed to the agent (created on another replica,
/// or its send failed) goes out after this long.
const PENDING_RESEND: Duration = Duration::from_secs(2);
/// A delivered command without a result is re-sent after this long; the agent
/// answers duplicates from memory, so this only recovers lost messages.
const STUCK_RESEND: Duration = Duration::from_secs(60);
/// Attempts at a desired state before the session is marked `Failed`.
const MAX_ATTEMPTS: u32 = 5;
/// The longest a session may take to reach its desired state.
const GIVE_UP: Duration = Duration::from_secs(10 * 60);
/// ... unless it is pulling its image and the pull still moves (a report
/// within [`PULL_QUIET`]): a big image on a slow link takes longer. Even
/// so, never longer than this.
const PULL_GIVE_UP: Duration = Duration::from_secs(60 * 60);
const PULL_QUIET: Duration = Duration::from_secs(2 * 60);
const ACTOR: &str = "system:reconciler";

/// Runs until the server shuts down.
pub async fn run(state: AppState) {
    let mut tick = tokio::time::interval(state.config.reconcile_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = state.shutdown.cancelled() => return,
        }
        if let Err(err) = reconcile_once(&state).await {
            tracing::error!(error = %err, "reconcile pass failed");
        }
    }
}

pub async fn reconcile_once(state: &AppState) -> StoreResult<()> {
    let now = now_ms();
    let mut idle = Vec::new();
    for session in state.store.sessions_to_reconcile(now).await? {
        let Some(agent_id) = session.agent_id.clone() else {
            continue;
        };
        if is_idle(&session, now) {
            idle.push((session, agent_id));
        } else if state.hub.is_connected(&agent_id) && !converged(&session) {
            converge(state, &session, &agent_id, now).await?;
        }
    }
    // Read the agents only when a session is idle: with 10,000 agents that
    // read every pass was the leader's largest stall.
    if idle.is_empty() || !state.leader.is_held() {
        return Ok(());
    }
    let online = online_agents(state).await?;
    for (session, agent_id) in idle {
        if online.contains(&agent_id) {
            hibernate_idle(state, session).await;
        }
    }
    Ok(())
}

/// The agents reachable now, through any replica: the ones idle
/// hibernation acts for.
async fn online_agents(state: &AppState) -> StoreResult<HashSet<AgentId>> {
    let agents = state.store.list_agents().await?;
    Ok(agents
        .into_iter()
        .filter(|agent| crate::presence::status(state, agent) != "offline")
        .map(|agent| agent.id)
        .collect())
}

fn converged(session: &SessionRecord) -> bool {
    matches!(
        (session.state, session.phase),
        (DesiredState::Running, Phase::Running)
            | (DesiredState::Hibernated, Phase::Hibernated)
            | (DesiredState::Terminated, Phase::Terminated)
    )
}

fn is_idle(session: &SessionRecord, now: i64) -> bool {
    session.state == DesiredState::Running
        && session.phase == Phase::Running
        && session
            .idle_timeout_ms
            .is_some_and(|idle| now - session.last_activity > idle)
}

async fn hibernate_idle(state: &AppState, session: SessionRecord) {
    let idle = session.idle_timeout_ms.unwrap_or_default();
    let reason = format!(
        "idle for {} (no viewer input or heartbeat)",
        humantime::format_duration(Duration::from_millis(idle.max(0) as u64))
    );
    let id = session.id.clone();
    match change_state(
        state,
        session,
        DesiredState::Hibernated,
        "system:idle",
        Some(&reason),
    )
    .await
    {
        Ok(_) => tracing::info!(session_id = %id, %reason, "hibernated an idle session"),
        // Expected: a platform that cannot hibernate keeps idle sessions
        // running; the session moved on meanwhile.
        Err(err) if err.is_refusal() => {
            tracing::debug!(session_id = %id, error = %err, "idle session not hibernated")
        }
        Err(err) => {
            tracing::error!(session_id = %id, error = %err, "cannot hibernate idle session")
        }
    }
}

/// Moves one session a step toward its desired state.
async fn converge(
    state: &AppState,
    session: &SessionRecord,
    agent_id: &AgentId,
    now: i64,
) -> StoreResult<()> {
    let since_change = Duration::from_millis((now - session.state_changed_at).max(0) as u64);
    let latest = state.store.latest_command(&session.id).await?;
    if let Some(open) = latest.as_ref().filter(|c| c.is_open()) {
        if since_change > give_up_after(session, now) {
            let reason = format!(
                "gave up: the agent did not finish \"{}\" within {}",
                open.command.action.name(),
                humantime::format_duration(GIVE_UP)
            );
            return give_up(state, session, &reason).await;
        }
        let age = Duration::from_millis((now - open.updated_at).max(0) as u64);
        let resend = (open.status == "pending" && age > PENDING_RESEND) || age > STUCK_RESEND;
        if resend && open.agent_id == *agent_id {
            let id = open.command.id.clone();
            if state
                .hub
                .send(agent_id, ServerMessage::Command(open.command.clone()))
            {
                state.store.mark_command_sent(&id).await?;
            }
        }
        return Ok(());
    }
    let (failures, last_error) = state
        .store
        .failures_since(&session.id, session.state_changed_at)
        .await?;
    if failures >= MAX_ATTEMPTS || since_change > GIVE_UP {
        let reason = format!(
            "gave up after {failures} attempts to make the session {}: {}",
            session.state.as_str(),
            last_error.as_deref().unwrap_or("it never got there")
        );
        return give_up(state, session, &reason).await;
    }
    let last_at = latest.as_ref().map_or(0, |c| c.updated_at);
    if now - last_at < backoff(failures).as_millis() as i64 {
        return Ok(());
    }
    // A retry belongs to the trace of the request that set this desired
    // state (the latest command issued since), not to the reconciler.
    let trace_parent = latest
        .filter(|c| c.created_at >= session.state_changed_at)
        .and_then(|c| c.command.trace_parent);
    let attempt = (failures, last_error.as_deref(), trace_parent);
    retry(state, session, agent_id, attempt).await
}

/// How long the session's open command may take: longer while its
/// image is being pulled and the pull reports progress.
fn give_up_after(session: &SessionRecord, now: i64) -> Duration {
    let quiet = Duration::from_millis((now - session.updated_at).max(0) as u64);
    if session.phase == Phase::Pulling && quiet < PULL_QUIET {
        PULL_GIVE_UP
    } else {
        GIVE_UP
    }
}

/// 1 s, 2 s, 4 s … between attempts, at most a minute.
fn backoff(failures: u32) -> Duration {
    Duration::from_secs(1 << failures.min(6)).min(Duration::from_secs(60))
}

async fn retry(
    state: &AppState,
    session: &SessionRecord,
    agent_id: &AgentId,
    (failures, last_error, trace_parent): (u32, Option<&str>, Option<String>),
) -> StoreResult<()> {
    let command = Command {
        id: CommandId::new(),
        session_id: session.id.clone(),
        action: action_for(session, session.state),
        trace_parent,
    };
    tracing::info!(
        session_id = %session.id,
        action = command.action.name(),
        attempt = failures + 1,
        "reconciling"
    );
    state.store.enqueue_command(agent_id, &command).await?;
    let message = match last_error {
        Some(error) => format!("attempt {} after: {error}", failures + 1),
        None => format!(
            "{} is {}: sending {}",
            session.state.as_str(),
            session.phase,
            command.action.name()
        ),
    };
    let event = AuditEntry::new(ACTOR, "retry")
        .state(session.state.as_str())
        .message(Some(&message));
    audit(state, &session.id, &event).await;
    crate::hub::dispatch(state, agent_id, command).await
}

async fn give_up(state: &AppState, session: &SessionRecord, reason: &str) -> StoreResult<()> {
    tracing::warn!(session_id = %session.id, %reason, "reconciler gave up");
    if let Some(failed) = state.store.fail_session(&session.id, reason).await? {
        let event = AuditEntry::new(ACTOR, "gave_up")
            .phase("Failed")
            .message(Some(reason));
        audit(state, &session.id, &event).await;
        crate::audit_log::sessions::gave_up(state, ACTOR, &session.id, reason).await;
        state.changes.session_changed(&failed.id, &failed.user_id);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_then_caps() {
        assert_eq!(backoff(0), Duration::from_secs(1));
        assert_eq!(backoff(1), Duration::from_secs(2));
        assert_eq!(backoff(3), Duration::from_secs(8));
        assert_eq!(backoff(10), Duration::from_secs(60));
    }
}
