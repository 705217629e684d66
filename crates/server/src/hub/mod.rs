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

use crate::state::AppState;
use crate::store::StoreResult;
use std::time::Duration;
use streamspace_protocol::{AgentId, Command, ServerMessage};

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

/// Sends a command that is already stored. If the agent is not connected it
/// stays pending and goes out when the agent next connects.
pub async fn dispatch(state: &AppState, agent_id: &AgentId, command: Command) -> StoreResult<()> {
    let id = command.id.clone();
    if state.hub.send(agent_id, ServerMessage::Command(command)) {
        state.metrics.commands_dispatched.inc();
        state.store.mark_command_sent(&id).await?;
    } else {
        tracing::info!(%agent_id, command_id = %id, "agent not connected; command queued");
    }
    Ok(())
}
