//! `GET /api/v1/events`: server-sent events for live views. Each event is the
//! full current view of what changed (`session` or `agent`), filtered to what
//! the viewer may see; `resync` means events were missed and the client
//! should reload its lists.

use super::views::AgentView;
use crate::auth::CurrentUser;
use crate::auth::revoke;
use crate::changes::Change;
use crate::error::{ApiResult, ErrorBody};
use crate::presence::status as agent_status;
use crate::state::AppState;
use axum::extract::State;
use axum::http::HeaderName;
use axum::response::IntoResponse;
use axum::response::sse::{self, Sse};
use futures::Stream;
use std::convert::Infallible;
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;
use tokio::time::MissedTickBehavior;

/// How often the stream sends `event: ping`. Clients take a stream that has
/// been silent for about two intervals as broken (a proxy buffering it, a
/// dead connection) and poll instead; idle proxies see traffic well within
/// their timeouts (nginx: 60 s).
const PING_INTERVAL: Duration = Duration::from_secs(15);

/// Live updates (server-sent events)
///
/// `event: session` carries a session, `event: agent` an agent (admins
/// only), `event: resync` (data `{}`) means events were missed and lists
/// should be reloaded. Each user receives only what they may see.
///
/// `event: ping` (data `{"interval_ms":15000}`) comes first, as soon as the
/// stream opens, then every `interval_ms`. A client that sees no event for
/// about two intervals should treat the stream as broken: a proxy may be
/// buffering it (the response asks proxies not to, with
/// `Cache-Control: no-cache` and `X-Accel-Buffering: no`), or the connection
/// died silently.
#[utoipa::path(
    get,
    operation_id = "streamEvents",
    path = "/api/v1/events",
    tag = "events",
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 200, description = "An endless `text/event-stream`; each `data` is the JSON of a `Session` or an `Agent`, or `{}` (`resync`), or `{\"interval_ms\":15000}` (`ping`)",
            content_type = "text/event-stream", body = String,
            headers(("x-accel-buffering" = String, description = "`no`: nginx passes the stream on unbuffered"))),
        (status = 429, description = "You have too many event, log and VNC streams open; `Retry-After` says when to try again", body = ErrorBody,
            headers(("retry-after" = u64, description = "Seconds to wait"))),
    ),
)]
pub async fn stream(
    State(state): State<AppState>,
    user: CurrentUser,
) -> ApiResult<impl IntoResponse> {
    let permit = state.streams.acquire(&user.user.id)?;
    let mut changes = state.changes.subscribe();
    // Ends when this replica drains: the browser's EventSource reconnects
    // by itself, through the load balancer, to another replica.
    let shutdown = state.draining.clone();
    // Logout, a new password, demotion or deletion end the stream.
    let revoked = revoke::ended(&state, &user);
    let stream = async_stream(move |tx| async move {
        let _permit = permit;
        tokio::pin!(revoked);
        // The first tick is immediate: the client learns at once that events
        // get through. A slow client gets one ping late, not a burst.
        let mut ping = tokio::time::interval(PING_INTERVAL);
        ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            let received = tokio::select! {
                r = changes.recv() => r,
                _ = ping.tick() => {
                    if tx.send(ping_event()).await.is_err() {
                        return;
                    }
                    continue;
                }
                _ = shutdown.cancelled() => return,
                _ = &mut revoked => return,
                // The client left: give its place back now, not at the
                // next ping.
                _ = tx.closed() => return,
            };
            let out = match received {
                Ok(change) => render(&state, &user, change).await,
                Err(RecvError::Lagged(_)) => Some(sse::Event::default().event("resync").data("{}")),
                Err(RecvError::Closed) => return,
            };
            if let Some(out) = out
                && tx.send(out).await.is_err()
            {
                return;
            }
        }
    });
    // nginx buffers proxied responses unless the upstream says otherwise;
    // buffered, a session's `Running` would never reach the viewer.
    Ok((
        [(HeaderName::from_static("x-accel-buffering"), "no")],
        Sse::new(stream),
    ))
}

/// `event: ping`, carrying the interval so clients derive their silence
/// deadline from it.
fn ping_event() -> sse::Event {
    let interval_ms = PING_INTERVAL.as_millis();
    sse::Event::default()
        .event("ping")
        .data(format!("{{\"interval_ms\":{interval_ms}}}"))
}

/// The change as this user may see it, or `None` if it is not theirs to see.
async fn render(state: &AppState, user: &CurrentUser, change: Change) -> Option<sse::Event> {
    match change {
        Change::Session { id, user_id } => {
            if !user.may_access(&user_id) {
                return None;
            }
            let session = state.store.get_session(&id).await.ok()??;
            let view = super::session_view(state, session).await.ok()?;
            sse::Event::default().event("session").json_data(view).ok()
        }
        Change::Agent { id } => {
            if !user.user.is_admin() {
                return None;
            }
            let agent = state.store.get_agent(&id).await.ok()??;
            let load = state.store.agent_load(&agent.id).await.ok()?;
            let agent = crate::presence::with_latest_beat(state, agent);
            let view = AgentView::new(agent_status(state, &agent), agent, load);
            sse::Event::default().event("agent").json_data(view).ok()
        }
    }
}

/// A stream fed by a task through a small channel; the task ends when the
/// client goes away.
fn async_stream<F, Fut>(producer: F) -> impl Stream<Item = Result<sse::Event, Infallible>>
where
    F: FnOnce(tokio::sync::mpsc::Sender<sse::Event>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    tokio::spawn(producer(tx));
    futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|event| (Ok(event), rx))
    })
}
