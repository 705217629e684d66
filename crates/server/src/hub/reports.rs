//! What agents tell the control plane, applied to the store. An agent can
//! only ever change sessions assigned to it (the store enforces that).

use crate::lifecycle::audit;
use crate::state::AppState;
use crate::store::{CommandStatus, SessionEvent, StoreResult, now_ms};
use std::collections::HashSet;
use streamspace_protocol::{AgentMessage, Phase, SessionReport};

/// The agent a message came from.
pub struct From<'a> {
    pub id: &'a str,
    /// `agent:<name>`, for the audit trail.
    pub actor: &'a str,
}

pub async fn handle(state: &AppState, from: &From<'_>, message: AgentMessage) {
    if let Err(err) = apply(state, from, message).await {
        tracing::error!(error = %err, "cannot apply agent message");
    }
}

async fn apply(state: &AppState, from: &From<'_>, message: AgentMessage) -> StoreResult<()> {
    let agent_id = from.id;
    match message {
        AgentMessage::Heartbeat { metrics, sessions } => {
            let beat = super::Beat {
                at: now_ms(),
                metrics,
            };
            state.hub.record_heartbeat(agent_id, beat, sessions);
        }
        AgentMessage::Ack { command_id } => {
            state
                .store
                .advance_command(&command_id, agent_id, CommandStatus::Acked, None)
                .await?;
        }
        AgentMessage::Result { command_id, error } => {
            let status = match error {
                None => CommandStatus::Completed,
                Some(_) => CommandStatus::Failed,
            };
            state
                .store
                .advance_command(&command_id, agent_id, status, error.as_deref())
                .await?;
        }
        AgentMessage::SessionStatus(report) => apply_report(state, from, &report).await?,
        AgentMessage::Inventory { sessions } => apply_inventory(state, from, &sessions).await?,
        AgentMessage::TunnelFailed { tunnel_id, error } => {
            state.tunnels.fail(&tunnel_id, agent_id, error);
        }
        AgentMessage::Hello(_) => tracing::warn!("ignoring a second hello"),
    }
    Ok(())
}

async fn apply_report(
    state: &AppState,
    from: &From<'_>,
    report: &SessionReport,
) -> StoreResult<()> {
    let updated = state
        .store
        .report_phase(
            &report.session_id,
            from.id,
            report.phase,
            report.message.as_deref(),
        )
        .await?;
    match updated {
        Some(session) => {
            tracing::info!(session_id = %session.id, phase = %session.phase, "session phase");
            let event = SessionEvent::new(from.actor, "phase")
                .phase(session.phase.as_str())
                .message(session.message.as_deref());
            audit(state, &session.id, &event).await;
            state.events.session_changed(&session.id, &session.user_id);
        }
        None => tracing::debug!(session_id = %report.session_id, "report changed nothing"),
    }
    Ok(())
}

/// Applies a full inventory and reconciles drift: a session the store puts
/// on this agent that the agent no longer has, with nothing in flight that
/// would create it, was removed behind StreamSpace's back.
async fn apply_inventory(
    state: &AppState,
    from: &From<'_>,
    reports: &[SessionReport],
) -> StoreResult<()> {
    let agent_id = from.id;
    let placed = state.store.agent_sessions(agent_id).await?;
    let known: HashSet<&str> = placed.iter().map(|s| s.id.as_str()).collect();
    let mut seen = HashSet::with_capacity(reports.len());
    for report in reports {
        seen.insert(report.session_id.as_str());
        if known.contains(report.session_id.as_str()) {
            apply_report(state, from, report).await?;
        } else {
            super::orphans::handle(state, agent_id, report).await?;
        }
    }
    for session in placed {
        let settled = matches!(
            session.phase,
            Phase::Pending | Phase::Failed | Phase::Terminated
        );
        if seen.contains(session.id.as_str())
            || settled
            || state.store.session_has_open_commands(&session.id).await?
        {
            continue;
        }
        let missing = if session.state == streamspace_protocol::DesiredState::Terminated {
            SessionReport::new(&session.id, Phase::Terminated)
        } else {
            SessionReport::new(&session.id, Phase::Failed).with_message(
                "the agent no longer has this session: its container or pod was removed \
                 outside StreamSpace",
            )
        };
        apply_report(state, from, &missing).await?;
    }
    Ok(())
}
