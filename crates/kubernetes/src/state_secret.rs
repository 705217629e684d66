//! The agent's identity (`agent.json`) kept in a Secret, so it survives pod
//! restarts without a volume and is shared by leader-elected replicas.
//!
//! The deploy manifests create the Secret empty and grant the agent `get`
//! and `patch` on that one Secret by name; the agent fills it after it
//! enrolls. Creating it is attempted only when it is missing.

use crate::KubernetesError;
use crate::error::is_not_found;
use crate::names::{MANAGED_BY, MANAGER};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};
use std::collections::BTreeMap;

/// The key of the identity in the Secret's data (the file name the agent
/// runtime uses in its state directory).
pub const IDENTITY_KEY: &str = "agent.json";

pub struct StateSecret {
    secrets: Api<Secret>,
    namespace: String,
    name: String,
}

impl StateSecret {
    pub fn new(client: Client, namespace: &str, name: &str) -> Self {
        StateSecret {
            secrets: Api::namespaced(client, namespace),
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The saved identity, `None` if the Secret or its key is missing.
    pub async fn load(&self) -> Result<Option<Vec<u8>>, KubernetesError> {
        let secret = self
            .secrets
            .get_opt(&self.name)
            .await
            .map_err(|e| self.error("read", e))?;
        Ok(secret
            .and_then(|s| s.data)
            .and_then(|mut data| data.remove(IDENTITY_KEY))
            .map(|bytes| bytes.0)
            .filter(|bytes| !bytes.is_empty()))
    }

    /// Saves the identity, keeping the Secret's other keys.
    pub async fn store(&self, identity: &[u8]) -> Result<(), KubernetesError> {
        let data = BTreeMap::from([(IDENTITY_KEY.to_owned(), ByteString(identity.to_vec()))]);
        let patch = Patch::Merge(serde_json::json!({ "data": data }));
        match self
            .secrets
            .patch(&self.name, &PatchParams::default(), &patch)
            .await
        {
            Ok(_) => return Ok(()),
            Err(e) if is_not_found(&e) => {}
            Err(e) => return Err(self.error("update", e)),
        }
        let secret = Secret {
            metadata: ObjectMeta {
                name: Some(self.name.clone()),
                labels: Some(BTreeMap::from([(
                    MANAGED_BY.to_owned(),
                    MANAGER.to_owned(),
                )])),
                ..Default::default()
            },
            type_: Some("Opaque".to_owned()),
            data: Some(data),
            ..Default::default()
        };
        self.secrets
            .create(&PostParams::default(), &secret)
            .await
            .map(|_| ())
            .map_err(|e| self.error("create", e))
    }

    fn error(&self, verb: &str, cause: kube::Error) -> KubernetesError {
        KubernetesError::new(
            &self.namespace,
            format!("{verb} secret {}", self.name),
            cause,
        )
    }
}
