//! The in-process bus on which ending a share names it, so the guests'
//! viewers open on this replica close at once (`guests.rs`). The shares
//! ended here are also told to the other replicas, and theirs arrive here
//! (`cluster/broadcast.rs`); a viewer whose replica missed the notice still
//! sees the end at its next look at the store, within a second. Held by
//! the application state, so it knows nothing of it.

use crate::cluster::broadcast::Replicated;
use tokio::sync::broadcast;

/// Notices kept for slow viewers; one that misses some re-checks the store.
const CAPACITY: usize = 256;

#[derive(Clone)]
pub struct ShareEnds {
    tx: Replicated<String>,
}

impl Default for ShareEnds {
    fn default() -> Self {
        Self {
            tx: Replicated::new(CAPACITY),
        }
    }
}

impl ShareEnds {
    /// The share ended: its viewers close.
    pub fn ended(&self, share_id: &str) {
        self.tx.here(share_id.to_owned());
    }

    /// Another replica ended the share.
    pub fn told(&self, share_id: String) {
        self.tx.told(share_id);
    }

    /// The shares ended here, for the other replicas.
    pub fn ours(&self) -> broadcast::Receiver<String> {
        self.tx.ours()
    }

    /// Every share ended from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<String> {
        self.tx.subscribe()
    }
}
