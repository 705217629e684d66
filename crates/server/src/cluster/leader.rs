//! The singleton lock: the jobs that must run on one replica at a time
//! (idle hibernation, token purge, audit retention, warm pools) run only
//! on the replica that holds it.
//!
//! On PostgreSQL it is a session-level advisory lock
//! (`pg_try_advisory_lock`) taken on a connection of its own, outside the
//! pool: PostgreSQL releases it when that connection ends, so a replica
//! killed with `kill -9` loses it the moment its socket closes, and the
//! others, trying every [`RETRY`], take over. The holder checks its
//! connection as often; a check that fails or hangs counts as losing the
//! lock (never two holders for long, at worst none for one retry). On
//! SQLite there is one replica, which always holds it.
//!
//! The jobs are safe to run twice (each step is a conditional write), so
//! the lock saves duplicated work and noise; it is not what keeps them
//! correct. A leaf: the application state holds the [`Leader`], and
//! [`contend`] takes only what it needs.

use sqlx::{Connection, PgConnection};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// How often a replica without the lock tries to take it, and how often
/// the holder checks it still has it.
pub const RETRY: Duration = Duration::from_secs(2);

/// The advisory lock's key: "SSsingle" in ASCII, unlikely to collide with
/// another application's lock on a shared server.
const KEY: i64 = 0x5353_7369_6e67_6c65;

/// Whether this replica holds the singleton lock now.
#[derive(Clone, Debug)]
pub struct Leader {
    held: Arc<watch::Sender<bool>>,
    /// The PostgreSQL database whose lock it is; `None` on SQLite.
    url: Option<Arc<str>>,
}

impl Leader {
    /// The lone replica on SQLite: always the holder.
    pub fn always() -> Self {
        Self {
            held: Arc::new(watch::channel(true).0),
            url: None,
        }
    }

    /// A replica among others on the PostgreSQL database at `url`: not the
    /// holder until [`contend`] takes it.
    pub fn contender(url: &str) -> Self {
        Self {
            held: Arc::new(watch::channel(false).0),
            url: Some(url.into()),
        }
    }

    pub fn is_held(&self) -> bool {
        *self.held.borrow()
    }

    /// Fires whenever the lock is taken or lost: a singleton job runs at
    /// once when its replica takes over, not at its next tick (an hour
    /// later for the purges).
    pub fn changes(&self) -> watch::Receiver<bool> {
        self.held.subscribe()
    }

    fn set(&self, held: bool) {
        let changed = self.held.send_if_modified(|now| {
            let changed = *now != held;
            *now = held;
            changed
        });
        if changed {
            match held {
                true => tracing::info!("this replica now runs the singleton jobs"),
                false => tracing::warn!("this replica no longer runs the singleton jobs"),
            }
        }
    }
}

/// Waits for a singleton job's next turn: its `tick`, or a change of
/// holder (`Leader::changes`), so a replica that takes over runs the job at
/// once. `false` at shutdown. The job then runs only if
/// [`Leader::is_held`].
pub async fn next_turn(
    tick: &mut tokio::time::Interval,
    changes: &mut watch::Receiver<bool>,
    shutdown: &CancellationToken,
) -> bool {
    tokio::select! {
        _ = tick.tick() => true,
        // A closed channel (the state is going away) disables this branch.
        Ok(()) = changes.changed() => true,
        _ = shutdown.cancelled() => false,
    }
}

/// Takes the lock whenever it is free, holds it until shutdown (then
/// releases it, so another replica takes over at its next try), and
/// starts over on a new connection whenever the current one fails.
/// Returns at once for the lone replica (SQLite), which always holds it.
pub async fn contend(leader: Leader, shutdown: CancellationToken) {
    let Some(url) = leader.url.clone() else {
        return;
    };
    while !shutdown.is_cancelled() {
        if let Err(err) = hold(&leader, &url, &shutdown).await {
            tracing::warn!(error = %err, "the singleton lock's connection failed; trying again");
        }
        leader.set(false);
        tokio::select! {
            _ = tokio::time::sleep(RETRY) => {}
            _ = shutdown.cancelled() => {}
        }
    }
}

#[derive(Debug, thiserror::Error)]
enum LockError {
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error("the database did not answer within {RETRY:?}")]
    Silent,
}

/// One connection's life: try or check every [`RETRY`] until it fails or
/// the replica stops.
async fn hold(leader: &Leader, url: &str, shutdown: &CancellationToken) -> Result<(), LockError> {
    let mut conn = answered(PgConnection::connect(url)).await?;
    loop {
        if leader.is_held() {
            // The lock lives as long as this connection: prove it is alive.
            answered(sqlx::query("SELECT 1").execute(&mut conn)).await?;
        } else {
            let query = sqlx::query_scalar::<_, bool>("SELECT pg_try_advisory_lock($1)").bind(KEY);
            let got = answered(query.fetch_one(&mut conn)).await?;
            leader.set(got);
        }
        tokio::select! {
            _ = tokio::time::sleep(RETRY) => {}
            _ = shutdown.cancelled() => {
                // Closing the connection releases the lock too; unlocking
                // first says so even if the close is slow.
                if leader.is_held() {
                    let unlock = sqlx::query("SELECT pg_advisory_unlock($1)").bind(KEY);
                    answered(unlock.execute(&mut conn)).await?;
                }
                leader.set(false);
                answered(conn.close()).await?;
                return Ok(());
            }
        }
    }
}

/// `work`'s answer, or [`LockError::Silent`] when the database takes
/// longer than [`RETRY`]: a holder that cannot tell whether it still holds
/// the lock must assume it does not.
async fn answered<T>(work: impl Future<Output = Result<T, sqlx::Error>>) -> Result<T, LockError> {
    match tokio::time::timeout(RETRY, work).await {
        Ok(result) => Ok(result?),
        Err(_) => Err(LockError::Silent),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn until(what: &str, check: impl Fn() -> bool) {
        let waited = tokio::time::timeout(Duration::from_secs(15), async {
            while !check() {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
        waited
            .await
            .unwrap_or_else(|_| panic!("timed out waiting for {what}"));
    }

    /// Two contenders on one database: exactly one holds the lock; when it
    /// stops, the other takes over within a retry.
    #[tokio::test]
    async fn one_holder_at_a_time_and_a_takeover_when_it_stops() {
        let url = streamspace_testkit::postgres::fresh_database()
            .await
            .expect("a PostgreSQL database");
        let (a, b) = (Leader::contender(&url), Leader::contender(&url));
        let (stop_a, stop_b) = (CancellationToken::new(), CancellationToken::new());
        let task_a = tokio::spawn(contend(a.clone(), stop_a.clone()));
        until("a to take the lock", || a.is_held()).await;
        tokio::spawn(contend(b.clone(), stop_b.clone()));
        // b tries at once, then every RETRY: give it more than one try.
        tokio::time::sleep(RETRY * 2).await;
        assert!(a.is_held() && !b.is_held(), "two holders, or a lost lock");
        let turns = b.changes();
        assert!(!turns.has_changed().expect("open"), "b's tries are no news");
        stop_a.cancel();
        task_a.await.expect("a stops");
        assert!(!a.is_held());
        until("b to take over", || b.is_held()).await;
        // b's singleton jobs take their turn at once.
        assert!(turns.has_changed().expect("open"));
        stop_b.cancel();
    }

    #[test]
    fn the_lone_replica_always_holds_it() {
        assert!(Leader::always().is_held());
        assert!(!Leader::contender("postgres://nowhere").is_held());
    }
}
