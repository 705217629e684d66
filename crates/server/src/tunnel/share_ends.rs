//! The in-process bus on which ending a share names it, so the guests'
//! viewers open on this replica close at once (`guests.rs`). Viewers on
//! other replicas notice at their next look at the store, within a second.
//! Held by the application state, so it knows nothing of it.

use tokio::sync::broadcast;

/// Notices kept for slow viewers; one that misses some re-checks the store.
const CAPACITY: usize = 256;

#[derive(Clone)]
pub struct ShareEnds {
    tx: broadcast::Sender<String>,
}

impl Default for ShareEnds {
    fn default() -> Self {
        Self {
            tx: broadcast::channel(CAPACITY).0,
        }
    }
}

impl ShareEnds {
    /// The share ended: its viewers close.
    pub fn ended(&self, share_id: &str) {
        // No subscribers is fine: nobody watches through it here.
        let _ = self.tx.send(share_id.to_owned());
    }

    /// Every share ended from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<String> {
        self.tx.subscribe()
    }
}
