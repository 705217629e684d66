//! Observing sessions as they are in the cluster: access check, status,
//! inventory and console output.

use crate::Shared;
use crate::names::{CONTAINER, agent_selector, session_of, session_selector};
use crate::phase::{SessionObjects, current_pod, desired_replicas, observe};
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{AsyncBufRead, AsyncBufReadExt, StreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{ListParams, LogParams};
use std::collections::BTreeMap;
use std::pin::Pin;
use streamspace_agent::intent::Intent;
use streamspace_agent::{OrNotFound, PlatformError, PlatformResult};
use streamspace_protocol::{Phase, SessionId, SessionOrigin, SessionReport};

impl Shared {
    pub(crate) async fn check_access(&self) -> PlatformResult<()> {
        let params = ListParams::default()
            .labels(&agent_selector(&self.agent_id))
            .limit(1);
        self.deployments
            .list_metadata(&params)
            .await
            .map_err(|e| self.error("list deployments", e))?;
        self.pods
            .list_metadata(&params)
            .await
            .map_err(|e| self.error("list pods", e))?;
        Ok(())
    }

    /// The report for a session with these objects, with what only this
    /// platform knows (a wake in progress) applied.
    pub(crate) fn report(&self, session_id: &SessionId, objects: &SessionObjects) -> SessionReport {
        let observed = observe(&objects.deployment, &objects.pods);
        let mut phase = observed.phase;
        if self.intents.get(session_id) == Some(Intent::Wake) {
            match phase {
                Phase::Starting | Phase::Pending => phase = Phase::Waking,
                Phase::Running | Phase::Failed | Phase::Hibernated => {
                    self.intents.clear(session_id)
                }
                _ => {}
            }
        }
        let mut report = SessionReport::new(session_id, phase);
        report.message = observed.message;
        report
    }

    /// The session's objects, from the watch cache when it has them, else
    /// from the apiserver. `None` if this agent has no such session.
    pub(crate) async fn session_objects(
        &self,
        session_id: &SessionId,
    ) -> PlatformResult<Option<SessionObjects>> {
        if let Some(cached) = self.cached(session_id) {
            return Ok(Some(cached));
        }
        let Some(deployment) = self.get_owned(session_id).await? else {
            return Ok(None);
        };
        let pods = self
            .list_pods(&session_selector(&self.agent_id, session_id))
            .await?;
        Ok(Some(SessionObjects { deployment, pods }))
    }

    #[tracing::instrument(skip(self), fields(agent_id = %self.agent_id))]
    pub(crate) async fn status(&self, session_id: &SessionId) -> PlatformResult<SessionReport> {
        let objects = self
            .session_objects(session_id)
            .await
            .or_not_found(session_id)?;
        Ok(self.report(session_id, &objects))
    }

    /// Every session Deployment labelled with this agent's id, with its
    /// pods, sorted by session id. Always asks the apiserver: it runs on
    /// every (re)connect, when the watch has not caught up yet.
    #[tracing::instrument(skip(self), fields(agent_id = %self.agent_id))]
    pub(crate) async fn inventory(&self) -> PlatformResult<Vec<SessionReport>> {
        let selector = agent_selector(&self.agent_id);
        let deployments = self
            .deployments
            .list(&ListParams::default().labels(&selector))
            .await
            .map_err(|e| self.error("list deployments", e))?;
        let mut pods_by_session: BTreeMap<SessionId, Vec<Pod>> = BTreeMap::new();
        for pod in self.list_pods(&selector).await? {
            if let Some(session_id) = session_of(&pod.metadata.labels) {
                pods_by_session.entry(session_id).or_default().push(pod);
            }
        }
        let mut reports = Vec::with_capacity(deployments.items.len());
        for deployment in deployments.items {
            let Some(session_id) = session_of(&deployment.metadata.labels) else {
                continue;
            };
            if !self.owns(&deployment) {
                continue;
            }
            let pods = pods_by_session.remove(&session_id).unwrap_or_default();
            let origin = origin_of(&deployment);
            let objects = SessionObjects { deployment, pods };
            let report = self.report(&session_id, &objects);
            // The user and template, so a control plane that lost its
            // record of the session can adopt it.
            reports.push(match origin {
                Some(origin) => report.with_origin(origin),
                None => report,
            });
        }
        reports.sort_by(|a, b| a.session_id.cmp(&b.session_id));
        Ok(reports)
    }

    pub(crate) async fn list_pods(&self, selector: &str) -> PlatformResult<Vec<Pod>> {
        self.pods
            .list(&ListParams::default().labels(selector))
            .await
            .map(|list| list.items)
            .map_err(|e| self.error("list pods", e))
    }

    /// The session pod's console output (the session container's stdout
    /// and stderr).
    #[tracing::instrument(skip(self), fields(agent_id = %self.agent_id))]
    pub(crate) async fn logs(
        &self,
        session_id: &SessionId,
        tail: Option<u32>,
        follow: bool,
    ) -> PlatformResult<BoxStream<'static, PlatformResult<Bytes>>> {
        let objects = self
            .session_objects(session_id)
            .await
            .or_not_found(session_id)?;
        let Some(pod) = current_pod(&objects.pods) else {
            let why = if desired_replicas(&objects.deployment) == 0 {
                "it is hibernated: its pod, and the pod's console output, are gone until it wakes"
            } else {
                "its pod has not been created yet"
            };
            return Err(PlatformError::Invalid(format!(
                "session {session_id} has no console output: {why}"
            )));
        };
        let pod_name = pod.metadata.name.clone().unwrap_or_default();
        let params = LogParams {
            container: Some(CONTAINER.to_owned()),
            follow,
            tail_lines: tail.map(i64::from),
            ..Default::default()
        };
        let reader = self
            .pods
            .log_stream(&pod_name, &params)
            .await
            .map_err(|e| self.error(format!("read the logs of pod {pod_name}"), e))?;
        Ok(chunks(Box::pin(reader), pod_name))
    }

    /// The cached objects of a session, when the watch has synced and
    /// knows its Deployment.
    fn cached(&self, session_id: &SessionId) -> Option<SessionObjects> {
        let view = crate::watch::lock_view(self).clone()?;
        view.session(session_id)
    }
}

/// A byte reader as a stream of chunks, ending after the first error.
fn chunks(
    reader: Pin<Box<dyn AsyncBufRead + Send>>,
    pod_name: String,
) -> BoxStream<'static, PlatformResult<Bytes>> {
    futures::stream::unfold(Some(reader), move |reader| {
        let pod_name = pod_name.clone();
        async move {
            let mut reader = reader?;
            match reader.fill_buf().await {
                Ok([]) => None,
                Ok(buf) => {
                    let chunk = Bytes::copy_from_slice(buf);
                    let len = chunk.len();
                    reader.as_mut().consume(len);
                    Some((Ok(chunk), Some(reader)))
                }
                Err(e) => Some((
                    Err(PlatformError::Unavailable(format!(
                        "reading the logs of pod {pod_name}: {e}"
                    ))),
                    None,
                )),
            }
        }
    })
    .boxed()
}

fn origin_of(deployment: &Deployment) -> Option<SessionOrigin> {
    let labels = deployment.metadata.labels.as_ref()?;
    SessionOrigin::from_labels(|key| labels.get(key).map(String::as_str))
}
