//! A session's image pull Secret: the template's registry credentials
//! (`registry_auth`) as a `kubernetes.io/dockerconfigjson` Secret that the
//! session's pod names in `imagePullSecrets`, so the kubelet pulls a
//! private image with them. It holds the credentials of the image's
//! registry only (like the Docker agent, which sends a registry no other's).
//!
//! Start makes it before the Deployment (a pod never looks for it before it
//! exists) and removes one it made if the start fails; hibernate and wake
//! leave it, since the pod template names it; terminate deletes it, before
//! the Deployment, and only when the agent's own Deployment names it: the
//! agent may not read Secrets, so that reference is how it knows the Secret
//! is the session's. Its content is never logged, only its name.

use crate::Shared;
use crate::error::{is_conflict, is_not_found};
use crate::names::{self, pull_secret_name, session_labels};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{DeleteParams, PostParams, Preconditions};
use std::collections::BTreeMap;
use streamspace_agent::PlatformResult;
use streamspace_agent::pulls::{DOCKER_HUB, registry_of};
use streamspace_protocol::{AgentId, RegistryAuth, SessionId, SessionSpec};

/// The Secret type the kubelet reads pull credentials from, and its key.
pub const DOCKER_CONFIG_TYPE: &str = "kubernetes.io/dockerconfigjson";
pub const DOCKER_CONFIG_KEY: &str = ".dockerconfigjson";

/// The key Docker Hub's credentials go under: the kubelet gives images
/// without a registry (and `docker.io/…`) the credentials of
/// `index.docker.io`, and a `docker.io` key would match neither.
const DOCKER_HUB_KEY: &str = "https://index.docker.io/v1/";

/// The service account session pods run as (they name none). Kubernetes
/// adds its `imagePullSecrets` to a pod only when the pod names none
/// itself, so a pod that does gets them from the agent.
pub const SESSION_SERVICE_ACCOUNT: &str = "default";

/// The session's pull Secret, `None` when its template has no
/// `registry_auth`. Labelled like the session's Deployment, immutable (it
/// is made once and deleted with the session).
pub fn pull_secret(spec: &SessionSpec, agent_id: &AgentId, namespace: &str) -> Option<Secret> {
    let auth = spec.registry_auth.as_ref()?;
    let mut labels = session_labels(spec, agent_id);
    labels.insert(
        names::APP_NAME.to_owned(),
        names::PULL_SECRET_APP.to_owned(),
    );
    Some(Secret {
        metadata: ObjectMeta {
            name: Some(pull_secret_name(&spec.session_id)),
            namespace: Some(namespace.to_owned()),
            labels: Some(labels),
            ..Default::default()
        },
        type_: Some(DOCKER_CONFIG_TYPE.to_owned()),
        immutable: Some(true),
        data: Some(BTreeMap::from([(
            DOCKER_CONFIG_KEY.to_owned(),
            ByteString(docker_config(&spec.image, auth)),
        )])),
        ..Default::default()
    })
}

/// A Docker `config.json` with credentials for `image`'s registry alone,
/// as `kubectl create secret docker-registry` writes it (`auth` beside
/// `username` and `password`).
pub fn docker_config(image: &str, auth: &RegistryAuth) -> Vec<u8> {
    let registry = registry_of(image);
    let key = if registry == DOCKER_HUB {
        DOCKER_HUB_KEY.to_owned()
    } else {
        registry
    };
    let basic = STANDARD.encode(format!("{}:{}", auth.username, auth.password));
    let entry = serde_json::json!({
        "username": auth.username,
        "password": auth.password,
        "auth": basic,
    });
    serde_json::json!({ "auths": { key: entry } })
        .to_string()
        .into_bytes()
}

/// The pod's `imagePullSecrets`: the session's own first (the template's
/// credentials win, as on Docker), then the agent's `--image-pull-secret`,
/// then the service account's, each once.
pub fn pod_pull_secrets(
    spec: &SessionSpec,
    agent_secrets: &[String],
    account_secrets: &[String],
) -> Vec<String> {
    let own = spec
        .registry_auth
        .is_some()
        .then(|| pull_secret_name(&spec.session_id));
    let mut names: Vec<String> = Vec::new();
    for name in own.iter().chain(agent_secrets).chain(account_secrets) {
        if !names.contains(name) {
            names.push(name.clone());
        }
    }
    names
}

/// Whether `deployment`'s pods name the session's pull Secret (Deployments
/// from agents before it existed do not).
pub fn names_pull_secret(deployment: &Deployment, session_id: &SessionId) -> bool {
    let wanted = pull_secret_name(session_id);
    (deployment.spec.template.spec.as_ref())
        .and_then(|pod| pod.image_pull_secrets.as_ref())
        .is_some_and(|refs| refs.iter().any(|r| r.name == wanted))
}

/// A pull Secret this start created, removed again if the start fails.
pub(crate) struct MadeSecret {
    name: String,
    uid: Option<String>,
}

impl Shared {
    /// The service account's `imagePullSecrets`, read only when the pod will
    /// name pull secrets itself (otherwise Kubernetes adds them). Without
    /// the right to read it (a Role from before this), the pod goes without
    /// them and the log says so.
    pub(crate) async fn account_pull_secrets(
        &self,
        spec: &SessionSpec,
    ) -> PlatformResult<Vec<String>> {
        if spec.registry_auth.is_none() && self.options.image_pull_secrets.is_empty() {
            return Ok(Vec::new());
        }
        let account = SESSION_SERVICE_ACCOUNT;
        match self.service_accounts.get_opt(account).await {
            Ok(found) => Ok(found
                .and_then(|a| a.image_pull_secrets)
                .unwrap_or_default()
                .into_iter()
                .map(|r| r.name)
                .collect()),
            Err(e) if crate::error::status_of(&e) == Some(403) => {
                tracing::warn!(
                    service_account = account,
                    "may not read the service account: its imagePullSecrets are not added to \
                     the session's pod (grant get on serviceaccounts/default in the agent's Role)"
                );
                Ok(Vec::new())
            }
            Err(e) => Err(self.error(format!("get serviceaccount {account}"), e)),
        }
    }

    /// Creates the session's pull Secret if its template has credentials.
    /// One that exists already (an earlier delivery of this start) is kept:
    /// a session's credentials are those it started with. Returns the one
    /// this call made.
    pub(crate) async fn create_pull_secret(
        &self,
        spec: &SessionSpec,
    ) -> PlatformResult<Option<MadeSecret>> {
        let Some(secret) = pull_secret(spec, &self.agent_id, &self.options.namespace) else {
            return Ok(None);
        };
        let name = pull_secret_name(&spec.session_id);
        match self.secrets.create(&PostParams::default(), &secret).await {
            Ok(made) => {
                tracing::info!(secret = %name, "created image pull secret");
                Ok(Some(MadeSecret {
                    name,
                    uid: made.metadata.uid,
                }))
            }
            Err(e) if is_conflict(&e) => {
                tracing::debug!(secret = %name, "image pull secret exists");
                Ok(None)
            }
            Err(e) => Err(self.error(format!("create secret {name}"), e)),
        }
    }

    /// Removes a pull Secret a failed start made (only that one: the
    /// deletion is conditional on its uid). Failing to is logged, not
    /// returned: the start's own error is what the user needs.
    pub(crate) async fn remove_made_secret(&self, made: MadeSecret) {
        let params = DeleteParams {
            preconditions: Some(Preconditions {
                uid: made.uid,
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        match self.secrets.delete(&made.name, &params).await {
            Ok(_) => {
                tracing::info!(secret = %made.name, "deleted the image pull secret of a failed start")
            }
            Err(e) if is_not_found(&e) => {}
            Err(e) => tracing::warn!(
                secret = %made.name, error = %e,
                "cannot delete the image pull secret of a failed start"
            ),
        }
    }

    /// Deletes the session's pull Secret (terminate); one already gone is
    /// fine.
    pub(crate) async fn delete_pull_secret(&self, session_id: &SessionId) -> PlatformResult<()> {
        let name = pull_secret_name(session_id);
        match self.secrets.delete(&name, &DeleteParams::default()).await {
            Ok(_) => tracing::info!(secret = %name, "deleted image pull secret"),
            Err(e) if is_not_found(&e) => {
                tracing::debug!(secret = %name, "image pull secret already gone")
            }
            Err(e) => return Err(self.error(format!("delete secret {name}"), e)),
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "pull_secret_tests.rs"]
mod tests;
