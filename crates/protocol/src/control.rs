//! Messages on the control channel: one WebSocket per agent, one JSON object
//! per text frame, tagged by `type`.
//!
//! Order on every (re)connect: the agent sends [`AgentMessage::Hello`]; the
//! control plane answers [`ServerMessage::Welcome`] (or `Goodbye` and closes);
//! the agent sends a full [`AgentMessage::Inventory`]; then the control plane
//! re-sends every command not yet completed, and both sides run freely.

use crate::files::{FileOp, FilesFolder};
use crate::ids::{AgentId, CommandId, SessionId, TemplateId, TunnelId};
use crate::quantity::{Cpu, Memory};
use crate::session::{PortSpec, RegistryAuth, SessionReport, SessionSpec};
use serde::{Deserialize, Serialize};

/// Agent → control plane.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AgentMessage {
    /// First message of every connection.
    Hello(Hello),
    /// Every session the agent finds on its platform (by label), sent once
    /// after `welcome` on every connection.
    Inventory { sessions: Vec<SessionReport> },
    /// Sent every `heartbeat_interval_ms`: the platform's load and, where
    /// the platform can measure it, what each running session uses.
    Heartbeat {
        metrics: NodeMetrics,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        sessions: Vec<SessionUsage>,
        /// Whether the platform answers (checked within a deadline); absent
        /// from agents older than this field, which are taken as healthy.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        health: Option<PlatformHealth>,
    },
    /// The command was received and will be executed (or was already).
    Ack { command_id: CommandId },
    /// The command finished; `error` is set when it failed.
    Result {
        command_id: CommandId,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    /// A session's observed phase changed.
    SessionStatus(SessionReport),
    /// The agent could not open the tunnel it was asked for.
    TunnelFailed { tunnel_id: TunnelId, error: String },
    /// How a pre-pull ([`ServerMessage::Prepull`]) goes: sent when it
    /// starts, as it progresses (at most once a second) and when it ends.
    PullStatus(PullStatus),
}

/// Control plane → agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage {
    Welcome(Welcome),
    Command(Command),
    /// Dial `port` of `session_id` and open data channel `tunnel_id`;
    /// with `tls`, speak TLS to the port and carry the plain bytes (a web
    /// app served over HTTPS with the image's own certificate).
    OpenTunnel {
        tunnel_id: TunnelId,
        session_id: SessionId,
        port: u16,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        tls: bool,
    },
    /// Stream the session's console output on data channel `tunnel_id`:
    /// the last `tail` lines (all when absent), then new output if `follow`.
    OpenLogs {
        tunnel_id: TunnelId,
        session_id: SessionId,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tail: Option<u32>,
        #[serde(default)]
        follow: bool,
    },
    /// Do one file operation in the session's files folder on data channel
    /// `tunnel_id` (the framing is in [`crate::files`]).
    OpenFiles {
        tunnel_id: TunnelId,
        session_id: SessionId,
        folder: FilesFolder,
        #[serde(flatten)]
        op: FileOp,
    },
    /// Pull a template's image now, before any session needs it; answered
    /// with [`AgentMessage::PullStatus`]. Not a command: nothing is stored
    /// or re-sent, an agent that misses it is simply asked again.
    Prepull {
        template_id: TemplateId,
        image: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        registry_auth: Option<RegistryAuth>,
    },
    /// The control plane is closing this connection, and why.
    Goodbye {
        reason: String,
    },
    /// This replica is draining (shutting down for an upgrade): connect
    /// again at once, through the same URL, and a load balancer takes the
    /// agent to another replica. Agents before this variant ignore it and
    /// reconnect with their backoff when the channel closes.
    Reconnect {
        reason: String,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hello {
    pub protocol_version: u32,
    pub agent_version: String,
    pub platform: String,
    #[serde(default)]
    pub capacity: Capacity,
    #[serde(default)]
    pub capabilities: Capabilities,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Welcome {
    pub protocol_version: u32,
    pub agent_id: AgentId,
    pub heartbeat_interval_ms: u64,
}

/// A durable, idempotent instruction about one session. The control plane
/// stores it before sending and re-sends it until a `result` arrives; the
/// agent executes each `id` at most once and answers duplicates from memory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Command {
    pub id: CommandId,
    pub session_id: SessionId,
    pub action: Action,
    /// The W3C `traceparent` of the span that issued the command (an API
    /// request), when the control plane exports traces: the agent's span
    /// for running it joins that trace. Absent from older control planes,
    /// and ignored by older agents.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_parent: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Action {
    /// Create and start the session; if it exists, make sure it runs.
    Start { spec: Box<SessionSpec> },
    /// Release compute, keep state (Docker: stop the container).
    Hibernate,
    /// Resume a hibernated session; readiness is checked on `ports` (the
    /// session's), or on `vnc_port` alone when the control plane is older
    /// and sends no `ports`.
    Wake {
        vnc_port: u16,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        ports: Vec<PortSpec>,
    },
    /// Remove the session's compute; persistent homes are kept.
    Terminate,
}

impl Action {
    pub fn name(&self) -> &'static str {
        match self {
            Action::Start { .. } => "start",
            Action::Hibernate => "hibernate",
            Action::Wake { .. } => "wake",
            Action::Terminate => "terminate",
        }
    }
}

/// Where a pre-pull stands on one agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum PullState {
    /// Asked, no answer yet (only the control plane says this).
    Requested,
    Pulling,
    /// The image is on the agent's platform (pulled, or it was already).
    Done,
    Failed,
}

/// One agent's word on a pre-pull of `image` for `template_id`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PullStatus {
    pub template_id: TemplateId,
    pub image: String,
    pub state: PullState,
    /// Progress while pulling, why it failed, or how it ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// How much an agent may run. Absent limits mean "as much as the host has",
/// except GPUs: an agent has none unless it reports them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Capacity {
    #[serde(default)]
    pub max_sessions: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<Cpu>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<Memory>,
    /// Whole GPUs sessions may be given (detected, or declared with
    /// `--gpus`).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub gpus: u32,
    /// What those GPUs are (`"NVIDIA A10"`), for people to read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_model: Option<String>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// What the agent's platform supports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Capabilities {
    #[serde(default)]
    pub hibernation: bool,
    #[serde(default)]
    pub persistent_storage: bool,
    #[serde(default)]
    pub gpu: bool,
    /// Hibernation keeps the session's memory (a virtual machine's saved
    /// state), so a woken session continues where it was, open windows
    /// and all; without it, hibernation keeps only the disk.
    #[serde(default)]
    pub hibernation_keeps_memory: bool,
    /// How the platform runs virtual machines; absent on container
    /// platforms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acceleration: Option<crate::vm::Acceleration>,
}

/// What one running session uses now, as its platform measures it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionUsage {
    pub session_id: SessionId,
    pub cpu_millicores: u64,
    pub memory_bytes: u64,
}

/// Whether the agent's platform can take sessions now, as its last check
/// found (docs/ARCHITECTURE.md, "Platform health"): the engine or apiserver
/// answered within the deadline and its storage is usable. An agent whose
/// platform has a problem is `degraded` and gets no new sessions.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlatformHealth {
    /// What is wrong, for people ("the Docker engine did not answer within
    /// 2s"); absent when the platform is healthy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

impl PlatformHealth {
    pub fn healthy() -> Self {
        Self::default()
    }

    pub fn degraded(problem: impl Into<String>) -> Self {
        Self {
            problem: Some(problem.into()),
        }
    }
}

/// Load of the agent's platform, reported with each heartbeat.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NodeMetrics {
    /// Sessions whose compute is running now.
    pub sessions_running: u32,
    #[serde(default)]
    pub cpu_percent: f64,
    #[serde(default)]
    pub memory_used_bytes: u64,
    #[serde(default)]
    pub memory_total_bytes: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::Phase;

    fn round_trip<T>(value: &T) -> T
    where
        T: Serialize + for<'de> Deserialize<'de>,
    {
        let json = serde_json::to_string(value).expect("serializes");
        serde_json::from_str(&json).expect("deserializes")
    }

    #[test]
    fn agent_messages_round_trip() {
        let messages = [
            AgentMessage::Hello(Hello {
                protocol_version: 1,
                agent_version: "0.1.0".into(),
                platform: "docker".into(),
                capacity: Capacity {
                    max_sessions: 10,
                    cpu: Some(Cpu(4000)),
                    memory: None,
                    gpus: 2,
                    gpu_model: Some("NVIDIA A10".into()),
                },
                capabilities: Capabilities {
                    hibernation: true,
                    ..Default::default()
                },
            }),
            AgentMessage::Inventory {
                sessions: vec![SessionReport::new("s1", Phase::Running)],
            },
            AgentMessage::Heartbeat {
                metrics: NodeMetrics::default(),
                sessions: vec![SessionUsage {
                    session_id: "s1".into(),
                    cpu_millicores: 120,
                    memory_bytes: 20 << 20,
                }],
                health: Some(PlatformHealth::degraded("engine frozen")),
            },
            AgentMessage::Ack {
                command_id: "c1".into(),
            },
            AgentMessage::Result {
                command_id: "c1".into(),
                error: Some("image missing".into()),
            },
            AgentMessage::SessionStatus(
                SessionReport::new("s1", Phase::Failed).with_message("gone"),
            ),
            AgentMessage::TunnelFailed {
                tunnel_id: "t".into(),
                error: "refused".into(),
            },
            AgentMessage::PullStatus(PullStatus {
                template_id: "t1".into(),
                image: "registry.example.com/app:1".into(),
                state: PullState::Pulling,
                message: Some("42% (120 MB of 286 MB)".into()),
            }),
        ];
        for message in messages {
            assert_eq!(round_trip(&message), message);
        }
    }

    #[test]
    fn server_messages_round_trip() {
        let spec = SessionSpec::fixture("s1")
            .with_env("A", "b")
            .with_limits("500m", "1Gi");
        let messages = [
            ServerMessage::Welcome(Welcome {
                protocol_version: 1,
                agent_id: "a".into(),
                heartbeat_interval_ms: 5000,
            }),
            ServerMessage::Command(Command {
                id: "c".into(),
                session_id: "s1".into(),
                action: Action::Start {
                    spec: Box::new(spec),
                },
                trace_parent: None,
            }),
            ServerMessage::Command(Command {
                id: "c2".into(),
                session_id: "s1".into(),
                action: Action::Hibernate,
                trace_parent: Some(
                    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into(),
                ),
            }),
            ServerMessage::OpenTunnel {
                tunnel_id: "t".into(),
                session_id: "s1".into(),
                port: 5901,
                tls: false,
            },
            ServerMessage::OpenLogs {
                tunnel_id: "t".into(),
                session_id: "s1".into(),
                tail: Some(100),
                follow: true,
            },
            ServerMessage::OpenFiles {
                tunnel_id: "t".into(),
                session_id: "s1".into(),
                folder: FilesFolder {
                    home: Some("/home/user".into()),
                    folder: "Downloads".into(),
                },
                op: FileOp::Upload {
                    path: "a.txt".into(),
                    size: 3,
                },
            },
            ServerMessage::Prepull {
                template_id: "t1".into(),
                image: "registry.example.com/app:1".into(),
                registry_auth: Some(RegistryAuth {
                    username: "robot".into(),
                    password: "secret".into(),
                }),
            },
            ServerMessage::Goodbye {
                reason: "bye".into(),
            },
            ServerMessage::Reconnect {
                reason: "draining".into(),
            },
        ];
        for message in messages {
            assert_eq!(round_trip(&message), message);
        }
    }

    #[test]
    fn wire_format_is_tagged_by_type() {
        let json = serde_json::to_value(AgentMessage::Ack {
            command_id: "c1".into(),
        })
        .expect("serializes");
        assert_eq!(json, serde_json::json!({"type": "ack", "command_id": "c1"}));
        let command: ServerMessage = serde_json::from_value(serde_json::json!({
            "type": "command", "id": "c", "session_id": "s", "action": {"kind": "wake", "vnc_port": 5901}
        }))
        .expect("a wake command parses");
        assert!(
            matches!(
                command,
                ServerMessage::Command(Command {
                    action: Action::Wake { vnc_port: 5901, ref ports },
                    ..
                }) if ports.is_empty()
            ),
            "a wake from an older control plane, without ports, still parses"
        );
    }

    #[test]
    fn a_command_without_a_trace_reads_and_writes_as_before() {
        let json = serde_json::json!({
            "type": "command", "id": "c", "session_id": "s", "action": {"kind": "terminate"}
        });
        let command: ServerMessage = serde_json::from_value(json.clone()).expect("parses");
        assert!(matches!(
            &command,
            ServerMessage::Command(Command {
                trace_parent: None,
                ..
            })
        ));
        assert_eq!(serde_json::to_value(&command).expect("serializes"), json);
    }

    #[test]
    fn a_heartbeat_without_health_is_from_an_older_agent() {
        let old: AgentMessage = serde_json::from_value(serde_json::json!({
            "type": "heartbeat", "metrics": {"sessions_running": 1}
        }))
        .expect("an older agent's heartbeat parses");
        assert!(matches!(old, AgentMessage::Heartbeat { health: None, .. }));
        let healthy = serde_json::to_value(AgentMessage::Heartbeat {
            metrics: NodeMetrics::default(),
            sessions: Vec::new(),
            health: Some(PlatformHealth::healthy()),
        })
        .expect("serializes");
        assert_eq!(healthy["health"], serde_json::json!({}));
    }

    #[test]
    fn capacity_without_gpus_reads_and_writes_as_before() {
        let old: Capacity = serde_json::from_str(r#"{"max_sessions": 3}"#).expect("parses");
        assert_eq!(old.gpus, 0);
        assert_eq!(old.gpu_model, None);
        let json = serde_json::to_value(&old).expect("serializes");
        assert_eq!(json, serde_json::json!({"max_sessions": 3}));
    }

    #[test]
    fn unknown_message_types_are_errors() {
        let parsed = serde_json::from_str::<AgentMessage>(r#"{"type":"launch_missiles"}"#);
        assert!(parsed.is_err());
    }
}
