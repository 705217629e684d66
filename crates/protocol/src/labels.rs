//! Labels put on every platform object an agent creates, so that a restarted
//! agent can rediscover everything it owns without any local database.

pub const SESSION_ID: &str = "io.streamspace.session-id";
pub const USER: &str = "io.streamspace.user";
pub const TEMPLATE: &str = "io.streamspace.template";
pub const AGENT: &str = "io.streamspace.agent";
/// Ids, which unlike names are never reused.
pub const USER_ID: &str = "io.streamspace.user-id";
pub const TEMPLATE_ID: &str = "io.streamspace.template-id";
/// The control plane's seal ([`crate::SessionSpec::seal`]).
pub const SEAL: &str = "io.streamspace.seal";
