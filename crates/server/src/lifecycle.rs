//! Changing what a session should be: the one path the API, the idle
//! detector and auto-wake all take, so every change is checked against
//! quotas, stored with its command, audited and announced the same way.

use crate::error::{ApiError, ApiResult};
use crate::hub::dispatch;
use crate::quota;
use crate::state::AppState;
use crate::store::{SessionEvent, SessionRecord, new_id};
use streamspace_protocol::{Action, Command, DesiredState, Phase};

/// Sets the session's desired state and queues the command that moves it
/// there. Asking for what is already the case changes nothing. `actor` says
/// who asked, for the audit trail (`user:alice`, `system:idle`).
pub async fn change_state(
    state: &AppState,
    session: SessionRecord,
    desired: DesiredState,
    actor: &str,
    reason: Option<&str>,
) -> ApiResult<SessionRecord> {
    let Some(agent_id) = session.agent_id.clone() else {
        return Err(ApiError::Conflict("the session has no agent".into()));
    };
    let Some((phase, action)) = transition(&session, desired)? else {
        return Ok(session);
    };
    if action == Action::Hibernate && !agent_supports_hibernation(state, &agent_id).await? {
        return Err(ApiError::Conflict(
            "this session's platform cannot hibernate sessions".into(),
        ));
    }
    if desired == DesiredState::Running && session.state != DesiredState::Running {
        quota::check_wake(state, &session).await?;
    }
    let command = Command {
        id: new_id(),
        session_id: session.id.clone(),
        action,
    };
    let updated = state
        .store
        .set_desired_state(&session.id, desired, phase, Some((&agent_id, &command)))
        .await?
        .ok_or_else(|| ApiError::not_found("session"))?;
    tracing::info!(session_id = %session.id, state = desired.as_str(), %actor, "desired state set");
    let event = SessionEvent::new(actor, "state")
        .state(desired.as_str())
        .phase(phase.as_str())
        .message(reason);
    audit(state, &session.id, &event).await;
    dispatch(state, &agent_id, command).await?;
    state.events.session_changed(&updated.id, &updated.user_id);
    Ok(updated)
}

/// The phase to show and the command to send to move `session` toward
/// `desired`; `None` when it is already there (or on its way).
pub fn transition(
    session: &SessionRecord,
    desired: DesiredState,
) -> ApiResult<Option<(Phase, Action)>> {
    use Phase::*;
    if session.phase == Terminated {
        return match desired {
            DesiredState::Terminated => Ok(None),
            _ => Err(ApiError::Conflict(
                "the session is terminated: start a new one from its template".into(),
            )),
        };
    }
    if session.state == desired && session.phase != Failed {
        return Ok(None);
    }
    Ok(Some((
        transitional_phase(session, desired),
        action_for(session, desired),
    )))
}

/// The phase shown while moving toward `desired`.
pub fn transitional_phase(session: &SessionRecord, desired: DesiredState) -> Phase {
    match desired {
        DesiredState::Terminated => Phase::Stopping,
        DesiredState::Hibernated => Phase::Hibernating,
        DesiredState::Running if matches!(session.phase, Phase::Failed | Phase::Pending) => {
            Phase::Starting
        }
        DesiredState::Running => Phase::Waking,
    }
}

/// The command that moves `session` toward `desired`.
pub fn action_for(session: &SessionRecord, desired: DesiredState) -> Action {
    match desired {
        DesiredState::Terminated => Action::Terminate,
        DesiredState::Hibernated => Action::Hibernate,
        // Start is idempotent and recreates whatever is missing, so it also
        // recovers a failed session or one whose start never completed.
        DesiredState::Running
            if matches!(
                session.phase,
                Phase::Failed | Phase::Pending | Phase::Starting
            ) =>
        {
            Action::Start {
                spec: Box::new(session.spec.clone()),
            }
        }
        DesiredState::Running => Action::Wake {
            vnc_port: session.spec.vnc_port().unwrap_or_default(),
        },
    }
}

async fn agent_supports_hibernation(state: &AppState, agent_id: &str) -> ApiResult<bool> {
    let agent = state.store.get_agent(agent_id).await?;
    Ok(agent.is_some_and(|a| a.capabilities.hibernation))
}

/// Records an audit event; a failure to record is logged, not fatal.
pub async fn audit(state: &AppState, session_id: &str, event: &SessionEvent) {
    if let Err(err) = state.store.record_event(session_id, event).await {
        tracing::error!(error = %err, session_id, "cannot record session event");
    }
}
