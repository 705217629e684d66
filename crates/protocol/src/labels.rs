//! Labels put on every platform object an agent creates, so that a restarted
//! agent can rediscover everything it owns without any local database.

pub const SESSION_ID: &str = "io.streamspace.session-id";
pub const USER: &str = "io.streamspace.user";
pub const TEMPLATE: &str = "io.streamspace.template";
pub const AGENT: &str = "io.streamspace.agent";
