//! VNC tunnels: a viewer's WebSocket on `/vnc/{id}` spliced to a fresh data
//! channel that the session's agent dials back for this one tunnel.
//!
//! The broker (`broker.rs`, held by the application state) pairs the two:
//! the viewer side registers a pending tunnel and asks the agent (over the
//! control channel) to open it; the agent's data connection claims it by
//! id. Each tunnel is its own TCP connection end to end, so one slow viewer
//! never stalls another.

pub(crate) mod access;
pub(crate) mod activity;
pub(crate) mod agent_side;
pub(crate) mod broker;
pub(crate) mod logs;
pub(crate) mod opener;
mod relay;
pub(crate) mod rfb_input;
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
    let opener = TunnelOpener {
        hub: state.hub.clone(),
        broker: state.tunnels.clone(),
        limit: state.config.tunnel_timeout,
    };
    opener.open(agent_id, ask).await
}
