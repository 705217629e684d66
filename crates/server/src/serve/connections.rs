//! The connection cap: every connection speaking HTTP holds a slot; at the
//! cap a newcomer takes the slot of the connection that has been idle,
//! sending its request head or body, or leaving its response unread the
//! longest, so /healthz, logins and agent reconnects keep getting in while
//! stalled clients hold everything else. Requests being served are never
//! evicted; when nothing can be, the newcomer is refused.

use super::watch::{State, Watch};
use crate::config::HttpLimits;
use crate::metrics::HttpMetrics;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::time::Instant;

/// Every connection speaking HTTP, by id.
pub struct Connections {
    pub limits: HttpLimits,
    pub metrics: HttpMetrics,
    /// Requests to web apps stream their bodies (uploads of any size):
    /// timed by the gap between reads, not in total (`service.rs`).
    pub apps_domain: Option<String>,
    epoch: Instant,
    next_id: AtomicU64,
    open: Mutex<HashMap<u64, Arc<Watch>>>,
}

/// A connection's place under the cap; dropping it frees the place.
pub struct Slot {
    id: u64,
    pub watch: Arc<Watch>,
    registry: Arc<Connections>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if self.registry.open().remove(&self.id).is_some() {
            self.registry.metrics.open.dec();
        }
    }
}

impl Connections {
    pub fn new(limits: HttpLimits, metrics: HttpMetrics) -> Arc<Self> {
        Arc::new(Connections {
            limits,
            metrics,
            apps_domain: None,
            epoch: Instant::now(),
            next_id: AtomicU64::new(0),
            open: Mutex::new(HashMap::new()),
        })
    }

    /// The same, with web apps also served under `apps_domain`.
    pub fn with_apps_domain(
        limits: HttpLimits,
        metrics: HttpMetrics,
        apps_domain: Option<String>,
    ) -> Arc<Self> {
        let mut connections =
            Arc::into_inner(Self::new(limits, metrics)).expect("a new registry has no other owner");
        connections.apps_domain = apps_domain;
        Arc::new(connections)
    }

    fn open(&self) -> MutexGuard<'_, HashMap<u64, Arc<Watch>>> {
        // Single inserts and removes cannot leave the map inconsistent.
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A slot for a new connection, evicting another at the cap; `None`
    /// when every slot holds a request in progress.
    pub fn admit(self: &Arc<Self>) -> Option<Slot> {
        self.metrics.accepted.inc();
        let mut open = self.open();
        if open.len() >= self.limits.max_connections {
            let Some(evicted) = evict_one(&open) else {
                drop(open);
                self.metrics.dropped("refused");
                return None;
            };
            // Its task closes it; the slot is the newcomer's from now on.
            open.remove(&evicted);
            self.metrics.open.dec();
            self.metrics.dropped("evicted");
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let watch = Arc::new(Watch::new(self.epoch));
        open.insert(id, watch.clone());
        self.metrics.open.inc();
        Some(Slot {
            id,
            watch,
            registry: self.clone(),
        })
    }
}

/// Raises the soft open-file limit to the hard one (as Go's runtime does):
/// every connection is a descriptor, and the usual soft limit (1024) is far
/// below the connection cap, where `accept` would fail before the cap
/// could evict anyone. Warns when even the hard limit leaves little room.
pub fn raise_open_file_limit(max_connections: usize) {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    let mut current = limit.current;
    if current != limit.maximum {
        let raised = Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        };
        match setrlimit(Resource::Nofile, raised) {
            Ok(()) => current = limit.maximum,
            Err(err) => tracing::debug!(%err, "cannot raise the open-file limit"),
        }
    }
    // Tunnels, agent channels and the database need descriptors too.
    let wanted = max_connections as u64 + 1024;
    if let Some(current) = current
        && current < wanted
    {
        tracing::warn!(
            open_files = current,
            max_connections,
            "the open-file limit is below --max-connections plus room for tunnels: \
             raise it (ulimit -n, systemd LimitNOFILE=) or lower --max-connections"
        );
    }
}

/// Evicts the connection that has been waiting the longest (idle, sending
/// its head or body, or not reading; arrival order breaks ties); returns
/// its id. One pass over the open connections, only at the cap. One that
/// starts a request between the pass and the eviction is passed over: the
/// pass is repeated, a few times at most.
fn evict_one(open: &HashMap<u64, Arc<Watch>>) -> Option<u64> {
    const ATTEMPTS: usize = 3;
    for _ in 0..ATTEMPTS {
        let (id, state, watch) = longest_waiting(open)?;
        if watch.evict_if(state) {
            return Some(id);
        }
    }
    None
}

fn longest_waiting(open: &HashMap<u64, Arc<Watch>>) -> Option<(u64, State, &Watch)> {
    open.iter()
        .filter_map(|(id, watch)| {
            let state = watch.state();
            Some((state.waiting_since()?, *id, state, watch))
        })
        .min_by_key(|(since, id, _, _)| (*since, *id))
        .map(|(_, id, state, watch)| (id, state, &**watch))
}

#[cfg(test)]
mod tests {
    use super::super::watch::Phase;
    use super::*;
    use crate::metrics::ReasonLabel;

    fn registry(max_connections: usize) -> Arc<Connections> {
        let limits = HttpLimits {
            max_connections,
            ..HttpLimits::default()
        };
        Connections::new(limits, HttpMetrics::default())
    }

    #[test]
    fn at_the_cap_the_longest_waiting_idle_head_or_body_connection_goes() {
        let connections = registry(4);
        // Equal clocks are ordered by arrival.
        let oldest = connections.admit().expect("room");
        let busy = connections.admit().expect("room");
        busy.watch.request_started(false);
        let body = connections.admit().expect("room");
        body.watch.request_started(true);
        let newer = connections.admit().expect("room");

        let first = connections.admit().expect("evicts one");
        assert_eq!(oldest.watch.state().phase, Phase::Evicted);
        let second = connections.admit().expect("evicts another");
        assert_eq!(body.watch.state().phase, Phase::Evicted, "a stalled body");
        assert_eq!(busy.watch.state().phase, Phase::Busy);
        assert_eq!(newer.watch.state().phase, Phase::Head);
        assert_eq!(connections.metrics.open.get(), 4);

        // The evicted ones' tasks end; their slots were already handed over.
        drop((oldest, body));
        assert_eq!(connections.metrics.open.get(), 4);
        for slot in [&newer, &first, &second] {
            slot.watch.request_started(false);
        }
        assert!(connections.admit().is_none(), "all busy: refused");
        let refused = connections
            .metrics
            .dropped
            .get_or_create(&ReasonLabel { reason: "refused" })
            .get();
        assert_eq!(refused, 1);
        drop(busy);
        assert!(connections.admit().is_some(), "a freed slot is reused");
    }
}
