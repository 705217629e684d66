//! Session reports from kube-runtime watchers on this agent's Deployments
//! and pods (one label selector, no polling), and the reflector stores
//! they fill.
//!
//! Every change to a session's Deployment or pods recomputes that session's
//! phase ([`crate::phase`]); a report is sent when it differs from the last
//! one sent. Reports start once both watchers have listed everything, so a
//! session is never judged on its Deployment without its pods. A Deployment
//! that disappears is `Terminated` if this platform deleted it and `Failed`
//! ("deleted outside StreamSpace") otherwise.
//!
//! The watchers' objects are kept in kube-runtime reflector [`Store`]s,
//! shared with the platform as a [`View`]: while a watch runs, `connect`
//! and `status` read them instead of asking the apiserver 20 times a second
//! per starting session. Each watch fills stores of its own, so one that
//! ends late cannot disturb the next one's. A watch lists once: kube's
//! watcher lists again only after an error, which ends the watch, and the
//! runtime subscribes again and sends a fresh inventory (which is what
//! finds sessions deleted in between).

use crate::Shared;
use crate::names::{agent_selector, deployment_name, session_of};
use crate::phase::SessionObjects;
use futures::FutureExt;
use futures::stream::{BoxStream, StreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::reflector::{self, Store, reflector};
use kube::runtime::watcher::{self, Event, watcher};
use std::collections::{BTreeSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, MutexGuard, PoisonError};
use streamspace_agent::reports::LastSent;
use streamspace_protocol::{SessionId, SessionReport, labels};

/// Distinguishes watch streams, so an old one cannot clear a newer one's
/// view.
static NEXT_WATCH: AtomicU64 = AtomicU64::new(1);

/// What the current watch has seen: its stores, read by session id.
#[derive(Clone)]
pub(crate) struct View {
    owner: u64,
    deployments: Store<Deployment>,
    pods: Store<Pod>,
}

impl View {
    /// Both watchers have listed everything once.
    fn synced(&self) -> bool {
        listed(&self.deployments) && listed(&self.pods)
    }

    /// A session's objects, if the view is complete and has its Deployment.
    pub(crate) fn session(&self, session_id: &SessionId) -> Option<SessionObjects> {
        if !self.synced() {
            return None;
        }
        let deployment = self
            .deployments
            .find(|d| session_label(d) == Some(session_id.as_str()))?;
        let mut pods = self
            .pods
            .state_filter(|p| session_label(p) == Some(session_id.as_str()));
        pods.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
        Some(SessionObjects {
            deployment: Deployment::clone(&deployment),
            pods: pods.iter().map(|pod| Pod::clone(pod)).collect(),
        })
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
    let (deployments_read, deployments_write) = reflector::store();
    let (pods_read, pods_write) = reflector::store();
    let deployments = watcher(shared.deployments.clone(), config.clone());
    let deployments = reflector(deployments_write, deployments)
        .map(|event| event.map(Change::Deployment))
        .boxed();
    let pods = reflector(pods_write, watcher(shared.pods.clone(), config))
        .map(|event| event.map(Change::Pod))
        .boxed();
    let events = futures::stream::select(deployments, pods);
    let state = Watch::new(shared, deployments_read, pods_read);
    futures::stream::unfold((events, state), |(mut events, mut state)| async move {
        loop {
            if let Some(report) = state.pending.pop_front() {
                return Some((report, (events, state)));
            }
            match events.next().await {
                Some(Ok(change)) => {
                    if let Err(ended) = state.apply(change) {
                        tracing::info!("{ended}");
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
    /// The stores this watch's reflectors fill (as `shared.view` holds
    /// them while this watch is the current one).
    view: View,
    /// Both watchers have listed everything, and every session was judged.
    synced: bool,
    sent: LastSent,
    pending: VecDeque<SessionReport>,
    /// Deployments deleted before both watchers had listed: reported once
    /// they have (a session is never judged on half a view), or the
    /// deletion would be lost.
    removed_early: BTreeSet<SessionId>,
}

impl Watch {
    fn new(shared: Arc<Shared>, deployments: Store<Deployment>, pods: Store<Pod>) -> Self {
        let view = View {
            owner: NEXT_WATCH.fetch_add(1, Ordering::Relaxed),
            deployments,
            pods,
        };
        *lock_view(&shared) = Some(view.clone());
        Watch {
            shared,
            view,
            synced: false,
            sent: LastSent::default(),
            pending: VecDeque::new(),
            removed_early: BTreeSet::new(),
        }
    }

    fn owns_view(&self) -> bool {
        lock_view(&self.shared)
            .as_ref()
            .is_some_and(|view| view.owner == self.view.owner)
    }

    /// Queues the reports one watcher event causes; its reflector has put
    /// it in the store already. An error says why this watch must end.
    fn apply(&mut self, change: Change) -> Result<(), &'static str> {
        if !self.owns_view() {
            return Err("a newer watch took over");
        }
        let mut touched = BTreeSet::new();
        let mut removed = None;
        match change {
            Change::Deployment(Event::Apply(d)) => touched.extend(session_of(&d.metadata.labels)),
            Change::Deployment(Event::Delete(d)) => removed = session_of(&d.metadata.labels),
            Change::Pod(Event::Apply(p) | Event::Delete(p)) => {
                touched.extend(session_of(&p.metadata.labels))
            }
            // Never with kube's watcher today (see the module's comment); a
            // new list would hide the Deployments deleted before it.
            Change::Deployment(Event::Init) | Change::Pod(Event::Init) if self.synced => {
                return Err("the watch started over: subscribing again");
            }
            Change::Deployment(Event::Init | Event::InitApply(_) | Event::InitDone)
            | Change::Pod(Event::Init | Event::InitApply(_) | Event::InitDone) => {}
        }
        if !self.view.synced() {
            self.removed_early.extend(removed);
            return Ok(());
        }
        if !self.synced {
            // Both lists are in: judge every session once.
            self.synced = true;
            touched.extend(sessions(&self.view.deployments));
            for session_id in std::mem::take(&mut self.removed_early) {
                if !touched.contains(&session_id) {
                    let report = self.removal_report(&session_id);
                    self.queue(report);
                }
            }
        }
        if let Some(session_id) = removed {
            touched.remove(&session_id);
            let report = self.removal_report(&session_id);
            self.queue(report);
        }
        for session_id in touched {
            if let Some(objects) = self.view.session(&session_id) {
                let report = self.shared.report(&session_id, &objects);
                self.queue(report);
            }
        }
        Ok(())
    }

    fn queue(&mut self, report: SessionReport) {
        if self.sent.is_news(&report) {
            self.pending.push_back(report);
        }
    }

    /// A deleted Deployment: our terminate, or somebody's `kubectl delete`.
    fn removal_report(&self, session_id: &SessionId) -> SessionReport {
        self.shared.intents.removal_report(session_id, || {
            format!(
                "deployment {} was deleted outside StreamSpace (for example with kubectl delete); \
                 the session is gone, its home volume claim (if any) is kept",
                deployment_name(session_id)
            )
        })
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let mut view = lock_view(&self.shared);
        if view
            .as_ref()
            .is_some_and(|view| view.owner == self.view.owner)
        {
            *view = None;
        }
    }
}

pub(crate) fn lock_view(shared: &Shared) -> MutexGuard<'_, Option<View>> {
    shared.view.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Whether a store's watcher has listed everything.
fn listed<K: kube::Resource<DynamicType = ()> + Clone + 'static>(store: &Store<K>) -> bool {
    matches!(store.wait_until_ready().now_or_never(), Some(Ok(())))
}

fn session_label<K: kube::Resource>(object: &K) -> Option<&str> {
    object
        .meta()
        .labels
        .as_ref()?
        .get(labels::SESSION_ID)
        .map(String::as_str)
}

fn sessions<K: kube::Resource<DynamicType = ()> + Clone + 'static>(
    store: &Store<K>,
) -> BTreeSet<SessionId> {
    store
        .state()
        .iter()
        .filter_map(|object| session_label(object.as_ref()).map(SessionId::from))
        .collect()
}
