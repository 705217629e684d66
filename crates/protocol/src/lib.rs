//! Wire types shared by the StreamSpace control plane and its agents.
//!
//! The agent protocol has two kinds of connection (see `docs/PROTOCOL.md`):
//! one long-lived **control channel** per agent, a WebSocket carrying the JSON
//! messages in [`control`], and one short-lived **data channel** per tunnel, an
//! HTTP/1.1 upgrade to a raw byte stream described in [`tunnel`].

pub mod control;
pub mod desktop;
pub mod files;
#[cfg(any(test, feature = "test-fixtures"))]
mod fixtures;
mod idle;
pub mod ids;
pub mod labels;
pub mod quantity;
pub mod session;
pub mod tunnel;
pub mod vm;

pub use control::{
    Action, AgentMessage, Capabilities, Capacity, Command, Hello, NodeMetrics, PlatformHealth,
    PullState, PullStatus, ServerMessage, SessionUsage, Welcome,
};
pub use desktop::{ClipboardPolicy, DesktopPolicy, FileTransferPolicy, RecordingPolicy};
pub use idle::{IdleTimeout, IdleTimeoutError};
pub use ids::{AgentId, CommandId, SessionId, TemplateId, TunnelId, UserId};
pub use quantity::{Cpu, Memory, QuantityError};
pub use session::{
    CAPABILITIES, DEFAULT_PIDS_LIMIT, DesiredState, HomeVolume, Phase, PortProtocol, PortSpec,
    RegistryAuth, Resources, SessionOrigin, SessionReport, SessionSecurity, SessionSpec,
    SharedVolume, parse_numeric_user,
};
pub use vm::{Acceleration, Firmware, VmSpec};

/// Version of the agent protocol. The control plane refuses a `hello` whose
/// version it does not speak, with a message that says which one it wants.
pub const PROTOCOL_VERSION: u32 = 1;
