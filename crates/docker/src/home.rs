//! Persistent homes as named volumes: how this platform looks them up and
//! creates them; which one a session mounts is decided by
//! [`streamspace_agent::homes`], the same way on every platform.

use crate::Shared;
use crate::container::volume_request;
use crate::error::is_not_found;
use async_trait::async_trait;
use std::collections::BTreeMap;
use streamspace_agent::PlatformResult;
use streamspace_agent::homes::HomeStore;
use streamspace_protocol::SessionSpec;

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
