//! Start, hibernate, wake and terminate: each idempotent, keyed by the
//! Deployment name, so a command delivered twice does no harm. Hibernate
//! and wake only scale: the home claim and the pull Secret stay.

use crate::Shared;
use crate::error::{is_conflict, is_not_found};
use crate::names::{self, deployment_name, label_value};
use crate::objects::{check_existing, deployment, validate};
use crate::phase::desired_replicas;
use crate::pull_secret::names_pull_secret;
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use std::borrow::Cow;
use streamspace_agent::intent::Intent;
use streamspace_agent::{PlatformError, PlatformResult, homes};
use streamspace_protocol::{Phase, SessionId, SessionReport, SessionSpec, labels};

impl Shared {
    /// Creates the session's claim, pull Secret and Deployment if needed
    /// and makes sure it has a replica. An existing Deployment is kept as it
    /// is: a changed spec takes effect after terminate and start.
    #[tracing::instrument(skip(self, spec), fields(session_id = %spec.session_id, agent_id = %self.agent_id))]
    pub(crate) async fn start(&self, spec: &SessionSpec) -> PlatformResult<SessionReport> {
        let confinement = validate(spec, &self.options).map_err(PlatformError::Invalid)?;
        let session_id = &spec.session_id;
        self.intents.clear(session_id);
        self.check_shared_claims(spec).await?;

        let spec = match homes::prepare(self, spec).await? {
            Some(claim) => Cow::Owned(on_claim(spec, claim)),
            None => Cow::Borrowed(spec),
        };
        let account_secrets = self.account_pull_secrets(&spec).await?;
        let wanted = deployment(
            &spec,
            &confinement,
            &self.agent_id,
            &self.options,
            &account_secrets,
        );
        // Before the Deployment, so its pod never pulls without it.
        let made = self.create_pull_secret(&spec).await?;
        let started = self.create_or_scale_up(session_id, &wanted).await;
        if let Some(made) = made
            && !matches!(started, Ok(true))
        {
            self.remove_made_secret(made).await;
        }
        started.map(|_| SessionReport::new(session_id, Phase::Starting))
    }

    /// Creates `wanted`, or scales the existing Deployment of its name up
    /// if it is this agent's. `true` if the Deployment that runs the
    /// session names the session's pull Secret.
    async fn create_or_scale_up(
        &self,
        session_id: &SessionId,
        wanted: &Deployment,
    ) -> PlatformResult<bool> {
        let name = deployment_name(session_id);
        match self
            .deployments
            .create(&PostParams::default(), wanted)
            .await
        {
            Ok(_) => {
                tracing::info!(deployment = %name, "created deployment");
                return Ok(names_pull_secret(wanted, session_id));
            }
            Err(e) if is_conflict(&e) => tracing::debug!("deployment exists"),
            Err(e) => return Err(self.error(format!("create deployment {name}"), e)),
        }
        let existing = self.get_deployment(&name).await?.ok_or_else(|| {
            PlatformError::Unavailable(format!(
                "deployment {name} was deleted while the session was being started; start it again"
            ))
        })?;
        self.check_owner(&name, &existing)?;
        check_existing(&existing, &self.options).map_err(PlatformError::Invalid)?;
        if desired_replicas(&existing) == 0 {
            self.scale(session_id, 1).await?;
        }
        Ok(names_pull_secret(&existing, session_id))
    }

    /// Scales the session's Deployment to 0: the pod goes, the Deployment
    /// and the home claim stay.
    #[tracing::instrument(skip(self), fields(agent_id = %self.agent_id))]
    pub(crate) async fn hibernate(&self, session_id: &SessionId) -> PlatformResult<SessionReport> {
        let existing = self
            .get_owned(session_id)
            .await?
            .ok_or_else(|| PlatformError::NotFound(session_id.clone()))?;
        self.intents.clear(session_id);
        if desired_replicas(&existing) != 0 {
            self.scale(session_id, 0).await?;
        }
        Ok(SessionReport::new(session_id, Phase::Hibernated))
    }

    /// Scales a hibernated session's Deployment back to 1.
    #[tracing::instrument(skip(self), fields(agent_id = %self.agent_id))]
    pub(crate) async fn wake(&self, session_id: &SessionId) -> PlatformResult<SessionReport> {
        let existing = self
            .get_owned(session_id)
            .await?
            .ok_or_else(|| PlatformError::NotFound(session_id.clone()))?;
        check_existing(&existing, &self.options).map_err(PlatformError::Invalid)?;
        self.intents.set(session_id, Intent::Wake);
        if desired_replicas(&existing) == 0 {
            self.scale(session_id, 1).await?;
        }
        Ok(SessionReport::new(session_id, Phase::Waking))
    }

    /// Deletes the pull Secret the Deployment names, if any, then the
    /// Deployment (its ReplicaSet and pod follow); the home claim is kept
    /// for the user's next session.
    #[tracing::instrument(skip(self), fields(agent_id = %self.agent_id))]
    pub(crate) async fn terminate(&self, session_id: &SessionId) -> PlatformResult<SessionReport> {
        let name = deployment_name(session_id);
        // Never delete a Deployment of the same name that is not ours.
        let Some(existing) = self.get_owned(session_id).await? else {
            return Ok(SessionReport::new(session_id, Phase::Terminated));
        };
        // First: once the Deployment is gone, nothing tells this agent the
        // Secret was the session's, and a retried terminate would leave it.
        if names_pull_secret(&existing, session_id) {
            self.delete_pull_secret(session_id).await?;
        }
        // Recorded before the deletion so the watcher sees it as ours.
        self.intents.set(session_id, Intent::Terminate);
        match self
            .deployments
            .delete(&name, &DeleteParams::background())
            .await
        {
            Ok(_) => tracing::info!(deployment = %name, "deleted deployment"),
            Err(e) if is_not_found(&e) => tracing::debug!("deployment already gone"),
            Err(e) => return Err(self.error(format!("delete deployment {name}"), e)),
        }
        Ok(SessionReport::new(session_id, Phase::Terminated))
    }

    /// Sets the replica count through the scale subresource, which is all
    /// the agent's Role lets it change on an existing Deployment.
    async fn scale(&self, session_id: &SessionId, replicas: i32) -> PlatformResult<()> {
        let name = deployment_name(session_id);
        let patch = Patch::Merge(serde_json::json!({ "spec": { "replicas": replicas } }));
        match self
            .deployments
            .patch_scale(&name, &PatchParams::default(), &patch)
            .await
        {
            Ok(_) => {
                tracing::info!(deployment = %name, replicas, "scaled deployment");
                Ok(())
            }
            Err(e) if is_not_found(&e) => Err(PlatformError::NotFound(session_id.clone())),
            Err(e) => Err(self.error(format!("scale deployment {name} to {replicas}"), e)),
        }
    }

    /// A Deployment by name, whoever owns it.
    pub(crate) async fn get_deployment(&self, name: &str) -> PlatformResult<Option<Deployment>> {
        self.deployments
            .get_opt(name)
            .await
            .map_err(|e| self.error(format!("get deployment {name}"), e))
    }

    /// The Deployment of a session this agent owns, if there is one.
    pub(crate) async fn get_owned(
        &self,
        session_id: &SessionId,
    ) -> PlatformResult<Option<Deployment>> {
        let found = self.get_deployment(&deployment_name(session_id)).await?;
        Ok(found.filter(|d| self.owns(d)))
    }

    pub(crate) fn owns(&self, deployment: &Deployment) -> bool {
        owner_of(deployment) == Some(label_value(self.agent_id.as_str()).as_str())
            && managed(deployment)
    }

    /// Refuses to adopt a Deployment of our name that this agent did not
    /// create (another agent's, or somebody's own).
    fn check_owner(&self, name: &str, existing: &Deployment) -> PlatformResult<()> {
        if self.owns(existing) {
            return Ok(());
        }
        let namespace = &self.options.namespace;
        Err(PlatformError::Invalid(match owner_of(existing) {
            Some(owner) if managed(existing) => format!(
                "deployment {name} already exists in namespace {namespace} and belongs to agent {owner:?}"
            ),
            _ => format!(
                "a deployment named {name} already exists in namespace {namespace} and was not \
                 created by StreamSpace: delete or rename it"
            ),
        }))
    }
}

/// `spec` with its home on `claim` (its own, or the user's old one).
fn on_claim(spec: &SessionSpec, claim: &str) -> SessionSpec {
    let mut spec = spec.clone();
    if let Some(home) = spec.home.as_mut() {
        home.volume = claim.to_owned();
    }
    spec
}

fn owner_of(deployment: &Deployment) -> Option<&str> {
    deployment
        .metadata
        .labels
        .as_ref()?
        .get(labels::AGENT)
        .map(String::as_str)
}

fn managed(deployment: &Deployment) -> bool {
    deployment
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(names::MANAGED_BY))
        .is_some_and(|v| v == names::MANAGER)
}
