//! Persistent homes as named volumes: how this platform looks them up and
//! creates them; which one a session mounts is decided by
//! [`streamspace_agent::homes`], the same way on every platform. And the
//! shared volumes a template mounts, which must exist already.

use crate::Shared;
use crate::container::volume_request;
use crate::error::is_not_found;
use async_trait::async_trait;
use std::collections::BTreeMap;
use streamspace_agent::homes::HomeStore;
use streamspace_agent::{PlatformError, PlatformResult};
use streamspace_protocol::{SessionSpec, labels};

impl Shared {
    /// Refuses a session whose shared volumes do not all exist: Docker
    /// would create a missing one, empty, and the session would start
    /// without its data. A volume carrying a StreamSpace owner's labels is
    /// someone's home, never shared.
    pub(crate) async fn check_shared_volumes(&self, spec: &SessionSpec) -> PlatformResult<()> {
        for volume in &spec.volumes {
            let name = &volume.source;
            let found = match self.docker.inspect_volume(name).await {
                Ok(found) => found,
                Err(e) if is_not_found(&e) => {
                    return Err(PlatformError::Invalid(format!(
                        "shared volume {name:?} (for {}) does not exist on docker host {}: an \
                         admin creates it there (`docker volume create {name}`) and fills it",
                        volume.path, self.engine_host
                    )));
                }
                Err(e) => return Err(self.error(format!("inspect volume {name}"), e)),
            };
            if found.labels.contains_key(labels::USER) {
                return Err(PlatformError::Invalid(format!(
                    "volume {name:?} is a StreamSpace home (it belongs to one user) and is not \
                     mounted as a shared volume"
                )));
            }
        }
        Ok(())
    }
}

#[async_trait]
impl HomeStore for Shared {
    async fn home_labels(&self, name: &str) -> PlatformResult<Option<BTreeMap<String, String>>> {
        match self.docker.inspect_volume(name).await {
            Ok(volume) => Ok(Some(volume.labels.into_iter().collect())),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(self.error(format!("inspect volume {name}"), e)),
        }
    }

    /// Docker answers a create of an existing volume with that volume,
    /// unchanged: the home survives terminate and is reused.
    async fn create_home(&self, spec: &SessionSpec) -> PlatformResult<()> {
        let Some(volume) = volume_request(spec, &self.agent_id) else {
            return Ok(());
        };
        let volume_name = volume.name.clone().unwrap_or_default();
        self.docker
            .create_volume(volume)
            .await
            .map_err(|e| self.error(format!("create volume {volume_name}"), e))?;
        Ok(())
    }
}
