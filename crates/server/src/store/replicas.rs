//! Control-plane replicas in the store (migration 0015): each registers
//! itself, heartbeats, and finds the others here; a row whose heartbeat
//! stopped (a killed replica) expires.

use super::{Store, StoreResult};
use sqlx::Row;
use sqlx::any::AnyRow;
use std::collections::HashMap;

/// A replica as the others see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaRecord {
    pub id: String,
    pub internal_url: String,
    pub secret_hash: String,
    pub version: String,
    pub started_at: i64,
    pub heartbeat_at: i64,
    pub draining: bool,
}

const COLUMNS: &str = "id, internal_url, secret_hash, version, started_at, heartbeat_at, draining";

fn record(row: AnyRow) -> StoreResult<ReplicaRecord> {
    Ok(ReplicaRecord {
        id: row.try_get("id")?,
        internal_url: row.try_get("internal_url")?,
        secret_hash: row.try_get("secret_hash")?,
        version: row.try_get("version")?,
        started_at: row.try_get("started_at")?,
        heartbeat_at: row.try_get("heartbeat_at")?,
        draining: row.try_get::<i64, _>("draining")? != 0,
    })
}

impl Store {
    /// Writes this replica's row, or refreshes it if it is already there
    /// (it expired while this replica could not reach the database).
    pub async fn register_replica(&self, replica: &ReplicaRecord) -> StoreResult<()> {
        let _turn = self.write_turn().await;
        sqlx::query(
            "INSERT INTO replicas (id, internal_url, secret_hash, version, started_at, heartbeat_at, draining) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at, draining = excluded.draining",
        )
        .bind(&replica.id)
        .bind(&replica.internal_url)
        .bind(&replica.secret_hash)
        .bind(&replica.version)
        .bind(replica.started_at)
        .bind(replica.heartbeat_at)
        .bind(i64::from(replica.draining))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Records that the replica is alive (and whether it is draining);
    /// `false` when its row is gone (expired by another replica).
    pub async fn replica_heartbeat(&self, id: &str, at: i64, draining: bool) -> StoreResult<bool> {
        let _turn = self.write_turn().await;
        let done =
            sqlx::query("UPDATE replicas SET heartbeat_at = $1, draining = $2 WHERE id = $3")
                .bind(at)
                .bind(i64::from(draining))
                .bind(id)
                .execute(&self.pool)
                .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Every replica whose heartbeat is at or after `since`, oldest first.
    pub async fn live_replicas(&self, since: i64) -> StoreResult<Vec<ReplicaRecord>> {
        let rows = sqlx::query(super::sql(format!(
            "SELECT {COLUMNS} FROM replicas WHERE heartbeat_at >= $1 ORDER BY started_at, id"
        )))
        .bind(since)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(record).collect()
    }

    pub async fn replica(&self, id: &str) -> StoreResult<Option<ReplicaRecord>> {
        let row = sqlx::query(super::sql(format!(
            "SELECT {COLUMNS} FROM replicas WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(record).transpose()
    }

    /// A replica that stops cleanly removes itself.
    pub async fn remove_replica(&self, id: &str) -> StoreResult<()> {
        let _turn = self.write_turn().await;
        sqlx::query("DELETE FROM replicas WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Deletes the rows of replicas silent since before `before` (killed
    /// ones); returns how many.
    pub async fn expire_replicas(&self, before: i64) -> StoreResult<u64> {
        let _turn = self.write_turn().await;
        let done = sqlx::query("DELETE FROM replicas WHERE heartbeat_at < $1")
            .bind(before)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    /// How many agents each replica holds, by replica id.
    pub async fn agents_per_replica(&self) -> StoreResult<HashMap<String, u64>> {
        let rows = sqlx::query(
            "SELECT replica_id, COUNT(*) AS n FROM agents \
             WHERE replica_id IS NOT NULL AND connected = 1 GROUP BY replica_id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let n: i64 = row.try_get("n")?;
                Ok((row.try_get("replica_id")?, u64::try_from(n).unwrap_or(0)))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replica(id: &str, at: i64) -> ReplicaRecord {
        ReplicaRecord {
            id: id.into(),
            internal_url: format!("http://{id}.internal:8080"),
            secret_hash: "h".into(),
            version: "v".into(),
            started_at: at,
            heartbeat_at: at,
            draining: false,
        }
    }

    /// Live replicas are listed; a silent one expires; a heartbeat after
    /// expiry says so, and registering again brings it back.
    async fn replicas_register_beat_and_expire(url: &str) {
        let store = Store::connect(url).await.expect("store");
        store
            .register_replica(&replica("a", 1_000))
            .await
            .expect("a");
        store
            .register_replica(&replica("b", 5_000))
            .await
            .expect("b");
        assert!(
            store
                .replica_heartbeat("b", 9_000, true)
                .await
                .expect("beat")
        );
        let live = store.live_replicas(4_000).await.expect("live");
        assert_eq!(
            live.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
            ["b"]
        );
        assert!(live[0].draining);
        assert_eq!(store.expire_replicas(4_000).await.expect("expire"), 1);
        assert!(
            !store
                .replica_heartbeat("a", 9_500, false)
                .await
                .expect("beat")
        );
        store
            .register_replica(&replica("a", 9_600))
            .await
            .expect("again");
        assert_eq!(store.live_replicas(0).await.expect("live").len(), 2);
        store.remove_replica("b").await.expect("remove");
        assert_eq!(store.replica("b").await.expect("read"), None);
        assert_eq!(
            store.replica("a").await.expect("read").map(|r| r.id),
            Some("a".into())
        );
    }

    /// An agent that moved from replica a to b stays b's when its old
    /// channel on a closes; it is nobody's once b lets go.
    async fn an_agent_is_held_by_its_latest_replica(url: &str) {
        let store = Store::connect(url).await.expect("store");
        for id in ["a", "b"] {
            store
                .register_replica(&replica(id, 1_000))
                .await
                .expect("replica");
        }
        let id = crate::store::agents::tests::enroll(&store, "host").await;
        let hello = ("v", &Default::default(), &Default::default());
        let holder = async || store.get_agent(&id).await.expect("read").expect("agent");
        store
            .mark_agent_connected(&id, "a", hello)
            .await
            .expect("on a");
        store
            .mark_agent_connected(&id, "b", hello)
            .await
            .expect("on b");
        store
            .mark_agent_disconnected(&id, "a")
            .await
            .expect("a closes");
        let read = holder().await;
        assert!(read.connected);
        assert_eq!(read.replica_id.as_deref(), Some("b"));
        assert_eq!(
            store.agents_per_replica().await.expect("count"),
            HashMap::from([("b".to_owned(), 1)])
        );
        store
            .mark_agent_disconnected(&id, "b")
            .await
            .expect("b closes");
        assert_eq!(holder().await.replica_id, None);
        assert!(!holder().await.connected);

        assert!(store.agents_per_replica().await.expect("count").is_empty());
    }

    on_both_engines!(
        replicas_register_beat_and_expire,
        an_agent_is_held_by_its_latest_replica
    );
}
