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

use crate::cluster::bus::Notice;
use crate::state::AppState;
use crate::store::StoreResult;
use std::time::Duration;
use streamspace_protocol::{AgentId, Command, CommandId, ServerMessage};

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
    if state.hub.send(agent_id, ServerMessage::Command(command)) {
        state.metrics.commands_dispatched.inc();
        state.store.mark_command_sent(&id).await?;
    } else if state.bus.is_shared() {
        let notice = Notice::Command {
            agent_id: agent_id.clone(),
            command_id: id.clone(),
        };
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

/// Sends a command another replica stored for an agent connected here
/// (told by `Notice::Command`), unless it went out meanwhile.
pub async fn dispatch_told(state: &AppState, agent_id: &AgentId, command_id: &CommandId) {
    let record = match state.store.pending_command(command_id).await {
        Ok(Some(record)) if record.agent_id == *agent_id => record,
        Ok(_) => return,
        Err(err) => {
            tracing::warn!(%agent_id, %command_id, error = %err, "cannot read a command another replica issued");
            return;
        }
    };
    if state
        .hub
        .send(agent_id, ServerMessage::Command(record.command))
    {
        state.metrics.commands_dispatched.inc();
        if let Err(err) = state.store.mark_command_sent(command_id).await {
            tracing::warn!(%command_id, error = %err, "cannot mark a command sent");
        }
    }
}
