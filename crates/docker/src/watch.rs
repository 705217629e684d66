//! Session reports from Docker's event stream: containers that start, die,
//! stop, run out of memory or are removed, whoever caused it.

use crate::Shared;
use crate::container::{container_name, label_of};
use bollard::models::EventMessage;
use bollard::query_parameters::EventsOptionsBuilder;
use futures::stream::{BoxStream, StreamExt};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};
use streamspace_agent::reports::LastSent;
use streamspace_protocol::{Phase, SessionId, SessionReport, labels};

/// The container events that can change a session's phase.
const EVENTS: [&str; 5] = ["start", "die", "stop", "oom", "destroy"];

/// Reports for this agent's containers until the event stream breaks.
pub(crate) fn watch(shared: Arc<Shared>) -> BoxStream<'static, SessionReport> {
    let filters = HashMap::from([
        ("type", vec!["container".to_owned()]),
        (
            "label",
            vec![format!("{}={}", labels::AGENT, shared.agent_id)],
        ),
        ("event", EVENTS.map(str::to_owned).to_vec()),
    ]);
    // Events are asked for from now, not from when the stream is first
    // polled and its request reaches the engine: the engine replays what
    // happened in between, so nothing done right after `watch()` is lost.
    let options = EventsOptionsBuilder::new()
        .since(&unix_timestamp(SystemTime::now()))
        .filters(&filters)
        .build();
    let events = shared.docker.events(Some(options)).boxed();
    // One stop yields `die` and `stop`; the second must not repeat the first.
    let sent = LastSent::default();
    futures::stream::unfold(
        (events, shared, sent),
        |(mut events, shared, mut sent)| async move {
            loop {
                let event = match events.next().await {
                    Some(Ok(event)) => event,
                    Some(Err(e)) => {
                        tracing::warn!(agent_id = %shared.agent_id, error = %e, "Docker event stream broke");
                        return None;
                    }
                    None => {
                        tracing::info!(agent_id = %shared.agent_id, "Docker event stream ended");
                        return None;
                    }
                };
                let Some(report) = shared.report_for_event(&event).await else {
                    continue;
                };
                if !sent.is_news(&report) {
                    continue;
                }
                if report.phase == Phase::Failed {
                    // Docker forgets a failure once sent (Kubernetes does
                    // not: a failing pod repeats it with every status
                    // update), so the event after it (`die` after `oom`)
                    // is sent even when it says the same.
                    sent.forget(&report.session_id);
                }
                return Some((report, (events, shared, sent)));
            }
        },
    )
    .boxed()
}

impl Shared {
    async fn report_for_event(&self, event: &EventMessage) -> Option<SessionReport> {
        let actor = event.actor.as_ref()?;
        let session_id = SessionId::from(label_of(actor.attributes.as_ref(), labels::SESSION_ID)?);
        let action = event.action.as_deref().unwrap_or_default();
        let span = tracing::info_span!("docker_event", %session_id, action);
        let _entered = span.enter();
        if action == "destroy" {
            return Some(self.removal_report(&session_id));
        }
        let id = actor.id.as_deref()?;
        match self.inspect_by_name(id).await {
            Ok(Some(container)) => Some(self.report(&session_id, &container).await),
            // Removed meanwhile: its `destroy` event follows.
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(error = %e, "cannot inspect container after event");
                None
            }
        }
    }

    /// A removed container: our terminate, or somebody else's `docker rm`.
    fn removal_report(&self, session_id: &SessionId) -> SessionReport {
        self.intents.removal_report(session_id, || format!(
            "container {} was removed outside StreamSpace (for example with `docker rm`); the session is gone, its home volume (if any) is kept",
            container_name(session_id)
        ))
    }
}

/// Docker's `seconds.nanoseconds` timestamp form.
fn unix_timestamp(at: SystemTime) -> String {
    let since_epoch = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    format!(
        "{}.{:09}",
        since_epoch.as_secs(),
        since_epoch.subsec_nanos()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn timestamps_have_nanoseconds() {
        let at = UNIX_EPOCH + Duration::new(1_700_000_000, 42);
        assert_eq!(unix_timestamp(at), "1700000000.000000042");
    }
}
