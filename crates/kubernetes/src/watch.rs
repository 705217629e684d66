//! Session reports from kube-runtime watchers on this agent's Deployments
//! and pods (one label selector, no polling), and the cache they fill.
//!
//! Every change to a session's Deployment or pods recomputes that session's
//! phase ([`crate::phase`]); a report is sent when it differs from the last
//! one sent. Reports start once both watchers have listed everything, so a
//! session is never judged on its Deployment without its pods. A Deployment
//! that disappears is `Terminated` if this platform deleted it and `Failed`
//! ("deleted outside StreamSpace") otherwise.
//!
//! The same objects are kept in [`View`], shared with the platform: while a
//! watch runs, `connect` and `status` read the cache instead of asking the
//! apiserver 20 times a second per starting session.

use crate::Shared;
use crate::intent::Intent;
use crate::names::{agent_selector, deployment_name};
use crate::observe::{SessionObjects, session_of};
use futures::stream::{BoxStream, StreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::watcher::{self, Event, watcher};
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, MutexGuard, PoisonError};
use streamspace_protocol::{Phase, SessionId, SessionReport};

/// Distinguishes watch streams, so an old one cannot clear a newer one's
/// cache.
static NEXT_WATCH: AtomicU64 = AtomicU64::new(1);

/// What the current watch has seen, by session id.
#[derive(Debug, Default)]
pub(crate) struct View {
    owner: u64,
    deployments_synced: bool,
    pods_synced: bool,
    deployments: HashMap<SessionId, Deployment>,
    pods: HashMap<SessionId, BTreeMap<String, Pod>>,
}

impl View {
    fn synced(&self) -> bool {
        self.deployments_synced && self.pods_synced
    }

    /// A session's objects, if the view is complete and has its Deployment.
    pub(crate) fn session(&self, session_id: &SessionId) -> Option<SessionObjects> {
        if !self.synced() {
            return None;
        }
        let deployment = self.deployments.get(session_id)?.clone();
        let pods = self
            .pods
            .get(session_id)
            .map(|pods| pods.values().cloned().collect())
            .unwrap_or_default();
        Some(SessionObjects { deployment, pods })
    }
}

enum Change {
    Deployment(Event<Deployment>),
    Pod(Event<Pod>),
}

/// Reports for this agent's sessions until a watcher fails; the runtime
/// then subscribes again (and sends a fresh inventory).
pub(crate) fn watch(shared: Arc<Shared>) -> BoxStream<'static, SessionReport> {
    let config = watcher::Config::default().labels(&agent_selector(&shared.agent_id));
    let deployments = watcher(shared.deployments.clone(), config.clone())
        .map(|event| event.map(Change::Deployment))
        .boxed();
    let pods = watcher(shared.pods.clone(), config)
        .map(|event| event.map(Change::Pod))
        .boxed();
    let events = futures::stream::select(deployments, pods);
    let state = Watch::new(shared);
    futures::stream::unfold((events, state), |(mut events, mut state)| async move {
        loop {
            if let Some(report) = state.pending.pop_front() {
                return Some((report, (events, state)));
            }
            match events.next().await {
                Some(Ok(change)) => {
                    if !state.apply(change) {
                        tracing::info!("a newer watch took over");
                        return None;
                    }
                }
                Some(Err(e)) => {
                    tracing::warn!(agent_id = %state.shared.agent_id, error = %e, "Kubernetes watch failed");
                    return None;
                }
                None => return None,
            }
        }
    })
    .boxed()
}

struct Watch {
    shared: Arc<Shared>,
    id: u64,
    /// Objects listed since the watcher's last `Init`, until `InitDone`.
    deployment_buffer: Vec<Deployment>,
    pod_buffer: Vec<Pod>,
    /// The last report sent per session.
    sent: HashMap<SessionId, SessionReport>,
    pending: VecDeque<SessionReport>,
}

impl Watch {
    fn new(shared: Arc<Shared>) -> Self {
        let id = NEXT_WATCH.fetch_add(1, Ordering::Relaxed);
        *lock_view(&shared) = View {
            owner: id,
            ..View::default()
        };
        Watch {
            shared,
            id,
            deployment_buffer: Vec::new(),
            pod_buffer: Vec::new(),
            sent: HashMap::new(),
            pending: VecDeque::new(),
        }
    }

    /// Applies one watcher event to the view and queues the reports it
    /// causes. `false` if another watch owns the view now.
    fn apply(&mut self, change: Change) -> bool {
        let shared = Arc::clone(&self.shared);
        let mut view = lock_view(&shared);
        if view.owner != self.id {
            return false;
        }
        let was_synced = view.synced();
        let mut touched = BTreeSet::new();
        let mut removed = BTreeSet::new();
        match change {
            Change::Deployment(event) => match event {
                Event::Init => self.deployment_buffer.clear(),
                Event::InitApply(d) => self.deployment_buffer.push(d),
                Event::InitDone => {
                    let listed = by_session(std::mem::take(&mut self.deployment_buffer));
                    removed.extend(
                        view.deployments
                            .keys()
                            .filter(|s| !listed.contains_key(*s))
                            .cloned(),
                    );
                    touched.extend(listed.keys().cloned());
                    view.deployments = listed;
                    view.deployments_synced = true;
                }
                Event::Apply(d) => {
                    if let Some(session_id) = session_of(&d.metadata.labels) {
                        touched.insert(session_id.clone());
                        view.deployments.insert(session_id, d);
                    }
                }
                Event::Delete(d) => {
                    if let Some(session_id) = session_of(&d.metadata.labels) {
                        view.deployments.remove(&session_id);
                        removed.insert(session_id);
                    }
                }
            },
            Change::Pod(event) => match event {
                Event::Init => self.pod_buffer.clear(),
                Event::InitApply(p) => self.pod_buffer.push(p),
                Event::InitDone => {
                    let mut listed: HashMap<SessionId, BTreeMap<String, Pod>> = HashMap::new();
                    for pod in std::mem::take(&mut self.pod_buffer) {
                        if let Some(session_id) = session_of(&pod.metadata.labels) {
                            let name = pod.metadata.name.clone().unwrap_or_default();
                            listed.entry(session_id).or_default().insert(name, pod);
                        }
                    }
                    touched.extend(view.pods.keys().cloned());
                    touched.extend(listed.keys().cloned());
                    view.pods = listed;
                    view.pods_synced = true;
                }
                Event::Apply(p) => {
                    if let Some(session_id) = session_of(&p.metadata.labels) {
                        let name = p.metadata.name.clone().unwrap_or_default();
                        let pods = view.pods.entry(session_id.clone()).or_default();
                        pods.insert(name, p);
                        touched.insert(session_id);
                    }
                }
                Event::Delete(p) => {
                    if let Some(session_id) = session_of(&p.metadata.labels) {
                        let name = p.metadata.name.clone().unwrap_or_default();
                        if let Some(pods) = view.pods.get_mut(&session_id) {
                            pods.remove(&name);
                            if pods.is_empty() {
                                view.pods.remove(&session_id);
                            }
                        }
                        touched.insert(session_id);
                    }
                }
            },
        }
        if !view.synced() {
            return true;
        }
        if !was_synced {
            // Both lists are in: judge every session once.
            touched.extend(view.deployments.keys().cloned());
        }
        for session_id in removed {
            touched.remove(&session_id);
            let report = self.removal_report(&session_id);
            self.queue(report);
        }
        for session_id in touched {
            if let Some(objects) = view.session(&session_id) {
                let report = self.shared.report(&session_id, &objects);
                self.queue(report);
            }
        }
        true
    }

    fn queue(&mut self, report: SessionReport) {
        if self.sent.get(&report.session_id) == Some(&report) {
            return;
        }
        if report.phase.is_final() {
            self.sent.remove(&report.session_id);
        } else {
            self.sent.insert(report.session_id.clone(), report.clone());
        }
        self.pending.push_back(report);
    }

    /// A deleted Deployment: our terminate, or somebody's `kubectl delete`.
    fn removal_report(&self, session_id: &SessionId) -> SessionReport {
        if self.shared.intents.get(session_id) == Some(Intent::Terminate) {
            return SessionReport::new(session_id, Phase::Terminated);
        }
        tracing::warn!(%session_id, "session deployment deleted outside StreamSpace");
        SessionReport::new(session_id, Phase::Failed).with_message(format!(
            "deployment {} was deleted outside StreamSpace (for example with kubectl delete); \
             the session is gone, its home volume claim (if any) is kept",
            deployment_name(session_id)
        ))
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let mut view = lock_view(&self.shared);
        if view.owner == self.id {
            *view = View::default();
        }
    }
}

fn lock_view(shared: &Shared) -> MutexGuard<'_, View> {
    shared.view.lock().unwrap_or_else(PoisonError::into_inner)
}

fn by_session(deployments: Vec<Deployment>) -> HashMap<SessionId, Deployment> {
    deployments
        .into_iter()
        .filter_map(|d| Some((session_of(&d.metadata.labels)?, d)))
        .collect()
}
