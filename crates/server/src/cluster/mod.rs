//! Several control-plane replicas on one PostgreSQL (docs/ARCHITECTURE.md#replicas):
//! who this replica is (`replica.rs`), how the replicas find each other
//! (`registry.rs`: rows in `replicas`), and how they tell each other what
//! must not wait for a reconciler pass (`bus.rs`: `LISTEN/NOTIFY`), and how
//! a replica leaves without anyone noticing (`drain.rs`: `/readyz`, SIGTERM).
//!
//! On SQLite the control plane is one process: the registry still holds
//! its one row (the API shows it), and the bus publishes nothing.

pub(crate) mod bus;
pub(crate) mod drain;
pub(crate) mod registry;
pub(crate) mod replica;

use crate::state::AppState;
use bus::Notice;
use tokio::sync::broadcast::error::RecvError;

/// Applies what the other replicas publish, until shutdown.
pub async fn deliver(state: AppState) {
    let mut notices = state.bus.subscribe();
    loop {
        let notice = tokio::select! {
            notice = notices.recv() => notice,
            _ = state.shutdown.cancelled() => return,
        };
        match notice {
            Ok(notice) => apply(&state, notice),
            Err(RecvError::Lagged(missed)) => {
                tracing::warn!(
                    missed,
                    "missed notices from other replicas; the slower paths catch up"
                );
            }
            Err(RecvError::Closed) => return,
        }
    }
}

fn apply(state: &AppState, notice: Notice) {
    match notice {
        // Only the replica holding the agent's channel has it; for the
        // others `send` is false and the notice is not theirs.
        Notice::ToAgent { agent_id, message } => {
            state.hub.send(&agent_id, message);
        }
    }
}
