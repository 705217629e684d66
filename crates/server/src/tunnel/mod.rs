//! VNC tunnels: a viewer's WebSocket on `/vnc/{id}` spliced to a fresh data
//! channel that the session's agent dials back for this one tunnel.
//!
//! The broker (`broker.rs`, held by the application state) pairs the two:
//! the viewer side registers a pending tunnel and asks the agent (over the
//! control channel) to open it; the agent's data connection claims it by
//! id. Each tunnel is its own TCP connection end to end, so one slow viewer
//! never stalls another. With several replicas, a data channel that lands
//! on another replica than the waiting one is relayed to it (`forward.rs`
//! there, `internal.rs` here).

pub(crate) mod access;
pub(crate) mod activity;
pub(crate) mod agent_side;
pub(crate) mod audio;
pub(crate) mod broker;
pub(crate) mod file_channel;
pub(crate) mod forward;
pub(crate) mod guests;
pub(crate) mod handoff;
pub(crate) mod internal;
pub(crate) mod logs;
pub(crate) mod opener;
mod relay;
pub(crate) mod rfb_input;
pub(crate) mod share_ends;
pub(crate) mod viewer;
pub(crate) mod waiting_replica;
mod websocket;

pub use logs::logs;
pub(crate) use viewer::wake_if_needed;

use crate::error::ApiResult;
use crate::state::AppState;
use hyper::upgrade::Upgraded;
use opener::TunnelOpener;
use streamspace_protocol::{AgentId, ServerMessage, TunnelId};

/// Asks the agent to open a data channel (the message `ask` builds for the
/// new tunnel id) and waits for it, within the configured time limit.
pub async fn open_data_channel(
    state: &AppState,
    agent_id: &AgentId,
    ask: impl FnOnce(TunnelId) -> ServerMessage,
) -> ApiResult<Upgraded> {
    opener(state).open(agent_id, ask).await
}

/// The agent could not open `tunnel_id`: the viewer waiting for it (here,
/// or on the replica the id names) hears why at once.
pub fn tunnel_failed(state: &AppState, tunnel_id: TunnelId, agent_id: &AgentId, error: String) {
    if state.tunnels.is_local(&tunnel_id) {
        state.tunnels.fail(&tunnel_id, agent_id, error);
        return;
    }
    // Not on the agent's control loop: the other replica may be slow.
    let (state, agent_id) = (state.clone(), agent_id.clone());
    tokio::spawn(async move {
        let reported = waiting_replica::report_failure(&state, &tunnel_id, &agent_id, &error);
        if let Err(err) = reported.await {
            tracing::debug!(%tunnel_id, error = %err, "cannot pass on a tunnel's failure");
        }
    });
}

/// What opens data channels and sends other requests to agents, for this
/// replica's state.
pub fn opener(state: &AppState) -> TunnelOpener {
    TunnelOpener {
        hub: state.hub.clone(),
        broker: state.tunnels.clone(),
        limit: state.config.tunnel_timeout,
        bus: state.bus.clone(),
        store: state.store.clone(),
    }
}
