//! Sessions an agent reports that the store does not place on it: lingering
//! containers of terminated sessions are removed; unknown ones are adopted,
//! removed or ignored by the configured policy. Adoption needs the
//! session's seal (see `seal.rs`): labels alone name an owner, but any host
//! can write labels. What is neither adopted nor removed is shown to admins
//! on the agent (`unverified_sessions`), never in a user's list.

use crate::config::OrphanPolicy;
use crate::lifecycle::audit;
use crate::seal::SessionIds;
use crate::state::AppState;
use crate::store::{AgentRecord, AuditEntry, NewSession, StoreResult, Unverified, duration_ms};
use crate::template::SessionRequest;
use streamspace_protocol::{
    Action, AgentId, Command, CommandId, DesiredState, Phase, ServerMessage, SessionId,
    SessionOrigin, SessionReport,
};

/// Handles one such session; `Some` is what admins should know about it.
pub async fn handle(
    state: &AppState,
    agent: &AgentRecord,
    report: &SessionReport,
) -> StoreResult<Option<Unverified>> {
    match state.store.get_session(&report.session_id).await? {
        Some(session) if session.agent_id.as_ref() != Some(&agent.id) => {
            tracing::warn!(session_id = %session.id, "agent reports a session placed on another agent");
            Ok(Some(Unverified::new(
                report,
                "the session is placed on another agent",
            )))
        }
        Some(session) if report.phase != Phase::Terminated => {
            // Terminated here, still present there: finish the job, once.
            // While a terminate is open, another would be one more stored
            // row per inventory, which an agent can send as often as its
            // rate allows and never answer.
            if state.store.session_has_open_commands(&session.id).await? {
                return Ok(None);
            }
            let command = Command {
                id: CommandId::new(),
                session_id: session.id.clone(),
                action: Action::Terminate,
                trace_parent: None,
            };
            state.store.enqueue_command(&agent.id, &command).await?;
            crate::hub::dispatch(state, &agent.id, command).await?;
            Ok(None)
        }
        Some(_) => Ok(None),
        None => unknown(state, agent, report).await,
    }
}

async fn unknown(
    state: &AppState,
    agent: &AgentRecord,
    report: &SessionReport,
) -> StoreResult<Option<Unverified>> {
    let id = &report.session_id;
    match state.config.orphan_policy {
        OrphanPolicy::Ignore => {
            tracing::warn!(session_id = %id, "unknown session on agent left alone (policy: ignore)");
            Ok(Some(Unverified::new(report, "no record (policy: ignore)")))
        }
        OrphanPolicy::Remove => {
            remove(state, &agent.id, id);
            Ok(None)
        }
        OrphanPolicy::Adopt => match adopt(state, agent, report).await? {
            Ok(()) => Ok(None),
            Err(reason) => {
                tracing::warn!(session_id = %id, reason, "unknown session on agent not adopted; left alone");
                Ok(Some(Unverified::new(report, reason)))
            }
        },
    }
}

/// Removes an unknown session's compute. The command is not stored: there
/// is no session row to attach it to, and the next inventory repeats it.
fn remove(state: &AppState, agent_id: &AgentId, session_id: &SessionId) {
    tracing::warn!(
        %session_id,
        "removing unknown session from agent (policy: remove)"
    );
    let command = Command {
        id: CommandId::new(),
        session_id: session_id.clone(),
        action: Action::Terminate,
        trace_parent: None,
    };
    state.hub.send(agent_id, ServerMessage::Command(command));
}

/// Records a session this control plane sealed for this agent, for the
/// user and template the seal names, if both still exist; `Err` says why not.
async fn adopt(
    state: &AppState,
    agent: &AgentRecord,
    report: &SessionReport,
) -> StoreResult<Result<(), &'static str>> {
    let Some(origin) = &report.origin else {
        return Ok(Err("it carries no labels naming its owner"));
    };
    let (Some(user_id), Some(template_id), Some(seal)) =
        (&origin.user_id, &origin.template_id, &origin.seal)
    else {
        return Ok(Err("it carries no seal of this control plane"));
    };
    let ids = SessionIds {
        session: &report.session_id,
        user: user_id,
        template: template_id,
        agent: &agent.id,
    };
    if !state.sealer.verify(&ids, seal) {
        return Ok(Err(
            "its seal is not this control plane's seal for this agent",
        ));
    }
    let (Some(user), Some(template)) = (
        state.store.get_user(user_id).await?,
        state.store.get_template(template_id).await?,
    ) else {
        return Ok(Err("its user or template no longer exists"));
    };
    let Ok(granted) = template.spec.grant(SessionRequest::default()) else {
        return Ok(Err("its template refuses a default session"));
    };
    let mut spec = template
        .spec
        .session_spec(&template.id, &report.session_id, &user, &granted);
    spec.seal = seal.clone();
    let new = NewSession {
        user_id: user.id.clone(),
        template_id: template.id.clone(),
        template_name: template.spec.name.clone(),
        agent_id: agent.id.clone(),
        platform: agent.platform.clone(),
        spec,
        idle_timeout_ms: granted.idle_timeout.map(duration_ms),
    };
    record_adoption(state, agent, &new, report).await?;
    Ok(Ok(()))
}

async fn record_adoption(
    state: &AppState,
    agent: &AgentRecord,
    new: &NewSession,
    report: &SessionReport,
) -> StoreResult<()> {
    let desired = match report.phase {
        Phase::Running | Phase::Pulling | Phase::Starting | Phase::Waking => DesiredState::Running,
        _ => DesiredState::Hibernated,
    };
    let message = format!("adopted: found on agent {} without a record", agent.name);
    let session = state
        .store
        .adopt_session(new, desired, report.phase, &message)
        .await?;
    tracing::warn!(session_id = %session.id, user = %session.username, "adopted an unknown session");
    let event = AuditEntry::new(format!("agent:{}", agent.name), "adopted")
        .state(desired.as_str())
        .phase(report.phase.as_str())
        .message(Some(&message));
    audit(state, &session.id, &event).await;
    let actor = format!("agent:{}", agent.name);
    let detail = serde_json::json!({
        "template": session.template_name, "owner": format!("user:{}", session.username),
        "adopted": true, "state": desired.as_str(),
    });
    crate::audit_log::sessions::created(state, &actor, &session.id, None, detail).await;
    state.changes.session_changed(&session.id, &session.user_id);
    Ok(())
}

/// The longest id or name kept from what an agent claims: real ones are
/// UUIDs and slugs of at most 63 characters.
const MAX_CLAIM: usize = 100;

impl Unverified {
    /// What admins are shown, every string cut to [`MAX_CLAIM`]: the agent
    /// chose them, and they are stored.
    fn new(report: &SessionReport, reason: &str) -> Self {
        let origin = report.origin.clone().unwrap_or_default();
        let SessionOrigin { user, template, .. } = origin;
        let claim = |text: String| (!text.is_empty()).then(|| short(text));
        Unverified {
            session_id: short(report.session_id.to_string()),
            phase: report.phase,
            claimed_user: claim(user),
            claimed_template: claim(template),
            reason: reason.to_owned(),
        }
    }
}

fn short(text: String) -> String {
    cut_to(text, MAX_CLAIM)
}

/// `text` cut to at most `max` bytes (and an ellipsis), on a character
/// boundary. Here, not in `reports.rs` (which cuts agents' messages with it
/// too), because `reports.rs` imports this module: the other way round
/// would be a circle.
pub fn cut_to(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
    text
}
