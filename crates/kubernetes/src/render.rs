//! The exact objects the platform creates for a session, as YAML, for
//! operators to review (`streamspace agent kubernetes render`) and for
//! schema validation in CI.

use crate::KubernetesOptions;
use crate::objects::{deployment, home_claim, validate};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use streamspace_protocol::{AgentId, SessionSpec};

/// The claim (if the session has a persistent home) and the Deployment,
/// in the order the platform creates them. Refuses what `start` refuses.
pub fn session_objects(
    spec: &SessionSpec,
    agent_id: &AgentId,
    options: &KubernetesOptions,
) -> Result<(Option<PersistentVolumeClaim>, Deployment), String> {
    let confinement = validate(spec, options)?;
    Ok((
        home_claim(spec, agent_id, options),
        deployment(spec, &confinement, agent_id, options),
    ))
}

/// [`session_objects`] as multi-document YAML.
pub fn to_yaml(
    spec: &SessionSpec,
    agent_id: &AgentId,
    options: &KubernetesOptions,
) -> Result<String, String> {
    let (claim, deployment) = session_objects(spec, agent_id, options)?;
    // Long names (id-keyed homes are 90 characters) stay on one line, as
    // kubectl prints them, instead of becoming folded block scalars.
    let mut yaml = serde_saphyr::SerializerOptions::default();
    yaml.prefer_block_scalars = false;
    let mut documents = Vec::new();
    if let Some(claim) = claim {
        documents.push(
            serde_saphyr::to_string_with_options(&claim, yaml.clone())
                .map_err(|e| e.to_string())?,
        );
    }
    documents
        .push(serde_saphyr::to_string_with_options(&deployment, yaml).map_err(|e| e.to_string())?);
    Ok(documents
        .iter()
        .map(|doc| format!("---\n{}", doc.trim_end()))
        .collect::<Vec<_>>()
        .join("\n")
        + "\n")
}
