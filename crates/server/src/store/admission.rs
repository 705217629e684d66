//! Admission: quota and capacity are checked and then the session is written;
//! two requests must not both pass a check that only one of them fits, on
//! this replica or on another one.
//!
//! Within a process a mutex orders them. Across PostgreSQL replicas the
//! holder also takes a session-level advisory lock on a connection of its
//! own, held until it calls [`Admission::release`]. Should the holder fail
//! to release it (a panic, a cancelled request), the connection is closed
//! rather than returned to the pool: PostgreSQL drops a closed session's
//! locks, whereas a pooled connection would carry the lock to its next user.
//! SQLite is one process's file, so the mutex is all it needs.

use super::{Store, StoreResult};
use sqlx::Any;
use sqlx::pool::PoolConnection;
use tokio::sync::OwnedMutexGuard;

/// The advisory lock key of admission (`"SSADMIT\0"` as an integer): one
/// lock for every admission, since a create reads a user's quota and an
/// agent's capacity together.
const LOCK_KEY: i64 = 0x5353_4144_4d49_5400;

/// Held while a session is admitted; see the module comment.
pub struct Admission {
    _local: OwnedMutexGuard<()>,
    shared: Option<PoolConnection<Any>>,
}

impl Store {
    /// Waits for this request's turn to admit a session.
    pub async fn admission(&self) -> StoreResult<Admission> {
        let local = self.admissions.clone().lock_owned().await;
        let shared = if self.is_postgres() {
            let mut conn = self.pool.acquire().await?;
            sqlx::query("SELECT pg_advisory_lock($1)")
                .bind(LOCK_KEY)
                .execute(&mut *conn)
                .await?;
            Some(conn)
        } else {
            None
        };
        Ok(Admission {
            _local: local,
            shared,
        })
    }
}

impl Admission {
    /// Lets the next admission in, here and on every replica.
    pub async fn release(mut self) {
        let Some(mut conn) = self.shared.take() else {
            return;
        };
        let unlocked = sqlx::query("SELECT pg_advisory_unlock($1)")
            .bind(LOCK_KEY)
            .execute(&mut *conn)
            .await;
        if let Err(err) = unlocked {
            tracing::error!(error = %err, "cannot release the admission lock; closing its connection");
            drop(conn.detach());
        }
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        if let Some(conn) = self.shared.take() {
            // Closing the connection is what releases the lock now.
            drop(conn.detach());
        }
    }
}
