//! Changing what a session should be: the one path the API, the idle
//! detector and auto-wake all take, so every change is checked against
//! quotas, stored with its command, audited and announced the same way.

use crate::audit_log;
use crate::hub::dispatch;
use crate::quota;
use crate::scheduler::{self, Placement};
use crate::seal::SessionIds;
use crate::session_error::{SessionError, SessionResult};
use crate::state::AppState;
use crate::store::{
    AgentRecord, AuditEntry, NewSession, SessionRecord, TemplateRecord, duration_ms,
};
use std::time::Duration;
use streamspace_protocol::{
    Action, AgentId, Command, CommandId, DesiredState, Phase, ServerMessage, SessionId, SessionSpec,
};

/// How often a change is tried again when the session moved between reading
/// it and writing the change (an agent's report landed in between).
const RACE_RETRIES: usize = 3;

/// Sets the session's desired state and queues the command that moves it
/// there. Asking for what is already the case changes nothing. `actor` says
/// who asked, for the audit trail (`user:alice`, `system:idle`).
///
/// The write only happens if the session is still as it was read, so a
/// decision is never made on a stale phase: when it moved meanwhile, the
/// session is read again and the decision made anew.
pub async fn change_state(
    state: &AppState,
    session: SessionRecord,
    desired: DesiredState,
    actor: &str,
    reason: Option<&str>,
) -> SessionResult<SessionRecord> {
    let mut session = session;
    for _ in 0..RACE_RETRIES {
        if let Some(done) = try_change(state, &session, desired, actor, reason).await? {
            return Ok(done);
        }
        session = state
            .store
            .get_session(&session.id)
            .await?
            .ok_or(SessionError::NotFound)?;
    }
    Err(SessionError::KeptChanging)
}

/// One attempt: `Some` with the session as it is now (changed, or already
/// as asked), `None` if it moved since it was read.
async fn try_change(
    state: &AppState,
    session: &SessionRecord,
    desired: DesiredState,
    actor: &str,
    reason: Option<&str>,
) -> SessionResult<Option<SessionRecord>> {
    let Some(agent_id) = session.agent_id.clone() else {
        return Err(SessionError::NoAgent);
    };
    let Some((phase, action)) = transition(session, desired)? else {
        return Ok(Some(session.clone()));
    };
    if action == Action::Hibernate && !agent_supports_hibernation(state, &agent_id).await? {
        return Err(SessionError::CannotHibernate);
    }
    let command = Command {
        id: CommandId::new(),
        session_id: session.id.clone(),
        action,
        // The request (or job) that asked for the change, if traced.
        trace_parent: streamspace_telemetry::context::current(),
    };
    // Waking takes compute, so it is admitted against the quota like a
    // create; the other changes release compute and need no turn.
    let wakes = desired == DesiredState::Running && session.state != DesiredState::Running;
    let admission = match wakes {
        true => Some(state.store.admission().await?),
        false => None,
    };
    let written = write_change(state, session, wakes, (desired, phase), &agent_id, &command).await;
    if let Some(admission) = admission {
        admission.release().await;
    }
    let Some(updated) = written? else {
        return Ok(None);
    };
    tracing::info!(session_id = %session.id, state = desired.as_str(), %actor, "desired state set");
    let event = AuditEntry::new(actor, "state")
        .state(desired.as_str())
        .phase(phase.as_str())
        .message(reason);
    audit(state, &session.id, &event).await;
    audit_log::sessions::state_set(state, actor, &session.id, desired, (reason, false)).await;
    dispatch(state, &agent_id, command).await?;
    state.changes.session_changed(&updated.id, &updated.user_id);
    Ok(Some(updated))
}

/// Checks the quota (when waking) and stores the change with its command,
/// if the session is still as it was read.
async fn write_change(
    state: &AppState,
    session: &SessionRecord,
    wakes: bool,
    (desired, phase): (DesiredState, Phase),
    agent_id: &AgentId,
    command: &Command,
) -> SessionResult<Option<SessionRecord>> {
    if wakes {
        quota::check_wake(state, session).await?;
    }
    let seen = (session.state, session.phase);
    Ok(state
        .store
        .set_desired_state(&session.id, seen, desired, phase, Some((agent_id, command)))
        .await?)
}

/// Ends a session without its agent (an admin's way out when the agent is
/// gone for good), recorded in the audit trail with who did it. If the
/// agent is connected it is also told to remove the session; if it comes
/// back later, its inventory has the leftovers removed.
pub async fn force_terminate(
    state: &AppState,
    session: &SessionRecord,
    actor: &str,
) -> SessionResult<SessionRecord> {
    let message = format!("force-terminated by {actor} without waiting for the agent");
    let Some(ended) = state.store.force_terminate(&session.id, &message).await? else {
        return Err(SessionError::AlreadyTerminated);
    };
    tracing::warn!(session_id = %session.id, %actor, "session force-terminated");
    let event = AuditEntry::new(actor, "force_terminated")
        .state(DesiredState::Terminated.as_str())
        .phase(Phase::Terminated.as_str())
        .message(Some(&message));
    audit(state, &session.id, &event).await;
    let terminated = DesiredState::Terminated;
    let why = (Some(message.as_str()), true);
    audit_log::sessions::state_set(state, actor, &session.id, terminated, why).await;
    if let Some(agent_id) = &session.agent_id {
        let command = Command {
            id: CommandId::new(),
            session_id: session.id.clone(),
            action: Action::Terminate,
            trace_parent: streamspace_telemetry::context::current(),
        };
        // Not stored: the session has no desired state left to reach, and
        // a later inventory repeats the removal if this is lost.
        state.hub.send(agent_id, ServerMessage::Command(command));
    }
    state.changes.session_changed(&ended.id, &ended.user_id);
    Ok(ended)
}

/// The phase to show and the command to send to move `session` toward
/// `desired`; `None` when it is already there (or on its way).
pub fn transition(
    session: &SessionRecord,
    desired: DesiredState,
) -> SessionResult<Option<(Phase, Action)>> {
    use Phase::*;
    let ending = session.phase == Terminated || session.state == DesiredState::Terminated;
    if ending && desired != DesiredState::Terminated {
        return Err(SessionError::Ending {
            terminated: session.phase == Terminated,
        });
    }
    if session.phase == Terminated {
        return Ok(None);
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
        DesiredState::Running
            if matches!(
                session.phase,
                Phase::Failed | Phase::Pending | Phase::Pulling
            ) =>
        {
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
                Phase::Failed | Phase::Pending | Phase::Pulling | Phase::Starting
            ) =>
        {
            Action::Start {
                spec: Box::new(session.spec.clone()),
            }
        }
        DesiredState::Running => Action::Wake {
            vnc_port: session.spec.vnc_port().unwrap_or_default(),
            ports: session.spec.ports.clone(),
        },
    }
}

async fn agent_supports_hibernation(state: &AppState, agent_id: &AgentId) -> SessionResult<bool> {
    let agent = state.store.get_agent(agent_id).await?;
    Ok(agent.is_some_and(|a| a.capabilities.hibernation))
}

/// Records an audit event; a failure to record is logged, not fatal.
pub async fn audit(state: &AppState, session_id: &SessionId, event: &AuditEntry) {
    if let Err(err) = state.store.record_audit(session_id, event).await {
        tracing::error!(error = %err, %session_id, "cannot record session event");
    }
}

/// A new session as stored, with the agent chosen for it and its start
/// command.
pub struct Placed {
    pub session: SessionRecord,
    pub agent: AgentRecord,
    pub start: Command,
    /// Whether the store already handed the command to the replica holding
    /// the agent (at commit); if not, the caller dispatches it.
    announced: bool,
}

impl Placed {
    /// Sends the start command unless the store's commit already passed it
    /// to the agent's replica; call with the admission turn released.
    pub async fn dispatch(&self, state: &AppState) -> SessionResult<()> {
        if !self.announced {
            dispatch(state, &self.agent.id, self.start.clone()).await?;
        }
        Ok(())
    }
}

/// Places a new session (`spec`, made from `template` for its owner),
/// seals it for the chosen agent and stores it with its start command and
/// its first event (`created`, told the chosen agent); called with the
/// admission turn held, after the owner's quota (if any) was checked.
///
/// When another replica holds the agent, the command goes to it with the
/// commit (NOTIFY inside the transaction): a cross-replica dispatch then
/// waits for no write after the one that matters.
pub async fn place_new(
    state: &AppState,
    placement: &Placement<'_>,
    mut spec: SessionSpec,
    (template, idle): (&TemplateRecord, Option<Duration>),
    created: impl FnOnce(&AgentRecord) -> AuditEntry,
) -> SessionResult<Placed> {
    let agent = scheduler::choose(state, placement).await?;
    spec.seal = state.sealer.seal(&SessionIds {
        session: &spec.session_id,
        user: &spec.user_id,
        template: &spec.template_id,
        agent: &agent.id,
    });
    let start = Command {
        id: CommandId::new(),
        session_id: spec.session_id.clone(),
        action: Action::Start {
            spec: Box::new(spec.clone()),
        },
        trace_parent: streamspace_telemetry::context::current(),
    };
    let announcement = match state.hub.is_connected(&agent.id) {
        true => None,
        false => state.bus.command_announcement(&agent.id, &start),
    };
    let event = created(&agent);
    let new = NewSession {
        user_id: spec.user_id.clone(),
        template_id: template.id.clone(),
        template_name: template.spec.name.clone(),
        agent_id: agent.id.clone(),
        platform: agent.platform.clone(),
        spec,
        idle_timeout_ms: idle.map(duration_ms),
    };
    let session = state
        .store
        .create_session(&new, &start, &event, announcement.as_ref())
        .await?;
    Ok(Placed {
        session,
        agent,
        start,
        announced: announcement.is_some(),
    })
}
