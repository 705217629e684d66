//! Several control-plane replicas on one PostgreSQL (docs/ARCHITECTURE.md#replicas):
//! who this replica is (`replica.rs`), how the replicas find each other
//! (`registry.rs`: rows in `replicas`), how they tell each other what
//! must not wait for a reconciler pass (`bus.rs`: `LISTEN/NOTIFY`; here:
//! what this replica tells, and what it does with what it is told), the
//! local broadcasts whose news every replica hears (`broadcast.rs`), which
//! replica runs the singleton jobs (`leader.rs`), and how a replica leaves
//! without anyone noticing (`drain.rs`: `/readyz`, SIGTERM).
//!
//! On SQLite the control plane is one process: the registry still holds
//! its one row (the API shows it), the bus publishes nothing, and the one
//! process always holds the singleton lock.

pub(crate) mod broadcast;
pub(crate) mod bus;
pub(crate) mod drain;
pub(crate) mod leader;
pub(crate) mod registry;
pub(crate) mod replica;

use crate::changes::Change;
use crate::state::AppState;
use bus::Notice;
use streamspace_protocol::UserId;
use tokio::sync::broadcast::Receiver;
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

/// What was told is re-emitted on this replica's own broadcasts only
/// (never published again: each replica tells its own news).
fn apply(state: &AppState, notice: Notice) {
    match notice {
        // Only the replica holding the agent's channel has it; for the
        // others `send` is false and the notice is not theirs.
        Notice::ToAgent { agent_id, message } => {
            state.hub.send(&agent_id, message);
        }
        Notice::Command {
            agent_id,
            command_id,
            command,
        } => {
            if state.hub.is_connected(&agent_id) {
                crate::hub::dispatch_told(state, agent_id, (command_id, command.map(|c| *c)));
            }
        }
        Notice::Change { change } => state.changes.told(change),
        Notice::Revoked { user_id } => state.revocations.told(user_id),
        Notice::ShareEnded { share_id } => state.share_ends.told(share_id),
        Notice::SettingsChanged => state.settings.told(),
        Notice::Prepull {
            agent_id,
            template_id,
        } => {
            if state.hub.is_connected(&agent_id) {
                crate::hub::prepull_told(state, agent_id, template_id);
            }
        }
    }
}

/// What happens on this replica that the others' streams must show,
/// subscribed to before the server takes requests (`Forwarded::run`
/// publishes it).
pub struct Forwarded {
    changes: Receiver<Change>,
    revoked: Receiver<UserId>,
    share_ends: Receiver<String>,
    settings: Receiver<()>,
}

impl Forwarded {
    pub fn subscribe(state: &AppState) -> Self {
        Self {
            changes: state.changes.ours(),
            revoked: state.revocations.ours(),
            share_ends: state.share_ends.ours(),
            settings: state.settings.ours(),
        }
    }

    /// Publishes each on the bus, in order, until shutdown; nothing on
    /// SQLite. A notice lost here delays, never loses: streams re-read the
    /// store on their timers.
    pub async fn run(mut self, state: AppState) {
        if !state.bus.is_shared() {
            return;
        }
        loop {
            let notice = tokio::select! {
                got = self.changes.recv() => got.map(|change| Notice::Change { change }),
                got = self.revoked.recv() => got.map(|user_id| Notice::Revoked { user_id }),
                got = self.share_ends.recv() => got.map(|share_id| Notice::ShareEnded { share_id }),
                got = self.settings.recv() => got.map(|()| Notice::SettingsChanged),
                _ = state.shutdown.cancelled() => return,
            };
            match notice {
                Ok(notice) => {
                    if let Err(err) = state.bus.publish(notice).await {
                        tracing::warn!(error = %err, "cannot tell the other replicas of a change");
                    }
                }
                Err(RecvError::Lagged(missed)) => tracing::warn!(
                    missed,
                    "changes made faster than the bus publishes them; the other replicas' streams \
                     catch up on their timers"
                ),
                Err(RecvError::Closed) => return,
            }
        }
    }
}
