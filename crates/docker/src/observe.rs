//! Observing sessions as they really are on the engine: status, inventory,
//! a connection to a session's port, capacity and load.

use crate::Shared;
use crate::container::{container_address, container_name, label_of, published_port};
use crate::error::is_not_found;
use crate::host::HostLoad;
use crate::phase::{log_tail, observe, with_log_tail};
use bollard::models::{ContainerInspectResponse, ContainerSummaryStateEnum};
use bollard::query_parameters::{ListContainersOptionsBuilder, LogsOptionsBuilder};
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;
use streamspace_agent::{OrNotFound, PlatformError, PlatformResult, SessionStream};
use streamspace_protocol::{
    Capacity, Cpu, Memory, NodeMetrics, Phase, SessionId, SessionOrigin, SessionReport, labels,
};

/// Log lines attached to a failure, and the longest line kept.
const LOG_LINES: usize = 5;
const LOG_LINE_CHARS: usize = 300;
/// Bounds on reading logs and dialing a session, so a stuck engine or host
/// cannot stall a status report or a tunnel.
const LOG_TIMEOUT: Duration = Duration::from_secs(5);
const DIAL_TIMEOUT: Duration = Duration::from_secs(10);

impl Shared {
    /// The container of a session this agent owns, if there is one.
    pub(crate) async fn inspect_owned(
        &self,
        session_id: &SessionId,
    ) -> PlatformResult<Option<ContainerInspectResponse>> {
        let container = self.inspect_by_name(&container_name(session_id)).await?;
        Ok(container.filter(|c| self.owner_of(c) == Some(self.agent_id.as_str())))
    }

    /// A container by name or id, whoever owns it.
    pub(crate) async fn inspect_by_name(
        &self,
        name: &str,
    ) -> PlatformResult<Option<ContainerInspectResponse>> {
        match self.docker.inspect_container(name, None).await {
            Ok(container) => Ok(Some(container)),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(self.error(format!("inspect container {name}"), e)),
        }
    }

    fn owner_of<'a>(&self, container: &'a ContainerInspectResponse) -> Option<&'a str> {
        let config_labels = container.config.as_ref()?.labels.as_ref();
        label_of(config_labels, labels::AGENT)
    }

    /// Refuses to adopt a container of our name that this agent did not
    /// create (another agent's, or somebody's own).
    pub(crate) fn check_owner(
        &self,
        name: &str,
        container: &ContainerInspectResponse,
    ) -> PlatformResult<()> {
        match self.owner_of(container) {
            Some(owner) if self.agent_id == owner => Ok(()),
            Some(owner) => Err(PlatformError::Invalid(format!(
                "container {name} already exists on docker host {} and belongs to agent {owner:?}",
                self.engine_host
            ))),
            None => Err(PlatformError::Invalid(format!(
                "a container named {name} already exists on docker host {} and was not created by StreamSpace: remove or rename it",
                self.engine_host
            ))),
        }
    }

    /// The report for a session whose container is `container`, with the
    /// container's last log lines when it failed.
    pub(crate) async fn report(
        &self,
        session_id: &SessionId,
        container: &ContainerInspectResponse,
    ) -> SessionReport {
        let state = container.state.clone().unwrap_or_default();
        let observed = observe(&state, self.intents.get(session_id));
        let mut report = SessionReport::new(session_id, observed.phase);
        report.message = match (observed.message, observed.wants_logs) {
            (Some(message), true) => {
                let id = container.id.as_deref().unwrap_or(session_id.as_str());
                Some(with_log_tail(&message, &self.log_tail(id).await))
            }
            (message, _) => message,
        };
        report
    }

    async fn log_tail(&self, container: &str) -> Vec<String> {
        let options = LogsOptionsBuilder::new()
            .stdout(true)
            .stderr(true)
            .tail(&LOG_LINES.to_string())
            .build();
        let collect = self
            .docker
            .logs(container, Some(options))
            .take_while(|chunk| futures::future::ready(chunk.is_ok()))
            .fold(String::new(), |mut text, chunk| async move {
                if let Ok(chunk) = chunk {
                    text.push_str(&String::from_utf8_lossy(&chunk.into_bytes()));
                }
                text
            });
        match tokio::time::timeout(LOG_TIMEOUT, collect).await {
            Ok(text) => log_tail(&text, LOG_LINES, LOG_LINE_CHARS),
            Err(_) => Vec::new(),
        }
    }

    #[tracing::instrument(skip(self), fields(agent_id = %self.agent_id))]
    pub(crate) async fn status(&self, session_id: &SessionId) -> PlatformResult<SessionReport> {
        let container = self
            .inspect_owned(session_id)
            .await
            .or_not_found(session_id)?;
        Ok(self.report(session_id, &container).await)
    }

    /// Every session container labelled with this agent's id, sorted by
    /// session id.
    #[tracing::instrument(skip(self), fields(agent_id = %self.agent_id))]
    pub(crate) async fn inventory(&self) -> PlatformResult<Vec<SessionReport>> {
        let summaries = self.list_own(true).await?;
        let mut reports = Vec::with_capacity(summaries.len());
        for summary in summaries {
            let Some(label) = label_of(summary.labels.as_ref(), labels::SESSION_ID) else {
                continue;
            };
            let session_id = SessionId::from(label);
            let report = if summary.state == Some(ContainerSummaryStateEnum::RUNNING) {
                SessionReport::new(&session_id, Phase::Running)
            } else {
                // Stopped containers need the full state (exit code, OOM) to
                // tell hibernation from failure.
                let id = summary.id.as_deref().unwrap_or_default();
                match self.inspect_by_name(id).await? {
                    Some(container) => self.report(&session_id, &container).await,
                    None => continue,
                }
            };
            let labels = summary.labels.as_ref();
            reports.push(
                match SessionOrigin::from_labels(|key| label_of(labels, key)) {
                    Some(origin) => report.with_origin(origin),
                    None => report,
                },
            );
        }
        reports.sort_by(|a, b| a.session_id.cmp(&b.session_id));
        Ok(reports)
    }

    pub(crate) async fn list_own(
        &self,
        all: bool,
    ) -> PlatformResult<Vec<bollard::models::ContainerSummary>> {
        let filters = HashMap::from([(
            "label",
            vec![format!("{}={}", labels::AGENT, self.agent_id)],
        )]);
        let options = ListContainersOptionsBuilder::new()
            .all(all)
            .filters(&filters)
            .build();
        self.docker
            .list_containers(Some(options))
            .await
            .map_err(|e| self.error("list containers", e))
    }

    /// The session container's stdout and stderr, interleaved as written.
    #[tracing::instrument(skip(self), fields(agent_id = %self.agent_id))]
    pub(crate) async fn logs(
        &self,
        session_id: &SessionId,
        tail: Option<u32>,
        follow: bool,
    ) -> PlatformResult<BoxStream<'static, PlatformResult<Bytes>>> {
        let container = self
            .inspect_owned(session_id)
            .await
            .or_not_found(session_id)?;
        let id = container.id.unwrap_or_else(|| container_name(session_id));
        let tail = tail.map_or_else(|| "all".to_owned(), |n| n.to_string());
        let options = LogsOptionsBuilder::new()
            .stdout(true)
            .stderr(true)
            .follow(follow)
            .tail(&tail)
            .build();
        let endpoint = self.endpoint.clone();
        let stream = self.docker.logs(&id, Some(options)).map(move |chunk| {
            chunk.map(|c| c.into_bytes()).map_err(|e| {
                PlatformError::Unavailable(format!("reading logs from {endpoint}: {e}"))
            })
        });
        Ok(stream.boxed())
    }

    /// A TCP connection to `port` of a running session: at the container's
    /// address when this agent can reach it, else through the host port
    /// Docker published it on.
    #[tracing::instrument(skip(self), fields(agent_id = %self.agent_id))]
    pub(crate) async fn dial(
        &self,
        session_id: &SessionId,
        port: u16,
    ) -> PlatformResult<Box<dyn SessionStream>> {
        let container = self
            .inspect_owned(session_id)
            .await
            .or_not_found(session_id)?;
        let state = container.state.clone().unwrap_or_default();
        let phase = observe(&state, self.intents.get(session_id)).phase;
        if phase != Phase::Running {
            return Err(PlatformError::Invalid(format!(
                "session {session_id} is not running (phase {phase})"
            )));
        }
        let host = self.options.publish_host;
        // Only ports the template lists are reachable, whichever the route.
        let host_port = published_port(&container, port, host).ok_or_else(|| {
            PlatformError::Invalid(format!(
                "port {port} of session {session_id} is not published: its template does not list it"
            ))
        })?;
        // Containers from before the sessions network are on another one.
        let direct = container_address(&container, Some(&self.options.network))
            .or_else(|| container_address(&container, None))
            .map(|ip| SocketAddr::new(ip, port));
        let published = SocketAddr::new(host, host_port);
        let unreachable = |cause: String| {
            PlatformError::Unavailable(format!(
                "cannot connect to port {port} of session {session_id}: {cause}"
            ))
        };
        let stream = self
            .router
            .connect(direct, published, DIAL_TIMEOUT)
            .await
            .map_err(unreachable)?;
        // VNC is chatty with small messages; Nagle would add latency to each.
        stream
            .set_nodelay(true)
            .map_err(|e| unreachable(e.to_string()))?;
        tracing::debug!(peer = ?stream.peer_addr().ok(), "connected to session port");
        Ok(Box::new(stream))
    }

    pub(crate) async fn capacity(&self) -> PlatformResult<Capacity> {
        let info = self
            .docker
            .info()
            .await
            .map_err(|e| self.error("describe itself (docker info)", e))?;
        let positive = |n: Option<i64>| n.and_then(|n| u64::try_from(n).ok()).filter(|&n| n > 0);
        Ok(Capacity {
            max_sessions: self.options.max_sessions,
            cpu: positive(info.ncpu).map(|n| {
                Cpu(n
                    .saturating_mul(1000)
                    .saturating_mul(u64::from(self.options.cpu_overcommit.max(1))))
            }),
            memory: positive(info.mem_total).map(Memory),
            gpus: self.gpus.count,
            gpu_model: (self.gpus.count > 0)
                .then(|| self.gpus.model.clone())
                .flatten(),
        })
    }

    pub(crate) async fn metrics(&self, host: &HostLoad) -> PlatformResult<NodeMetrics> {
        let running = self.list_own(false).await?.len();
        let capacity = self.capacity().await?;
        let memory = host.memory();
        Ok(NodeMetrics {
            sessions_running: u32::try_from(running).unwrap_or(u32::MAX),
            cpu_percent: host.cpu_percent().await,
            memory_used_bytes: memory.map_or(0, |(used, _)| used),
            memory_total_bytes: capacity
                .memory
                .map(Memory::bytes)
                .or(memory.map(|(_, total)| total))
                .unwrap_or(0),
        })
    }
}
