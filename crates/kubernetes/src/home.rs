//! Persistent homes as PersistentVolumeClaims: how this platform looks them
//! up and creates them; which one a session mounts is decided by
//! [`streamspace_agent::homes`], the same way on every platform. And the
//! shared claims a template mounts, which must exist already.

use crate::Shared;
use crate::error::is_conflict;
use crate::names::validate_claim_name;
use crate::objects::home_claim;
use async_trait::async_trait;
use kube::api::PostParams;
use std::collections::BTreeMap;
use streamspace_agent::homes::HomeStore;
use streamspace_agent::{PlatformError, PlatformResult};
use streamspace_protocol::SessionSpec;

impl Shared {
    /// Refuses a session whose shared claims do not all exist: its pod
    /// would wait in Pending without saying why to the user. A claim
    /// labelled as someone's home is never shared.
    pub(crate) async fn check_shared_claims(&self, spec: &SessionSpec) -> PlatformResult<()> {
        for volume in &spec.volumes {
            let name = &volume.source;
            let claim = self
                .claims
                .get_opt(name)
                .await
                .map_err(|e| self.error(format!("get persistentvolumeclaim {name}"), e))?;
            let Some(claim) = claim else {
                return Err(PlatformError::Invalid(format!(
                    "shared volume {name:?} (for {}) does not exist: an admin creates a \
                     PersistentVolumeClaim of that name in namespace {} (ReadOnlyMany or \
                     ReadWriteMany, so sessions on any node can mount it)",
                    volume.path, self.options.namespace
                )));
            };
            let labels = claim.metadata.labels.unwrap_or_default();
            if labels.contains_key(streamspace_protocol::labels::USER) {
                return Err(PlatformError::Invalid(format!(
                    "claim {name:?} is a StreamSpace home (it belongs to one user) and is not \
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
