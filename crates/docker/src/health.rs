//! Whether the engine can take sessions now (`Platform::health`): it
//! answers a ping and `docker info`, and, when it is on this machine, the
//! filesystem under its data root (images, containers, homes) has room.
//! The runtime bounds the whole check with its deadline; a hung engine is
//! reported from there.

use crate::Shared;
use std::path::Path;
use streamspace_agent::errors::with_sources;
use streamspace_protocol::PlatformHealth;

/// Below this much free space under the data root an engine is degraded:
/// a desktop image layer or a home's first files would not fit, and the
/// engine itself misbehaves once its disk is full.
pub const MIN_FREE_BYTES: u64 = 1 << 30;

impl Shared {
    pub(crate) async fn health(&self) -> PlatformHealth {
        let endpoint = &self.endpoint;
        if let Err(err) = self.docker.ping().await {
            return PlatformHealth::degraded(format!(
                "the Docker engine at {endpoint} does not answer: {}",
                with_sources(&err)
            ));
        }
        let info = match self.docker.info().await {
            Ok(info) => info,
            Err(err) => {
                return PlatformHealth::degraded(format!(
                    "the Docker engine at {endpoint} cannot describe itself (docker info): {}",
                    with_sources(&err)
                ));
            }
        };
        let root = info
            .docker_root_dir
            .filter(|_| endpoint.starts_with("unix://"));
        match root.as_deref().map(Path::new).filter(|p| p.is_dir()) {
            Some(root) => disk_health(root, free_bytes(root)),
            // A remote engine's disk is not this machine's to measure.
            None => PlatformHealth::healthy(),
        }
    }
}

/// Bytes free to unprivileged writers under `path`, or why not known.
fn free_bytes(path: &Path) -> std::io::Result<u64> {
    let stats = rustix::fs::statvfs(path)?;
    Ok(stats.f_bavail.saturating_mul(stats.f_frsize))
}

/// The verdict on the data root `root` with `free` bytes free.
fn disk_health(root: &Path, free: std::io::Result<u64>) -> PlatformHealth {
    match free {
        Ok(free) if free < MIN_FREE_BYTES => PlatformHealth::degraded(format!(
            "the Docker data root {} has only {} MiB free (at least {} MiB are needed): \
             free space with docker system prune or grow the disk",
            root.display(),
            free >> 20,
            MIN_FREE_BYTES >> 20
        )),
        Ok(_) => PlatformHealth::healthy(),
        Err(err) => PlatformHealth::degraded(format!(
            "cannot read the free space of the Docker data root {}: {err}",
            root.display()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_data_root_short_of_space_or_unreadable_is_degraded() {
        let root = Path::new("/var/lib/docker");
        assert_eq!(
            disk_health(root, Ok(MIN_FREE_BYTES)),
            PlatformHealth::healthy()
        );
        let short = disk_health(root, Ok(300 << 20)).problem.expect("degraded");
        assert!(
            short.starts_with("the Docker data root /var/lib/docker has only 300 MiB free"),
            "{short}"
        );
        let unreadable = disk_health(root, Err(std::io::Error::other("gone")));
        assert!(unreadable.problem.is_some_and(|p| p.ends_with(": gone")));
    }

    #[test]
    fn free_space_is_read_from_the_filesystem() {
        let dir = std::env::temp_dir();
        assert!(free_bytes(&dir).expect("statvfs") > 0);
        assert!(free_bytes(Path::new("/no/such/dir")).is_err());
    }
}
