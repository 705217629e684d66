//! A broadcast within this process whose own items also go to the other
//! replicas: what happens here reaches local subscribers and
//! [`Replicated::ours`] (which `cluster::Forwarded` publishes on the bus);
//! what another replica told arrives through [`Replicated::told`]
//! and reaches local subscribers only, so a notice is never published
//! twice. A leaf, so the parts of the application state built on it (the
//! change notices, revocations, share ends) know nothing of the state.

use tokio::sync::broadcast;

pub struct Replicated<T> {
    /// Everything, wherever it happened: what local subscribers read.
    all: broadcast::Sender<T>,
    /// What happened here only: what the bus tells the others.
    ours: broadcast::Sender<T>,
}

impl<T> Clone for Replicated<T> {
    fn clone(&self) -> Self {
        Self {
            all: self.all.clone(),
            ours: self.ours.clone(),
        }
    }
}

impl<T: Clone> Replicated<T> {
    /// Keeps `capacity` items for slow subscribers, and as many for the
    /// bus (which publishes them one by one).
    pub fn new(capacity: usize) -> Self {
        Self {
            all: broadcast::channel(capacity).0,
            ours: broadcast::channel(capacity).0,
        }
    }

    /// Something happened here: local subscribers and the other replicas
    /// learn of it.
    pub fn here(&self, item: T) {
        // No subscriber is fine: nobody watches here, or there is no other
        // replica (SQLite) to tell.
        let _ = self.ours.send(item.clone());
        let _ = self.all.send(item);
    }

    /// Another replica told of it: local subscribers only.
    pub fn told(&self, item: T) {
        let _ = self.all.send(item);
    }

    /// Everything from now on, wherever it happened.
    pub fn subscribe(&self) -> broadcast::Receiver<T> {
        self.all.subscribe()
    }

    /// What happens here from now on, for the bus.
    pub fn ours(&self) -> broadcast::Receiver<T> {
        self.ours.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_another_replica_told_is_never_ours() {
        let bus = Replicated::new(8);
        let (mut all, mut ours) = (bus.subscribe(), bus.ours());
        bus.here(1);
        bus.told(2);
        assert_eq!(all.try_recv().ok(), Some(1));
        assert_eq!(all.try_recv().ok(), Some(2));
        assert_eq!(ours.try_recv().ok(), Some(1));
        assert!(ours.try_recv().is_err(), "a told item would be told again");
    }
}
