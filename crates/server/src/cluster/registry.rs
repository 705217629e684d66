//! The replica registry: this replica's row in `replicas`, written at start,
//! refreshed every [`BEAT`], removed at a clean stop; and the expiry of
//! rows whose replica stopped beating (killed), which any replica does.

use super::replica::Replica;
use crate::state::AppState;
use crate::store::{ReplicaRecord, Store, StoreResult, duration_ms, now_ms};
use std::time::Duration;

/// How often a replica says it is alive.
pub const BEAT: Duration = Duration::from_secs(2);

/// A replica silent this long is gone: its row is deleted, and the others
/// stop counting on it (tunnels, the singleton jobs' lock is PostgreSQL's).
pub const SILENCE: Duration = Duration::from_secs(10);

fn row(replica: &Replica, draining: bool) -> ReplicaRecord {
    let now = now_ms();
    ReplicaRecord {
        id: replica.id.to_string(),
        internal_url: replica.internal_url.to_string(),
        secret_hash: crate::auth::secrets::hash(&replica.secret),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        started_at: now,
        heartbeat_at: now,
        draining,
    }
}

/// Writes this replica's row; called before the server takes requests.
pub async fn register(store: &Store, replica: &Replica) -> StoreResult<()> {
    store.register_replica(&row(replica, false)).await
}

/// Beats until shutdown, then removes this replica's row.
pub async fn run(state: AppState) {
    let mut tick = tokio::time::interval(BEAT);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = state.shutdown.cancelled() => break,
        }
        if let Err(err) = beat(&state, state.draining.is_cancelled()).await {
            tracing::warn!(error = %err, "cannot record this replica's heartbeat");
        }
    }
    if let Err(err) = state.store.remove_replica(state.replica.id.as_str()).await {
        tracing::warn!(error = %err, "cannot remove this replica from the registry");
    }
}

/// One heartbeat: refreshes this replica's row (writing it again if
/// another replica expired it meanwhile) and expires the silent ones.
pub async fn beat(state: &AppState, draining: bool) -> StoreResult<()> {
    let store = &state.store;
    let replica = &state.replica;
    if !store
        .replica_heartbeat(replica.id.as_str(), now_ms(), draining)
        .await?
    {
        tracing::warn!(replica = %replica.id, "this replica's row had expired; registering again");
        store.register_replica(&row(replica, draining)).await?;
    }
    let expired = store
        .expire_replicas(now_ms() - duration_ms(SILENCE))
        .await?;
    if expired > 0 {
        // Their agents' rows still name them: such an agent is offline by
        // its stale heartbeat until it reconnects elsewhere. Clearing the
        // claims here would be wrong after a database outage, when every
        // replica looks silent but still holds its agents.
        tracing::info!(expired, "removed replicas that stopped beating");
    }
    Ok(())
}
