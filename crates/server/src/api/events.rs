//! `GET /api/v1/events`: server-sent events for live views. Each event is the
//! full current view of what changed (`session` or `agent`), filtered to what
//! the viewer may see; `resync` means events were missed and the client
//! should reload its lists.

use super::agent_status;
use super::views::AgentView;
use crate::auth::CurrentUser;
use crate::events::Event;
use crate::state::AppState;
use axum::extract::State;
use axum::response::sse::{self, KeepAlive, Sse};
use futures::Stream;
use std::convert::Infallible;
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;

/// Live updates (server-sent events)
///
/// `event: session` carries a session, `event: agent` an agent (admins
/// only), `event: resync` (data `{}`) means events were missed and lists
/// should be reloaded. Each user receives only what they may see. A comment
/// line keeps the connection alive every 15 s.
#[utoipa::path(
    get,
    operation_id = "streamEvents",
    path = "/api/v1/events",
    tag = "events",
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 200, description = "An endless `text/event-stream`; each `data` is the JSON of a `Session` or an `Agent`",
            content_type = "text/event-stream", body = String),
    ),
)]
pub async fn stream(
    State(state): State<AppState>,
    user: CurrentUser,
) -> Sse<impl Stream<Item = Result<sse::Event, Infallible>>> {
    let mut events = state.events.subscribe();
    let shutdown = state.shutdown.clone();
    // Logout, a new password, demotion or deletion end the stream.
    let revoked = state.revocations.ended(&state, &user);
    let stream = async_stream(move |tx| async move {
        tokio::pin!(revoked);
        loop {
            let received = tokio::select! {
                r = events.recv() => r,
                _ = shutdown.cancelled() => return,
                _ = &mut revoked => return,
            };
            let out = match received {
                Ok(event) => render(&state, &user, event).await,
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
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

/// The event as this user may see it, or `None` if it is not theirs to see.
async fn render(state: &AppState, user: &CurrentUser, event: Event) -> Option<sse::Event> {
    match event {
        Event::Session { id, user_id } => {
            if !user.may_access(&user_id) {
                return None;
            }
            let session = state.store.get_session(&id).await.ok()??;
            let view = super::session_view(state, session).await.ok()?;
            sse::Event::default().event("session").json_data(view).ok()
        }
        Event::Agent { id } => {
            if !user.user.is_admin() {
                return None;
            }
            let agent = state.store.get_agent(&id).await.ok()??;
            let count = state.store.agent_load(&agent.id).await.ok()?.sessions;
            let agent = super::agents::with_latest_beat(state, agent);
            let view = AgentView::new(agent_status(state, &agent), agent, count);
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
