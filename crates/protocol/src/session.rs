//! What a session is, as the control plane asks for it and as an agent sees it.

use crate::quantity::{Cpu, Memory};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// What the user wants a session to be. The control plane issues commands
/// until the observed [`Phase`] agrees with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum DesiredState {
    Running,
    Hibernated,
    Terminated,
}

impl DesiredState {
    pub fn as_str(self) -> &'static str {
        match self {
            DesiredState::Running => "running",
            DesiredState::Hibernated => "hibernated",
            DesiredState::Terminated => "terminated",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "running" => Some(DesiredState::Running),
            "hibernated" => Some(DesiredState::Hibernated),
            "terminated" => Some(DesiredState::Terminated),
            _ => None,
        }
    }
}

/// What a session is observed to be, as reported by its agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Phase {
    Pending,
    Starting,
    Running,
    Hibernating,
    Hibernated,
    Waking,
    Stopping,
    Terminated,
    Failed,
}

impl Phase {
    pub const ALL: [Phase; 9] = [
        Phase::Pending,
        Phase::Starting,
        Phase::Running,
        Phase::Hibernating,
        Phase::Hibernated,
        Phase::Waking,
        Phase::Stopping,
        Phase::Terminated,
        Phase::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Pending => "Pending",
            Phase::Starting => "Starting",
            Phase::Running => "Running",
            Phase::Hibernating => "Hibernating",
            Phase::Hibernated => "Hibernated",
            Phase::Waking => "Waking",
            Phase::Stopping => "Stopping",
            Phase::Terminated => "Terminated",
            Phase::Failed => "Failed",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Phase::ALL.into_iter().find(|p| p.as_str() == text)
    }

    /// A phase nothing will move the session out of by itself.
    pub fn is_final(self) -> bool {
        matches!(self, Phase::Terminated)
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum PortProtocol {
    Vnc,
    Http,
}

/// A port the session's container listens on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PortSpec {
    pub name: String,
    pub port: u16,
    pub protocol: PortProtocol,
}

/// Resource limits; absent means the platform's default (no limit on Docker).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Resources {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<Cpu>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<Memory>,
}

/// A persistent home: a volume that outlives the session, one per user and
/// template, named by the control plane so every platform agrees on it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HomeVolume {
    pub volume: String,
    pub path: String,
}

/// Everything an agent needs to run a session, resolved from its template by
/// the control plane. Platform-neutral: each platform translates it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionSpec {
    pub session_id: String,
    /// The owner's username (for labels and volume names).
    pub user: String,
    /// The template's name.
    pub template: String,
    pub image: String,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    pub ports: Vec<PortSpec>,
    #[serde(default)]
    pub resources: Resources,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub home: Option<HomeVolume>,
}

impl SessionSpec {
    /// The port a VNC viewer is tunnelled to.
    pub fn vnc_port(&self) -> Option<u16> {
        self.ports
            .iter()
            .find(|p| p.protocol == PortProtocol::Vnc)
            .map(|p| p.port)
    }
}

/// One session as an agent observes it on its platform.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionReport {
    pub session_id: String,
    pub phase: Phase,
    /// Why the session is in this phase, when that is not obvious (failures).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Whom the platform object says it belongs to (its labels). Sent in
    /// inventories, so a control plane that lost its record can adopt it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<SessionOrigin>,
}

/// The user and template a session was made for, as its labels record them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionOrigin {
    pub user: String,
    pub template: String,
}

impl SessionReport {
    pub fn new(session_id: impl Into<String>, phase: Phase) -> Self {
        Self {
            session_id: session_id.into(),
            phase,
            message: None,
            origin: None,
        }
    }

    pub fn with_message(mut self, message: impl Into<String>) -> Self {
        self.message = Some(message.into());
        self
    }

    pub fn with_origin(mut self, user: impl Into<String>, template: impl Into<String>) -> Self {
        self.origin = Some(SessionOrigin {
            user: user.into(),
            template: template.into(),
        });
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phase_names_round_trip() {
        for phase in Phase::ALL {
            assert_eq!(Phase::parse(phase.as_str()), Some(phase));
            let json = serde_json::to_string(&phase).expect("serializes");
            assert_eq!(json, format!("\"{}\"", phase.as_str()));
        }
        assert_eq!(Phase::parse("running"), None);
    }

    #[test]
    fn desired_state_names_round_trip() {
        for state in [
            DesiredState::Running,
            DesiredState::Hibernated,
            DesiredState::Terminated,
        ] {
            assert_eq!(DesiredState::parse(state.as_str()), Some(state));
        }
        assert_eq!(DesiredState::parse("paused"), None);
    }
}
