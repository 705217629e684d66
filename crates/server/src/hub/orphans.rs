//! Sessions an agent reports that the store does not place on it: lingering
//! containers of terminated sessions are removed; unknown ones are adopted,
//! removed or ignored by the configured policy.

use crate::config::OrphanPolicy;
use crate::lifecycle::audit;
use crate::state::AppState;
use crate::store::{NewSession, SessionEvent, StoreResult, duration_ms, new_id};
use streamspace_protocol::{
    Action, Command, DesiredState, Phase, Resources, ServerMessage, SessionReport,
};

pub async fn handle(state: &AppState, agent_id: &str, report: &SessionReport) -> StoreResult<()> {
    match state.store.get_session(&report.session_id).await? {
        Some(session) if session.agent_id.as_deref() != Some(agent_id) => {
            tracing::warn!(session_id = %session.id, "agent reports a session placed on another agent");
        }
        Some(session) if report.phase != Phase::Terminated => {
            // Terminated here, still present there: finish the job.
            let command = Command {
                id: new_id(),
                session_id: session.id.clone(),
                action: Action::Terminate,
            };
            state.store.enqueue_command(agent_id, &command).await?;
            crate::hub::dispatch(state, agent_id, command).await?;
        }
        Some(_) => {}
        None => unknown(state, agent_id, report).await?,
    }
    Ok(())
}

async fn unknown(state: &AppState, agent_id: &str, report: &SessionReport) -> StoreResult<()> {
    let id = &report.session_id;
    match state.config.orphan_policy {
        OrphanPolicy::Ignore => {
            tracing::warn!(session_id = %id, "unknown session on agent left alone (policy: ignore)");
        }
        OrphanPolicy::Remove => remove(state, agent_id, id),
        OrphanPolicy::Adopt => {
            if !adopt(state, agent_id, report).await? {
                tracing::warn!(
                    session_id = %id,
                    "unknown session on agent cannot be adopted (its user or template is gone); left alone"
                );
            }
        }
    }
    Ok(())
}

/// Removes an unknown session's compute. The command is not stored: there
/// is no session row to attach it to, and the next inventory repeats it.
fn remove(state: &AppState, agent_id: &str, session_id: &str) {
    tracing::warn!(
        session_id,
        "removing unknown session from agent (policy: remove)"
    );
    let command = Command {
        id: new_id(),
        session_id: session_id.to_owned(),
        action: Action::Terminate,
    };
    state.hub.send(agent_id, ServerMessage::Command(command));
}

/// Records the session for the user and template its labels name.
async fn adopt(state: &AppState, agent_id: &str, report: &SessionReport) -> StoreResult<bool> {
    let Some(origin) = &report.origin else {
        return Ok(false);
    };
    let user = state.store.user_credentials(&origin.user).await?;
    let template = state.store.find_template(&origin.template).await?;
    let (Some((user, _)), Some(template), Some(agent)) =
        (user, template, state.store.get_agent(agent_id).await?)
    else {
        return Ok(false);
    };
    let spec = template.spec.session_spec(
        &template.id,
        &report.session_id,
        &user,
        Resources::default(),
        Default::default(),
    );
    let new = NewSession {
        user_id: user.id.clone(),
        template_id: template.id.clone(),
        template_name: template.spec.name.clone(),
        agent_id: agent.id.clone(),
        platform: agent.platform.clone(),
        spec,
        idle_timeout_ms: template.spec.idle_timeout().map(duration_ms),
    };
    let desired = match report.phase {
        Phase::Running | Phase::Starting | Phase::Waking => DesiredState::Running,
        _ => DesiredState::Hibernated,
    };
    let message = format!("adopted: found on agent {} without a record", agent.name);
    let session = state
        .store
        .adopt_session(&new, desired, report.phase, &message)
        .await?;
    tracing::warn!(session_id = %session.id, user = %user.username, "adopted an unknown session");
    let event = SessionEvent::new(format!("agent:{}", agent.name), "adopted")
        .state(desired.as_str())
        .phase(report.phase.as_str())
        .message(Some(&message));
    audit(state, &session.id, &event).await;
    state.events.session_changed(&session.id, &session.user_id);
    Ok(true)
}
