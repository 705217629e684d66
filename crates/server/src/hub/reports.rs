//! What agents tell the control plane, applied to the store. An agent can
//! only ever change sessions assigned to it (the store enforces that), and
//! what it can make the control plane keep is bounded: texts are cut to
//! [`MAX_TEXT`], inventories and heartbeats to [`MAX_SESSIONS`] entries, and
//! at most [`MAX_UNVERIFIED`] unknown sessions of an inventory are examined.

use super::orphans::cut_to;
use crate::lifecycle::audit;
use crate::state::AppState;
use crate::store::{Advanced, AuditEntry, CommandStatus, MAX_UNVERIFIED, StoreResult, now_ms};
use std::collections::HashSet;
use streamspace_protocol::{AgentId, AgentMessage, Phase, PullState, SessionId, SessionReport};

/// The longest text (a failure message, a command's error) kept from an
/// agent; longer ones are cut. Enough for a log tail that explains a crash.
pub const MAX_TEXT: usize = 2048;
/// The most sessions an inventory or heartbeat may list; the rest is
/// ignored. Far above what one host runs (a Docker agent offers 50).
pub const MAX_SESSIONS: usize = 10_000;
/// An inventory costs one message of the agent's rate per this many of its
/// sessions: applying it reads and writes the store for each.
pub const SESSIONS_PER_MESSAGE: usize = 10;

/// What a message costs against the agent's rate (`rate.rs`), in messages.
pub fn cost(message: &AgentMessage) -> f64 {
    match message {
        AgentMessage::Inventory { sessions } => {
            1.0 + (sessions.len() / SESSIONS_PER_MESSAGE) as f64
        }
        _ => 1.0,
    }
}

/// The agent a message came from.
pub struct From<'a> {
    pub id: &'a AgentId,
    /// `agent:<name>`, for the audit trail.
    pub actor: &'a str,
}

pub async fn handle(state: &AppState, from: &From<'_>, message: AgentMessage) {
    if let Err(err) = apply(state, from, bounded(message)).await {
        tracing::error!(error = %err, "cannot apply agent message");
    }
}

async fn apply(state: &AppState, from: &From<'_>, message: AgentMessage) -> StoreResult<()> {
    let agent_id = from.id;
    match message {
        AgentMessage::Heartbeat {
            metrics,
            sessions,
            health,
        } => {
            let beat = super::channels::Beat {
                at: now_ms(),
                metrics,
                health: health.clone(),
            };
            if state.hub.record_heartbeat(agent_id, beat, sessions) {
                super::health::changed(state, agent_id, health.as_ref()).await?;
            }
        }
        AgentMessage::Ack { command_id } => {
            let acked = state
                .store
                .advance_command(&command_id, agent_id, CommandStatus::Acked, None)
                .await?;
            measure(state, acked, "ack");
        }
        AgentMessage::Result { command_id, error } => {
            let status = match error {
                None => CommandStatus::Completed,
                Some(_) => CommandStatus::Failed,
            };
            let finished = state
                .store
                .advance_command(&command_id, agent_id, status, error.as_deref())
                .await?;
            measure(state, finished, "result");
        }
        AgentMessage::SessionStatus(report) => apply_report(state, from, &report).await?,
        AgentMessage::Inventory { sessions } => apply_inventory(state, from, &sessions).await?,
        AgentMessage::TunnelFailed { tunnel_id, error } => {
            crate::tunnel::tunnel_failed(state, tunnel_id, agent_id, error);
        }
        AgentMessage::PullStatus(status) => {
            let (template_id, pull) = (status.template_id.clone(), status.state);
            if matches!(pull, PullState::Done | PullState::Failed) {
                let message = status.message.as_deref().unwrap_or_default();
                tracing::info!(%template_id, image = %status.image, ?pull, message, "pre-pull");
            }
            if !state.hub.prepulls.report(agent_id, status) {
                tracing::debug!(%template_id, "ignoring a pre-pull report nobody asked for");
            }
        }
        AgentMessage::Hello(_) => tracing::warn!("ignoring a second hello"),
    }
    Ok(())
}

/// Counts how long the command took from its issue to this report, if this
/// report is the one that moved it (a repeat is not counted twice). The
/// issue time is the issuing replica's clock, so replicas' clocks should
/// agree (NTP) for the latency across them to be true.
fn measure(state: &AppState, advanced: Option<Advanced>, stage: &'static str) {
    if let Some(Advanced { action, issued_at }) = advanced {
        let seconds = (now_ms() - issued_at).max(0) as f64 / 1000.0;
        state.metrics.command_reported(&action, stage, seconds);
    }
}

/// The message with its texts and lists cut to what the control plane keeps.
fn bounded(message: AgentMessage) -> AgentMessage {
    match message {
        AgentMessage::Heartbeat {
            metrics,
            mut sessions,
            mut health,
        } => {
            sessions.truncate(MAX_SESSIONS);
            if let Some(health) = &mut health {
                health.problem = health.problem.take().map(cut);
            }
            AgentMessage::Heartbeat {
                metrics,
                sessions,
                health,
            }
        }
        AgentMessage::Result { command_id, error } => AgentMessage::Result {
            command_id,
            error: error.map(cut),
        },
        AgentMessage::SessionStatus(report) => AgentMessage::SessionStatus(bounded_report(report)),
        AgentMessage::Inventory { sessions } => AgentMessage::Inventory {
            sessions: sessions
                .into_iter()
                .take(MAX_SESSIONS)
                .map(bounded_report)
                .collect(),
        },
        AgentMessage::TunnelFailed { tunnel_id, error } => AgentMessage::TunnelFailed {
            tunnel_id,
            error: cut(error),
        },
        AgentMessage::PullStatus(mut status) => {
            status.image = cut(status.image);
            status.message = status.message.map(cut);
            AgentMessage::PullStatus(status)
        }
        other => other,
    }
}

fn bounded_report(mut report: SessionReport) -> SessionReport {
    report.message = report.message.map(cut);
    report
}

/// `text` cut to at most [`MAX_TEXT`] bytes, on a character boundary.
pub fn cut(text: String) -> String {
    cut_to(text, MAX_TEXT)
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
            let event = AuditEntry::new(from.actor, "phase")
                .phase(session.phase.as_str())
                .message(session.message.as_deref());
            audit(state, &session.id, &event).await;
            state.changes.session_changed(&session.id, &session.user_id);
        }
        None => tracing::debug!(session_id = %report.session_id, "report changed nothing"),
    }
    Ok(())
}

/// Applies a full inventory and reconciles drift: a session the store puts
/// on this agent that the agent no longer has, with nothing in flight that
/// would create it, was removed behind StreamSpace's back. What the agent
/// holds that nobody's list accounts for is recorded for admins.
async fn apply_inventory(
    state: &AppState,
    from: &From<'_>,
    reports: &[SessionReport],
) -> StoreResult<()> {
    let agent_id = from.id;
    let Some(agent) = state.store.get_agent(agent_id).await? else {
        return Ok(());
    };
    let placed = state.store.agent_sessions(agent_id).await?;
    let known: HashSet<&SessionId> = placed.iter().map(|s| &s.id).collect();
    let mut seen = HashSet::with_capacity(reports.len());
    let mut unverified = Vec::new();
    let mut unknown = 0;
    for report in reports {
        // A session listed twice is applied once.
        if !seen.insert(&report.session_id) {
            continue;
        }
        if known.contains(&report.session_id) {
            apply_report(state, from, report).await?;
            continue;
        }
        // Each unknown session costs lookups, and a trustworthy agent has
        // none: past what admins are shown, the rest are not looked at.
        unknown += 1;
        if unknown > MAX_UNVERIFIED {
            continue;
        }
        if let Some(strange) = super::orphans::handle(state, &agent, report).await? {
            unverified.push(strange);
        }
    }
    if unknown > MAX_UNVERIFIED {
        tracing::warn!(
            unknown,
            "agent reports more unknown sessions than are examined; the rest are ignored"
        );
    }
    if unverified != agent.unverified {
        state.store.set_unverified(agent_id, &unverified).await?;
        state.changes.agent_changed(agent_id);
    }
    for session in placed {
        let settled = matches!(
            session.phase,
            Phase::Pending | Phase::Failed | Phase::Terminated
        );
        if seen.contains(&session.id)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_texts_are_cut_on_a_character_boundary() {
        assert_eq!(cut("short".into()), "short");
        let long = "é".repeat(MAX_TEXT);
        let cut = cut(long);
        assert!(cut.len() <= MAX_TEXT + '…'.len_utf8(), "{}", cut.len());
        assert!(cut.ends_with('…'));
    }
}
