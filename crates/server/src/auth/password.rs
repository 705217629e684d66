//! argon2id password hashes, computed off the async runtime: each takes tens
//! of milliseconds of CPU and 19 MiB of memory by design.
//!
//! `PasswordWork` bounds that work: as many hashes at once as the machine
//! has cores, each in memory kept for reuse (`argon2id.rs`), a bounded queue
//! behind them, and an immediate refusal beyond it. Unbounded, a flood of
//! logins ran one hash per request at once and took the server past 17 GiB.

use super::argon2id::Memory;
use std::sync::{Arc, Mutex};
use tokio::sync::Semaphore;

/// Checked against when a username does not exist, so that a login for an
/// unknown user costs what a wrong password does: the default parameters
/// (19 MiB, 2 passes), a fixed salt, and an output no password produces in
/// practice.
const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c3RyZWFtc3BhY2UtZHVtbXk$\
                          AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

/// Hashes waiting per core before new ones are refused: at tens of
/// milliseconds each, a waiting login answers within about a second.
const QUEUE_PER_WORKER: usize = 16;

/// Hashes `password` outside any bound: for the one hash at startup
/// (the bootstrap admin). Requests go through `PasswordWork`.
pub async fn hash(password: String) -> Result<String, String> {
    tokio::task::spawn_blocking(move || Memory::default().hash(&password))
        .await
        .map_err(|e| format!("password hashing task failed: {e}"))?
}

/// Too many hashes are running and waiting: try again shortly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the server is busy checking other passwords: try again in a second")]
pub struct Busy;

/// The bound on password hashing for the whole server.
pub struct PasswordWork {
    /// Hashes computing now.
    running: Arc<Semaphore>,
    /// Hashes computing or waiting to.
    admitted: Arc<Semaphore>,
    /// Permits of `admitted`, which semaphores do not report.
    admitted_total: usize,
    /// argon2 memory of the workers that are idle: at most one per worker.
    memories: Arc<Mutex<Vec<Memory>>>,
}

impl PasswordWork {
    /// `workers` hashes at once and `queue` more waiting; `workers` 0 means
    /// one per core.
    pub fn new(workers: usize, queue: usize) -> Self {
        let workers = match workers {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        Self {
            running: Arc::new(Semaphore::new(workers)),
            admitted: Arc::new(Semaphore::new(workers + queue)),
            admitted_total: workers + queue,
            memories: Arc::default(),
        }
    }

    /// Sized to the machine: one hash per core, 16 waiting per core.
    pub fn for_machine() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Self::new(cores, cores * QUEUE_PER_WORKER)
    }

    /// Runs `work` on the blocking pool with an idle worker's memory once a
    /// worker is free, or refuses at once when the queue is full.
    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Memory) -> T + Send + 'static,
    ) -> Result<T, Busy> {
        let admitted = self
            .admitted
            .clone()
            .try_acquire_owned()
            .map_err(|_| Busy)?;
        let running = self
            .running
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| Busy)?;
        let memories = self.memories.clone();
        // Both permits move into the task: a request that gives up while
        // its hash runs frees neither a worker that is still busy nor a
        // place in the bound (which `in_use` reports) for one more.
        tokio::task::spawn_blocking(move || {
            let _permits = (admitted, running);
            let mut memory = take(&memories).unwrap_or_default();
            let result = work(&mut memory);
            take_back(&memories, memory);
            result
        })
        .await
        .map_err(|_| Busy)
    }

    pub async fn hash(&self, password: String) -> Result<Result<String, String>, Busy> {
        self.run(move |memory| memory.hash(&password)).await
    }

    /// Checks `password` against `stored`, or against a dummy hash when there
    /// is no user, taking the same time either way.
    pub async fn verify(&self, password: String, stored: Option<String>) -> Result<bool, Busy> {
        self.run(move |memory| match stored {
            Some(stored) => memory.verify(&password, &stored),
            None => {
                memory.verify(&password, DUMMY_HASH);
                false
            }
        })
        .await
    }

    /// Hashes waiting for a worker or running (for metrics).
    pub fn in_use(&self) -> usize {
        self.admitted_total
            .saturating_sub(self.admitted.available_permits())
    }
}

fn take(memories: &Mutex<Vec<Memory>>) -> Option<Memory> {
    // A worker that panicked mid-hash left the pool consistent.
    memories.lock().unwrap_or_else(|p| p.into_inner()).pop()
}

fn take_back(memories: &Mutex<Vec<Memory>>, memory: Memory) {
    memories
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(memory);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[tokio::test]
    async fn hashes_verify_and_are_argon2id() {
        let work = PasswordWork::new(1, 1);
        let stored = work.hash("correct horse".into()).await.expect("not busy");
        let stored = stored.expect("hashes");
        assert!(stored.starts_with("$argon2id$"), "{stored}");
        let verify = |password: &str, stored: Option<&str>| {
            work.verify(password.into(), stored.map(str::to_owned))
        };
        assert_eq!(verify("correct horse", Some(&stored)).await, Ok(true));
        assert_eq!(verify("wrong horse", Some(&stored)).await, Ok(false));
        assert_eq!(verify("anything", None).await, Ok(false));
        assert_eq!(verify("x", Some("not a hash")).await, Ok(false));
    }

    #[tokio::test]
    async fn beyond_the_queue_work_is_refused_at_once() {
        let work = Arc::new(PasswordWork::new(1, 1));
        let (release, hold) = std::sync::mpsc::channel::<()>();
        let running = tokio::spawn({
            let work = work.clone();
            async move { work.run(move |_| hold.recv().is_ok()).await }
        });
        let waiting = tokio::spawn({
            let work = work.clone();
            async move { work.run(|_| 2).await }
        });
        until(|| work.in_use() == 2).await;
        // "At once" rather than "when the running job ends": that one holds
        // until released below, so waiting for it would never end.
        let refused = tokio::time::timeout(Duration::from_secs(10), work.run(|_| 3)).await;
        assert_eq!(refused, Ok(Err(Busy)), "refused without waiting");
        release.send(()).expect("the first job waits");
        assert_eq!(running.await.expect("joins"), Ok(true));
        assert_eq!(waiting.await.expect("joins"), Ok(2));
        assert_eq!(work.in_use(), 0);
        assert_eq!(work.run(|_| 4).await, Ok(4));
    }

    /// A client that disconnects while its password is checked drops its
    /// request, not the hash: until the hash ends it counts, in the bound
    /// and in the metrics. (It stopped counting at once: the gauge read 0
    /// while a worker was busy, and one more request was admitted.)
    #[tokio::test]
    async fn a_hash_whose_request_gave_up_counts_until_it_ends() {
        use std::sync::atomic::{AtomicBool, Ordering};
        let work = Arc::new(PasswordWork::new(1, 0));
        let started = Arc::new(AtomicBool::new(false));
        let (release, hold) = std::sync::mpsc::channel::<()>();
        let request = tokio::spawn({
            let (work, started) = (work.clone(), started.clone());
            async move {
                work.run(move |_| {
                    started.store(true, Ordering::SeqCst);
                    hold.recv().is_ok()
                })
                .await
            }
        });
        until(|| started.load(Ordering::SeqCst)).await;
        request.abort();
        assert!(request.await.is_err(), "the request was dropped");
        assert_eq!(work.in_use(), 1, "its hash still runs");
        let refused = tokio::time::timeout(Duration::from_secs(10), work.run(|_| 2)).await;
        assert_eq!(refused, Ok(Err(Busy)), "and holds the only place");
        release.send(()).expect("the hash waits");
        until(|| work.in_use() == 0).await;
        assert_eq!(work.run(|_| 3).await, Ok(3));
    }

    #[tokio::test]
    async fn unknown_users_cost_as_much_as_wrong_passwords() {
        let work = PasswordWork::new(1, 0);
        let stored = work.hash("correct horse".into()).await.expect("not busy");
        let stored = stored.expect("hashes");
        work.verify("warm up".into(), None).await.expect("not busy");
        let mut known = Vec::new();
        let mut unknown = Vec::new();
        for _ in 0..5 {
            let started = Instant::now();
            work.verify("wrong".into(), Some(stored.clone()))
                .await
                .expect("not busy");
            known.push(started.elapsed());
            let started = Instant::now();
            work.verify("wrong".into(), None).await.expect("not busy");
            unknown.push(started.elapsed());
        }
        known.sort();
        unknown.sort();
        let (known, unknown) = (known[2], unknown[2]);
        assert!(
            unknown * 2 > known && known * 2 > unknown,
            "median wrong password {known:?}, unknown user {unknown:?}"
        );
    }

    async fn until(condition: impl Fn() -> bool) {
        for _ in 0..500 {
            if condition() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("condition not met within 5 s");
    }
}
