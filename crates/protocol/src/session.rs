//! What a session is, as the control plane asks for it and as an agent sees it.

use crate::desktop::DesktopPolicy;
use crate::ids::{SessionId, TemplateId, UserId};
use crate::quantity::{Cpu, Memory};
use crate::vm::VmSpec;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
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
    /// The agent is pulling the session's image; the message says how far.
    Pulling,
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
    pub const ALL: [Phase; 10] = [
        Phase::Pending,
        Phase::Pulling,
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
            Phase::Pulling => "Pulling",
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
    /// A VNC server (RFB), for the viewer and native clients.
    Vnc,
    /// A web app the image serves over plain HTTP (KasmVNC, Selkies,
    /// code-server, noVNC inside the image).
    Http,
    /// The same over TLS with the image's own certificate, usually
    /// self-signed (Kasm images on 6901, linuxserver.io's 3001): the tunnel
    /// already authenticates the session, so it is not verified.
    Https,
    /// The session's sound, as the image serves it (`docs/AUDIO.md`),
    /// reached through `/audio/{id}`. Readiness does not wait for it.
    Audio,
    /// Where the image takes the viewer's microphone (`docs/AUDIO.md`),
    /// reached through `/audio/{id}/microphone`. Readiness does not wait
    /// for it either.
    Microphone,
}

impl PortProtocol {
    /// Whether the port serves a web app, reached through `/apps/…`.
    pub fn is_web(self) -> bool {
        matches!(self, PortProtocol::Http | PortProtocol::Https)
    }

    /// Whether a session is `Running` only once this port answers: its
    /// screen does, its sound is an extra.
    pub fn decides_readiness(self) -> bool {
        !matches!(self, PortProtocol::Audio | PortProtocol::Microphone)
    }
}

/// A port the session's container listens on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PortSpec {
    pub name: String,
    pub port: u16,
    pub protocol: PortProtocol,
    /// Web ports only: the path readiness asks for (`Running` means the app
    /// answered it with a status below 500); `None` means `/`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

impl PortSpec {
    pub fn new(name: impl Into<String>, port: u16, protocol: PortProtocol) -> Self {
        PortSpec {
            name: name.into(),
            port,
            protocol,
            path: None,
        }
    }

    /// Where readiness asks a web port.
    pub fn ready_path(&self) -> &str {
        self.path.as_deref().unwrap_or("/")
    }
}

/// Resource limits; absent means the platform's default (no limit on Docker).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Resources {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<Cpu>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<Memory>,
    /// Whole GPUs (NVIDIA), placed only on agents with that many free.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu: Option<u32>,
}

impl Resources {
    /// GPUs asked for; none when unset.
    pub fn gpus(&self) -> u32 {
        self.gpu.unwrap_or(0)
    }
}

/// An existing volume an admin made for sessions to share (Docker: a named
/// volume; Kubernetes: a PersistentVolumeClaim of that name), mounted at
/// `path` beyond the home. Platforms never create one: a missing volume
/// fails the session with its name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SharedVolume {
    /// The volume's (claim's) name.
    pub source: String,
    /// Absolute path inside the session.
    pub path: String,
    /// Read-only unless the template says otherwise: a shared dataset one
    /// user could change would change for every other.
    #[serde(default = "read_only_by_default")]
    pub read_only: bool,
}

fn read_only_by_default() -> bool {
    true
}

/// A persistent home: a volume that outlives the session, one per user and
/// template, named by the control plane so every platform agrees on it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HomeVolume {
    /// `streamspace-home-{user_id}-{template_id}`: ids are never reused, so
    /// no two users or templates can ever share a home.
    pub volume: String,
    pub path: String,
    /// The name a home had before homes were keyed by ids
    /// (`streamspace-home-{username}-{template name}`), for users who had one.
    /// A platform uses that volume instead of creating `volume` only when
    /// `volume` does not exist yet and the old volume's labels name this
    /// session's user and template: names joined by `-` were ambiguous, the
    /// labels are not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub legacy: Option<String>,
}

/// Processes and threads a session may have when its spec names no limit
/// (a control plane from before `pids_limit`), and a template's when it
/// names none. A desktop idles at a handful; a browser uses a few hundred; a
/// fork bomb is stopped long before it starves the host.
pub const DEFAULT_PIDS_LIMIT: u32 = 2048;

/// Linux capabilities by their names without `CAP_` (capability.h, 6.x).
pub const CAPABILITIES: [&str; 41] = [
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
];

/// How a platform confines a session beyond its resources. Every platform
/// also forbids gaining privileges (no setuid escalation) and drops every
/// Linux capability not listed here.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionSecurity {
    /// Most processes and threads the session may have at once; `None`
    /// leaves the platform's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pids_limit: Option<u32>,
    /// Linux capabilities given back after dropping all, without the
    /// `CAP_` prefix (`CHOWN`, `SETUID`): what images that start as root and
    /// then switch user (s6-overlay) need.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub capabilities: Vec<String>,
    /// Whom the session's processes run as, instead of the image's user:
    /// `"1000"`, `"1000:1000"`, or (Docker only) a name in the image such
    /// as `"app"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// The image's filesystem is mounted read-only; platforms add writable
    /// scratch space on `/tmp` and `/run` so images still start.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub read_only_root_filesystem: bool,
}

impl SessionSecurity {
    /// [`SessionSecurity::user`] as numeric ids (`(uid, gid)`), what
    /// Kubernetes needs; `Err` with the reason for a name.
    pub fn numeric_user(&self) -> Result<Option<(u32, Option<u32>)>, String> {
        let Some(user) = &self.user else {
            return Ok(None);
        };
        parse_numeric_user(user).map(Some).ok_or_else(|| {
            format!(
                "user {user:?} is not numeric: this platform runs sessions as numeric ids only \
                 (\"1000\" or \"1000:1000\"), so the template must name the user by number"
            )
        })
    }
}

/// `"1000"` → `(1000, None)`, `"1000:100"` → `(1000, Some(100))`.
pub fn parse_numeric_user(user: &str) -> Option<(u32, Option<u32>)> {
    let number = |text: &str| -> Option<u32> {
        let digits =
            !text.is_empty() && text.len() <= 10 && text.bytes().all(|b| b.is_ascii_digit());
        digits.then(|| text.parse().ok()).flatten()
    };
    match user.split_once(':') {
        Some((uid, gid)) => Some((number(uid)?, Some(number(gid)?))),
        None => Some((number(user)?, None)),
    }
}

/// Credentials for the registry of a session's image (a template's
/// `registry_auth`). `Debug` shows the username only.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistryAuth {
    pub username: String,
    pub password: String,
}

impl fmt::Debug for RegistryAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistryAuth")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// Everything an agent needs to run a session, resolved from its template by
/// the control plane. Platform-neutral: each platform translates it.
///
/// `Debug` leaves out environment values: templates may put secrets there.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionSpec {
    pub session_id: SessionId,
    /// The owner's username (for labels people read).
    pub user: String,
    /// The owner's id: what homes and seals are keyed by.
    #[serde(default)]
    pub user_id: UserId,
    /// The template's name.
    pub template: String,
    #[serde(default)]
    pub template_id: TemplateId,
    pub image: String,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Which `env` entries are secrets (a template's `secret_env`). Never
    /// serialized, so never sent: the control plane keeps it to seal their
    /// values wherever it stores the spec (its `store/secrets.rs`).
    #[serde(skip)]
    pub secret_env_keys: BTreeSet<String>,
    pub ports: Vec<PortSpec>,
    #[serde(default)]
    pub resources: Resources,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub home: Option<HomeVolume>,
    #[serde(default)]
    pub security: SessionSecurity,
    /// Size of `/dev/shm`; the platform's default (Docker: 64 MiB, too
    /// little for browsers) when `None`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shm_size: Option<Memory>,
    /// Shared volumes mounted beyond the home.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<SharedVolume>,
    /// The control plane's seal over the session, user, template and agent
    /// ids. Platforms keep it with the session (a label) and report it in
    /// inventories, so that a control plane adopts only sessions it placed
    /// itself, never ones an agent invents.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub seal: String,
    /// Credentials for pulling `image` from its registry; they win over
    /// the agent's own for that registry. Left out of `Debug`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registry_auth: Option<RegistryAuth>,
    /// What the session's viewers may do beyond pixels and keys; the
    /// agent needs the files folder, the image the clipboard policy.
    #[serde(default)]
    pub desktop: DesktopPolicy,
    /// How a virtual machine boots and the size of its home disk; only the
    /// libvirt platform reads it (docs/VM.md).
    #[serde(default, skip_serializing_if = "is_default_vm")]
    pub vm: VmSpec,
}

fn is_default_vm(vm: &VmSpec) -> bool {
    *vm == VmSpec::default()
}

impl fmt::Debug for SessionSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionSpec")
            .field("session_id", &self.session_id)
            .field("user", &self.user)
            .field("user_id", &self.user_id)
            .field("template", &self.template)
            .field("template_id", &self.template_id)
            .field("image", &self.image)
            .field("env", &self.env.keys().collect::<Vec<_>>())
            .field("ports", &self.ports)
            .field("resources", &self.resources)
            .field("home", &self.home)
            .field("security", &self.security)
            .field("shm_size", &self.shm_size)
            .field("volumes", &self.volumes)
            .field("desktop", &self.desktop)
            .field("vm", &self.vm)
            .finish_non_exhaustive()
    }
}

impl SessionSpec {
    /// Whether the spec holds a secret: a value of the template's
    /// `secret_env` or registry credentials. The control plane seals such a
    /// spec wherever it stores it and never lets it travel unsealed between
    /// its replicas.
    pub fn carries_secrets(&self) -> bool {
        !self.secret_env_keys.is_empty() || self.registry_auth.is_some()
    }

    /// The port a VNC viewer is tunnelled to.
    pub fn vnc_port(&self) -> Option<u16> {
        self.ports
            .iter()
            .find(|p| p.protocol == PortProtocol::Vnc)
            .map(|p| p.port)
    }

    /// The port the session serves its sound on.
    pub fn audio_port(&self) -> Option<u16> {
        self.ports
            .iter()
            .find(|p| p.protocol == PortProtocol::Audio)
            .map(|p| p.port)
    }

    /// The port the session takes the viewer's microphone on.
    pub fn microphone_port(&self) -> Option<u16> {
        self.ports
            .iter()
            .find(|p| p.protocol == PortProtocol::Microphone)
            .map(|p| p.port)
    }

    /// The port a session is opened at: the first its template lists.
    pub fn primary_port(&self) -> Option<&PortSpec> {
        self.ports.first()
    }

    /// A port the template lists, by number.
    pub fn port(&self, port: u16) -> Option<&PortSpec> {
        self.ports.iter().find(|p| p.port == port)
    }
}

/// One session as an agent observes it on its platform.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionReport {
    pub session_id: SessionId,
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
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionOrigin {
    pub user: String,
    pub template: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<UserId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template_id: Option<TemplateId>,
    /// [`SessionSpec::seal`] as the platform kept it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seal: Option<String>,
}

impl SessionOrigin {
    /// An origin known only by names (labels from before ids and seals).
    pub fn named(user: impl Into<String>, template: impl Into<String>) -> Self {
        SessionOrigin {
            user: user.into(),
            template: template.into(),
            ..Self::default()
        }
    }

    /// The origin recorded in a platform object's labels (looked up by
    /// `label`), if it names at least a user and a template.
    pub fn from_labels<'a>(label: impl Fn(&str) -> Option<&'a str>) -> Option<Self> {
        let owned = |key: &str| label(key).map(str::to_owned);
        Some(SessionOrigin {
            user: owned(crate::labels::USER)?,
            template: owned(crate::labels::TEMPLATE)?,
            user_id: owned(crate::labels::USER_ID).map(UserId::from),
            template_id: owned(crate::labels::TEMPLATE_ID).map(TemplateId::from),
            seal: owned(crate::labels::SEAL),
        })
    }
}

impl SessionReport {
    pub fn new(session_id: impl Into<SessionId>, phase: Phase) -> Self {
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

    pub fn with_origin(mut self, origin: SessionOrigin) -> Self {
        self.origin = Some(origin);
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

    #[test]
    fn specs_from_before_ids_and_seals_still_parse() {
        let old = r#"{"session_id": "s1", "user": "alice", "template": "desktop",
            "image": "d:1", "ports": [], "home": {"volume": "v", "path": "/home/user"}}"#;
        let spec: SessionSpec = serde_json::from_str(old).expect("an old spec parses");
        assert_eq!(spec.user_id, "");
        assert_eq!(spec.seal, "");
        assert_eq!(spec.security, SessionSecurity::default());
        assert_eq!(spec.home.and_then(|h| h.legacy), None);
        assert_eq!(spec.shm_size, None);
        assert!(spec.volumes.is_empty());
        assert_eq!(spec.resources.gpus(), 0);
    }

    #[test]
    fn shared_volumes_are_read_only_unless_said() {
        let volume: SharedVolume =
            serde_json::from_str(r#"{"source": "datasets", "path": "/data"}"#).expect("parses");
        assert!(volume.read_only);
        let volume: SharedVolume =
            serde_json::from_str(r#"{"source": "d", "path": "/d", "read_only": false}"#)
                .expect("parses");
        assert!(!volume.read_only);
    }

    #[test]
    fn numeric_users() {
        assert_eq!(parse_numeric_user("1000"), Some((1000, None)));
        assert_eq!(parse_numeric_user("1000:100"), Some((1000, Some(100))));
        assert_eq!(parse_numeric_user("0"), Some((0, None)));
        for bad in [
            "app",
            "",
            ":1",
            "1:",
            "1:app",
            "-1",
            "99999999999",
            "1:2:3",
            " 1",
        ] {
            assert_eq!(parse_numeric_user(bad), None, "{bad:?}");
        }
        let named = SessionSecurity {
            user: Some("app".into()),
            ..SessionSecurity::default()
        };
        let err = named.numeric_user().expect_err("a name is not numeric");
        assert!(err.contains("\"app\""), "{err}");
        assert_eq!(SessionSecurity::default().numeric_user(), Ok(None));
    }

    #[test]
    fn debug_leaves_out_environment_values() {
        let spec = SessionSpec {
            env: [("API_KEY".to_owned(), "hunter2".to_owned())].into(),
            ..SessionSpec::default()
        };
        let printed = format!("{spec:?}");
        assert!(printed.contains("API_KEY"), "{printed}");
        assert!(!printed.contains("hunter2"), "{printed}");
    }

    #[test]
    fn debug_leaves_out_registry_passwords() {
        let spec = SessionSpec {
            registry_auth: Some(RegistryAuth {
                username: "robot".into(),
                password: "hunter2".into(),
            }),
            ..SessionSpec::default()
        };
        let printed = format!("{spec:?}");
        assert!(!printed.contains("hunter2"), "{printed}");
        let json = serde_json::to_string(&spec).expect("serializes");
        assert!(json.contains("hunter2"), "the agent needs it: {json}");
    }

    #[test]
    fn origin_comes_from_labels() {
        let labels: BTreeMap<&str, &str> = [
            (crate::labels::USER, "alice"),
            (crate::labels::TEMPLATE, "desktop"),
            (crate::labels::USER_ID, "u1"),
            (crate::labels::SEAL, "abc"),
        ]
        .into();
        let origin = SessionOrigin::from_labels(|k| labels.get(k).copied()).expect("origin");
        assert_eq!(origin.user, "alice");
        assert_eq!(origin.user_id, Some("u1".into()));
        assert_eq!(origin.template_id, None);
        assert_eq!(origin.seal.as_deref(), Some("abc"));
        assert_eq!(SessionOrigin::from_labels(|_| None), None);
    }
}
