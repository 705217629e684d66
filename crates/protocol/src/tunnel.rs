//! The data channel: one fresh outbound connection from the agent per tunnel.
//!
//! When a viewer opens `/vnc/{session}`, the control plane sends
//! [`ServerMessage::OpenTunnel`](crate::ServerMessage::OpenTunnel) on the
//! control channel. The agent dials the session's port, then opens
//! `GET {TUNNEL_PATH_PREFIX}{tunnel_id}` on the control plane with
//! `Connection: Upgrade`, `Upgrade: {UPGRADE_PROTOCOL}` and its bearer secret.
//! After `101 Switching Protocols` the connection carries the session's raw
//! bytes in both directions: no framing, no base64, no JSON, and TCP's own
//! flow control per tunnel.

/// Value of the `Upgrade` header that asks for a raw tunnel stream.
pub const UPGRADE_PROTOCOL: &str = "streamspace-tunnel/1";

/// Path prefix of the data-channel endpoint; the tunnel id follows it.
pub const TUNNEL_PATH_PREFIX: &str = "/api/v1/agents/tunnels/";

/// Path of the control-channel WebSocket.
pub const CONNECT_PATH: &str = "/api/v1/agents/connect";

/// Path an agent enrolls at with an enrollment token.
pub const REGISTER_PATH: &str = "/api/v1/agents/register";

/// The data-channel path for one tunnel.
pub fn tunnel_path(tunnel_id: &str) -> String {
    format!("{TUNNEL_PATH_PREFIX}{tunnel_id}")
}
