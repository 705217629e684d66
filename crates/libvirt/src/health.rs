//! Whether the host can take sessions now (`Platform::health`): libvirtd
//! answers, the storage pool is active, and it has room for overlays to
//! grow and for managed save images (a VM's whole memory each). The
//! runtime bounds the whole check with its deadline.

use crate::Shared;
use streamspace_protocol::PlatformHealth;
use virt::storage_pool::StoragePool;

/// Below this much free space in the pool the host is degraded: a
/// hibernation writes the VM's memory there, and a full disk pauses every
/// VM writing to its overlay.
pub const MIN_FREE_BYTES: u64 = 1 << 30;

impl Shared {
    pub(crate) async fn health(&self) -> PlatformHealth {
        let pool = self.options.pool.clone();
        let uri = self.hypervisor.uri().to_owned();
        let checked = self
            .hypervisor
            .call(move |conn| {
                let verdict = match StoragePool::lookup_by_name(conn, &pool) {
                    Err(e) => PlatformHealth::degraded(format!(
                        "the storage pool {pool} on {uri} cannot be found: {}",
                        e.message()
                    )),
                    Ok(found) => match (found.is_active(), found.get_info()) {
                        (Ok(false), _) => PlatformHealth::degraded(format!(
                            "the storage pool {pool} on {uri} is not active (`virsh pool-start {pool}`)"
                        )),
                        (_, Ok(info)) => pool_health(&pool, info.available),
                        (_, Err(e)) => PlatformHealth::degraded(format!(
                            "the storage pool {pool} on {uri} cannot say its free space: {}",
                            e.message()
                        )),
                    },
                };
                Ok(verdict)
            })
            .await;
        match checked {
            Ok(verdict) => verdict,
            Err(e) => PlatformHealth::degraded(format!("libvirt does not answer: {e}")),
        }
    }
}

fn pool_health(pool: &str, available: u64) -> PlatformHealth {
    if available < MIN_FREE_BYTES {
        return PlatformHealth::degraded(format!(
            "the storage pool {pool} has only {} MiB free (at least {} MiB are needed for \
             overlays and hibernated memory): free space or grow the disk",
            available >> 20,
            MIN_FREE_BYTES >> 20
        ));
    }
    PlatformHealth::healthy()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pool_short_of_space_is_degraded() {
        assert_eq!(pool_health("p", MIN_FREE_BYTES), PlatformHealth::healthy());
        let short = pool_health("p", 300 << 20).problem.expect("degraded");
        assert!(
            short.starts_with("the storage pool p has only 300 MiB free"),
            "{short}"
        );
    }
}
