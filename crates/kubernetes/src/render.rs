//! The exact objects the platform creates for a session, as YAML, for
//! operators to review (`streamspace agent kubernetes render`) and for
//! schema validation in CI.

use crate::KubernetesOptions;
use crate::objects::{deployment, home_claim, validate};
use crate::pull_secret::pull_secret;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Secret};
use serde::Serialize;
use streamspace_protocol::{AgentId, SessionSpec};

/// What stands for a template's registry password in what `render`
/// prints: the output is for review, and reviews get pasted around.
pub const REDACTED_PASSWORD: &str = "REDACTED";

/// A session's objects in the order the platform creates them.
pub struct SessionObjects {
    pub claim: Option<PersistentVolumeClaim>,
    /// The image pull Secret, with the password [`REDACTED_PASSWORD`].
    pub pull_secret: Option<Secret>,
    pub deployment: Deployment,
}

/// The claim (if the session has a persistent home), the pull Secret (if
/// its template has registry credentials) and the Deployment. Refuses what
/// `start` refuses. The service account's `imagePullSecrets`, which the
/// agent reads when it starts a session, are not in the Deployment here.
pub fn session_objects(
    spec: &SessionSpec,
    agent_id: &AgentId,
    options: &KubernetesOptions,
) -> Result<SessionObjects, String> {
    let confinement = validate(spec, options)?;
    let mut redacted = spec.clone();
    if let Some(auth) = redacted.registry_auth.as_mut() {
        auth.password = REDACTED_PASSWORD.to_owned();
    }
    Ok(SessionObjects {
        claim: home_claim(spec, agent_id, options),
        pull_secret: pull_secret(&redacted, agent_id, &options.namespace),
        deployment: deployment(spec, &confinement, agent_id, options, &[]),
    })
}

/// [`session_objects`] as multi-document YAML.
pub fn to_yaml(
    spec: &SessionSpec,
    agent_id: &AgentId,
    options: &KubernetesOptions,
) -> Result<String, String> {
    let objects = session_objects(spec, agent_id, options)?;
    let mut documents = Vec::new();
    if let Some(claim) = &objects.claim {
        documents.push(document(claim)?);
    }
    if let Some(secret) = &objects.pull_secret {
        documents.push(document(secret)?);
    }
    documents.push(document(&objects.deployment)?);
    Ok(documents
        .iter()
        .map(|doc| format!("---\n{}", doc.trim_end()))
        .collect::<Vec<_>>()
        .join("\n")
        + "\n")
}

fn document(object: &impl Serialize) -> Result<String, String> {
    // Long names (id-keyed homes are 90 characters) stay on one line, as
    // kubectl prints them, instead of becoming folded block scalars.
    let mut yaml = serde_saphyr::SerializerOptions::default();
    yaml.prefer_block_scalars = false;
    serde_saphyr::to_string_with_options(object, yaml).map_err(|e| e.to_string())
}
