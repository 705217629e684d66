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
pub(crate) mod internal;
pub(crate) mod logs;
pub(crate) mod opener;
mod relay;
pub(crate) mod rfb_input;
pub(crate) mod share_ends;
pub(crate) mod viewer;
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
