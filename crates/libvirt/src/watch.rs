//! Session reports from libvirt's lifecycle events (events.rs): domains
//! that start, stop, crash, are saved or undefined, whoever caused it.
//! Each event is only a cue: the report comes from the domain's state as
//! it is then, read the same way as `status`.

use crate::Shared;
use crate::domain::DOMAIN_PREFIX;
use crate::events::{DomainEvent, Subscription};
use futures::stream::{BoxStream, StreamExt};
use std::collections::HashSet;
use std::sync::Arc;
use streamspace_agent::reports::LastSent;
use streamspace_protocol::{Phase, SessionId, SessionReport};
use virt_sys as sys;

/// Reports for this agent's domains until the event connection breaks.
pub(crate) fn watch(shared: Arc<Shared>) -> BoxStream<'static, SessionReport> {
    let uri = shared.hypervisor.uri().to_owned();
    // Subscribed now, not when the stream is first polled, so that what
    // happens right after `watch()` is seen.
    let subscribing = tokio::task::spawn_blocking(move || Subscription::open(&uri));
    let opened = async move {
        match subscribing.await {
            Ok(Ok(subscription)) => Some(subscription),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "cannot subscribe to libvirt's domain events");
                None
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot subscribe to libvirt's domain events");
                None
            }
        }
    };
    futures::stream::once(opened)
        .filter_map(|subscription| async move { subscription })
        .flat_map(move |subscription| reports(Arc::clone(&shared), subscription))
        .boxed()
}

struct Watcher {
    shared: Arc<Shared>,
    subscription: Subscription,
    sent: LastSent,
    /// Sessions whose domain was seen to be ours: an undefined domain can
    /// no longer be asked whose it was.
    ours: HashSet<SessionId>,
}

fn reports(shared: Arc<Shared>, subscription: Subscription) -> BoxStream<'static, SessionReport> {
    let watcher = Watcher {
        shared,
        subscription,
        sent: LastSent::default(),
        ours: HashSet::new(),
    };
    futures::stream::unfold(watcher, |mut watcher| async move {
        if watcher.ours.is_empty() {
            // Domains that exist now, so their undefinition is recognised.
            if let Ok(own) = watcher.shared.list_own(false).await {
                watcher
                    .ours
                    .extend(own.iter().filter_map(|f| f.metadata.as_ref()?.session_id()));
            }
        }
        loop {
            let Some(event) = watcher.subscription.next().await else {
                tracing::info!(agent_id = %watcher.shared.agent_id, "libvirt event stream ended");
                return None;
            };
            let Some(report) = watcher.report_for(&event).await else {
                continue;
            };
            if !watcher.sent.is_news(&report) {
                continue;
            }
            if report.phase == Phase::Failed {
                // As on Docker: the next event after a failure is sent even
                // when it says the same.
                watcher.sent.forget(&report.session_id);
            }
            return Some((report, watcher));
        }
    })
    .boxed()
}

impl Watcher {
    async fn report_for(&mut self, event: &DomainEvent) -> Option<SessionReport> {
        let DomainEvent::Lifecycle {
            domain,
            event,
            detail,
        } = event
        else {
            return None;
        };
        let session_id = SessionId::from(domain.strip_prefix(DOMAIN_PREFIX)?);
        let span = tracing::info_span!("libvirt_event", %session_id, event, detail);
        let _entered = span.enter();
        if u32::try_from(*event).ok() == Some(sys::VIR_DOMAIN_EVENT_UNDEFINED) {
            if !self.ours.remove(&session_id) {
                return None;
            }
            let shared = &self.shared;
            return Some(shared.intents.removal_report(&session_id, || {
                format!(
                    "the virtual machine {domain} was undefined outside StreamSpace (for example \
                     with `virsh undefine`); the session is gone, its home disk (if any) is kept"
                )
            }));
        }
        match self.shared.inspect(&session_id).await {
            Ok(Some(found)) if self.shared.is_ours(&found) => {
                self.ours.insert(session_id.clone());
                Some(self.shared.report(&session_id, &found))
            }
            // Not ours, or undefined meanwhile (its event follows).
            Ok(_) => None,
            Err(e) => {
                tracing::warn!(error = %e, "cannot inspect domain after event");
                None
            }
        }
    }
}
