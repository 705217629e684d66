//! Guests on a shared session's viewer: which share lets a user in, and the
//! life of a guest's viewer, which is "who is watching" while it is open,
//! is audited as `share.join`, and closes at once when its share ends.
//!
//! Ending a share says so on this replica's bus (`share_ends.rs`), which
//! closes the viewers here at once; a viewer also asks the store every
//! [`RECHECK`], which is how an end on another replica, or a link's
//! expiry, reaches it within a second.

use crate::audit_log::shares::{ShareEvent, recorded};
use crate::auth::CurrentUser;
use crate::error::ApiResult;
use crate::state::AppState;
use crate::store::{SessionRecord, ShareRecord};
use std::net::IpAddr;
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;

/// How often an open guest viewer asks the store whether its share lasts.
pub const RECHECK: Duration = Duration::from_millis(400);
/// How often an open guest viewer refreshes its "who is watching" row
/// (well within `store::shares::WATCHER_STALE_MS`).
const REFRESH: Duration = Duration::from_secs(5);

/// The live share that lets `user` see `session`: none for the owner, and
/// none when the session's template forbids sharing.
pub async fn share_for(
    state: &AppState,
    user: &CurrentUser,
    session: &SessionRecord,
) -> ApiResult<Option<ShareRecord>> {
    if session.user_id == user.user.id || !sharing_allowed(session) {
        return Ok(None);
    }
    Ok(state.store.guest_share(&session.id, &user.user.id).await?)
}

/// Whether the session's template lets its owner share it.
pub fn sharing_allowed(session: &SessionRecord) -> bool {
    session.spec.desktop.sharing
}

/// A guest's open viewer: listed as watching, audited as it opens, and
/// taken off the list when dropped (however the viewer ended).
pub struct GuestViewer {
    state: AppState,
    share_id: String,
    watcher_id: Option<String>,
}

impl GuestViewer {
    /// Records `share.join` and lists the guest as watching, through the
    /// share `share_id`.
    pub async fn join(
        state: &AppState,
        user: &CurrentUser,
        share_id: &str,
        client: Option<IpAddr>,
    ) -> Self {
        match state.store.share(share_id).await {
            Ok(Some(share)) => {
                let actor = user.actor();
                let kind = "share.join";
                recorded(
                    state,
                    ShareEvent {
                        actor,
                        kind,
                        share: &share,
                        client,
                    },
                )
                .await;
            }
            Ok(None) => {}
            Err(err) => tracing::error!(error = %err, "cannot record a guest's joining"),
        }
        let watcher_id = match state.store.add_watcher(share_id, &user.user.id).await {
            Ok(id) => Some(id),
            Err(err) => {
                tracing::warn!(error = %err, "cannot list a guest as watching");
                None
            }
        };
        GuestViewer {
            state: state.clone(),
            share_id: share_id.to_owned(),
            watcher_id,
        }
    }

    /// Completes when the share no longer stands: ended (here or on another
    /// replica) or expired. Keeps the guest listed as watching meanwhile.
    pub async fn ended(&self) {
        let mut ends = self.state.share_ends.subscribe();
        let mut recheck = tokio::time::interval(RECHECK);
        let mut refresh = tokio::time::interval(REFRESH);
        refresh.reset();
        loop {
            tokio::select! {
                _ = recheck.tick() => {
                    if !self.stands().await {
                        return;
                    }
                }
                _ = refresh.tick() => self.refresh().await,
                ended = ends.recv() => match ended {
                    Ok(id) if id == self.share_id => return,
                    Ok(_) | Err(RecvError::Lagged(_)) => {}
                    // Only when the server is going away.
                    Err(RecvError::Closed) => std::future::pending::<()>().await,
                },
            }
        }
    }

    /// Whether the share lasts. A store failure keeps the viewer: an outage
    /// should not cut everyone.
    async fn stands(&self) -> bool {
        match self.state.store.share_is_live(&self.share_id).await {
            Ok(live) => live,
            Err(err) => {
                tracing::warn!(error = %err, "cannot re-check a guest's share");
                true
            }
        }
    }

    async fn refresh(&self) {
        if let Some(id) = &self.watcher_id
            && let Err(err) = self.state.store.touch_watcher(id).await
        {
            tracing::warn!(error = %err, "cannot refresh a guest's viewer");
        }
    }
}

impl Drop for GuestViewer {
    fn drop(&mut self) {
        let Some(id) = self.watcher_id.take() else {
            return;
        };
        let state = self.state.clone();
        // Tracked, so a graceful shutdown waits for it.
        self.state.tasks.spawn(async move {
            if let Err(err) = state.store.remove_watcher(&id).await {
                tracing::warn!(error = %err, "cannot take a guest off the watching list");
            }
        });
    }
}
