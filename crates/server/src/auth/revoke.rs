//! Ending long-lived streams (events, VNC, logs) when the login behind them
//! ends or loses its rights: logout, logout everywhere, a password change,
//! a deleted or demoted user.
//!
//! Whatever changes a user's logins or role says so on an in-process bus
//! (`revocations.rs`, held by the application state); every stream of that
//! user then re-checks its token against the store and ends if the token is
//! gone or the role changed. The bus carries only user ids and is bounded:
//! a stream that falls behind re-checks anyway. Streams also re-check on a
//! timer (`Config::revalidate_interval`), which is how revocations made on
//! another replica, and tokens that expire, reach them.

use super::CurrentUser;
use crate::state::AppState;
use crate::store::{Role, Store};
use std::future::Future;
use std::time::Duration;
use streamspace_protocol::UserId;
use tokio::sync::broadcast;
use tokio::sync::broadcast::error::RecvError;

/// Completes when `user`'s login no longer stands as it did when the
/// request was authenticated. It checks once at once, which closes the gap
/// between authenticating and subscribing.
pub fn ended(state: &AppState, user: &CurrentUser) -> impl Future<Output = ()> + Send + use<> {
    let login = Login {
        store: state.store.clone(),
        user_id: user.user.id.clone(),
        role: user.user.role,
        token_hash: user.token_hash.clone(),
    };
    let changes = state.revocations.subscribe();
    login.watch(changes, state.config.revalidate_interval)
}

/// What a stream was opened with.
struct Login {
    store: Store,
    user_id: UserId,
    role: Role,
    token_hash: String,
}

impl Login {
    async fn watch(self, mut changes: broadcast::Receiver<UserId>, every: Duration) {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                changed = changes.recv() => match changed {
                    Ok(user_id) if user_id != self.user_id => continue,
                    Ok(_) | Err(RecvError::Lagged(_)) => {}
                    // Only when the server is going away.
                    Err(RecvError::Closed) => return,
                },
            }
            if !self.stands().await {
                tracing::debug!(user_id = %self.user_id, "login revoked: closing its stream");
                return;
            }
        }
    }

    /// Whether the token still belongs to the same user with the same role.
    /// A store failure keeps the stream: an outage should not cut everyone.
    async fn stands(&self) -> bool {
        match self.store.user_for_token(&self.token_hash).await {
            Ok(Some(user)) => user.id == self.user_id && user.role == self.role,
            Ok(None) => false,
            Err(err) => {
                tracing::warn!(error = %err, "cannot re-check a stream's login");
                true
            }
        }
    }
}
