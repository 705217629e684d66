//! The agent hub: the live control channels of connected agents, and the one
//! way commands reach them (stored first, then sent).
//!
//! The channels themselves (`channels.rs`) are a part of the application
//! state; what here needs the whole state sits above it: storing the
//! heartbeats, dispatching commands, serving a channel (`connection.rs`)
//! and applying what agents report (`reports.rs`, `orphans.rs`, a change
//! of platform health in `health.rs`), and where
//! the pre-pulls admins asked for stand (`prepulls.rs`).

pub(crate) mod channels;
pub(crate) mod connection;
mod health;
mod orphans;
pub(crate) mod prepulls;
mod rate;
mod reports;

use crate::cluster::bus::{Notice, command_notice};
use crate::state::AppState;
use crate::store::{StoreResult, TemplateRecord};
use std::time::Duration;
use streamspace_protocol::{AgentId, Command, CommandId, ServerMessage, TemplateId};

/// Heartbeats stored per write while flushing.
const FLUSH_CHUNK: usize = 250;

/// Stores received heartbeats once per heartbeat interval until shutdown.
pub async fn save_heartbeats(state: AppState) {
    let interval = state.config.heartbeat_interval;
    let mut tick = tokio::time::interval(interval);
    loop {
        let stopping = tokio::select! {
            _ = tick.tick() => false,
            _ = state.shutdown.cancelled() => true,
        };
        let batch = state.hub.take_unsaved();
        // SQLite has one writer: spread the chunks over half an interval so
        // a request that writes waits for one chunk at most, not for all.
        let chunks = batch.len().div_ceil(FLUSH_CHUNK).max(1) as u32;
        let pause = if stopping {
            Duration::ZERO
        } else {
            interval / 2 / chunks
        };
        for (i, chunk) in batch.chunks(FLUSH_CHUNK).enumerate() {
            if i > 0 {
                tokio::time::sleep(pause).await;
            }
            if let Err(err) = state.store.record_heartbeats(chunk).await {
                tracing::error!(error = %err, "cannot store heartbeats");
            }
        }
        if stopping {
            return;
        }
    }
}

/// Sends a command that is already stored. If the agent is not connected
/// here, the replica that holds it is told (`cluster/`) and sends it; if it
/// is connected nowhere, the command stays pending and goes out when the
/// agent next connects.
pub async fn dispatch(state: &AppState, agent_id: &AgentId, command: Command) -> StoreResult<()> {
    let id = command.id.clone();
    if state
        .hub
        .send(agent_id, ServerMessage::Command(command.clone()))
    {
        state.metrics.commands_dispatched.inc();
        state.store.mark_command_sent(&id).await?;
    } else if state.bus.is_shared() {
        let notice = command_notice(agent_id, &command);
        // A lost notice delays the command, never loses it: the agent's
        // replica re-sends pending commands on its reconciler pass.
        if let Err(err) = state.bus.publish(notice).await {
            tracing::warn!(%agent_id, command_id = %id, error = %err,
                "cannot tell the other replicas of a command; it waits for a reconciler pass");
        }
    } else {
        tracing::info!(%agent_id, command_id = %id, "agent not connected; command queued");
    }
    Ok(())
}

/// Asks the agent to pull `template`'s image now, with the template's
/// registry credentials: at once when it is connected here, else through
/// the replica holding it ([`Notice::Prepull`], which carries ids only).
/// `false` when it cannot have gone anywhere.
pub async fn prepull(state: &AppState, agent_id: &AgentId, template: &TemplateRecord) -> bool {
    if state.hub.is_connected(agent_id) {
        return state.hub.send(agent_id, prepull_message(template));
    }
    if !state.bus.is_shared() {
        return false;
    }
    let notice = Notice::Prepull {
        agent_id: agent_id.clone(),
        template_id: template.id.clone(),
    };
    match state.bus.publish(notice).await {
        Ok(()) => true,
        Err(err) => {
            tracing::warn!(%agent_id, error = %err, "cannot pass a pre-pull to the agent's replica");
            false
        }
    }
}

/// A pre-pull another replica was asked for, for an agent connected here.
pub fn prepull_told(state: &AppState, agent_id: AgentId, template_id: TemplateId) {
    let state = state.clone();
    let tasks = state.tasks.clone();
    tasks.spawn(async move {
        match state.store.get_template(&template_id).await {
            Ok(Some(template)) => {
                state.hub.send(&agent_id, prepull_message(&template));
            }
            Ok(None) => {}
            Err(err) => {
                tracing::warn!(%template_id, error = %err, "cannot read a template to pre-pull")
            }
        }
    });
}

fn prepull_message(template: &TemplateRecord) -> ServerMessage {
    let spec = &template.spec;
    ServerMessage::Prepull {
        template_id: template.id.clone(),
        image: spec.image.clone(),
        registry_auth: spec.registry_auth.as_ref().and_then(|a| a.for_agent()),
    }
}

/// Sends a command another replica stored for an agent connected here
/// (told by `Notice::Command`). One the notice carried goes out at once, in
/// the order the notices came (a start before the stop that followed it;
/// an agent runs a command once, however often it arrives); one too large
/// to travel is read from the store, unless it went out meanwhile.
pub fn dispatch_told(
    state: &AppState,
    agent_id: AgentId,
    (command_id, carried): (CommandId, Option<Command>),
) {
    let carried = carried.filter(|command| command.id == command_id);
    let sent = match carried {
        Some(command) => send_told(state, &agent_id, command),
        None => false,
    };
    let state = state.clone();
    let tasks = state.tasks.clone();
    tasks.spawn(async move {
        if !sent && !read_and_send(&state, &agent_id, &command_id).await {
            return;
        }
        if let Err(err) = state.store.mark_command_sent(&command_id).await {
            tracing::warn!(%command_id, error = %err, "cannot mark a command sent");
        }
    });
}

/// Sends the stored command if it is still pending; whether it went out.
async fn read_and_send(state: &AppState, agent_id: &AgentId, command_id: &CommandId) -> bool {
    match state.store.pending_command(command_id).await {
        Ok(Some(record)) if record.agent_id == *agent_id => {
            send_told(state, agent_id, record.command)
        }
        Ok(_) => false,
        Err(err) => {
            tracing::warn!(%agent_id, %command_id, error = %err, "cannot read a command another replica issued");
            false
        }
    }
}

fn send_told(state: &AppState, agent_id: &AgentId, command: Command) -> bool {
    let sent = state.hub.send(agent_id, ServerMessage::Command(command));
    if sent {
        state.metrics.commands_dispatched.inc();
    }
    sent
}
