//! Persistent homes as PersistentVolumeClaims: how this platform looks them
//! up and creates them; which one a session mounts is decided by
//! [`streamspace_agent::homes`], the same way on every platform.

use crate::Shared;
use crate::error::is_conflict;
use crate::names::validate_claim_name;
use crate::objects::home_claim;
use async_trait::async_trait;
use kube::api::PostParams;
use std::collections::BTreeMap;
use streamspace_agent::PlatformResult;
use streamspace_agent::homes::HomeStore;
use streamspace_protocol::SessionSpec;

#[async_trait]
impl HomeStore for Shared {
    async fn home_labels(&self, name: &str) -> PlatformResult<Option<BTreeMap<String, String>>> {
        // A name no claim can have (an old home named after a user and
        // template): there is no such claim.
        if validate_claim_name(name).is_err() {
            return Ok(None);
        }
        let claim = self
            .claims
            .get_opt(name)
            .await
            .map_err(|e| self.error(format!("get persistentvolumeclaim {name}"), e))?;
        Ok(claim.map(|c| c.metadata.labels.unwrap_or_default()))
    }

    /// An existing claim is the user's home from an earlier session (or one
    /// an operator provisioned): it is reused as it is.
    async fn create_home(&self, spec: &SessionSpec) -> PlatformResult<()> {
        let Some(claim) = home_claim(spec, &self.agent_id, &self.options) else {
            return Ok(());
        };
        let claim_name = claim.metadata.name.clone().unwrap_or_default();
        match self.claims.create(&PostParams::default(), &claim).await {
            Ok(_) => tracing::info!(claim = %claim_name, "created home claim"),
            Err(e) if is_conflict(&e) => tracing::debug!(claim = %claim_name, "home claim exists"),
            Err(e) => {
                return Err(self.error(format!("create persistentvolumeclaim {claim_name}"), e));
            }
        }
        Ok(())
    }
}
