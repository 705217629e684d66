//! A template as an admin writes it, before any check: the request body
//! of `POST /api/v1/templates` and a catalog's entries. `input.rs` checks
//! it into a `TemplateSpec`.

use super::desktop::DesktopInput;
use super::runtime::VolumeInput;
use serde::Deserialize;
use std::collections::BTreeMap;
use streamspace_protocol::{Cpu, Memory, PortProtocol, Resources, VmSpec};

/// A template as a client writes it; optional fields get defaults.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "name": "desktop",
    "display_name": "Desktop",
    "image": "streamspace/desktop:local",
    "resources": {"cpu": "1", "memory": "512Mi"},
    "idle_timeout": "30m"
}))]
pub struct TemplateInput {
    /// Unique; part of container and volume names.
    #[schema(pattern = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")]
    pub name: String,
    /// Defaults to `name`.
    #[serde(default)]
    #[schema(max_length = 100)]
    pub display_name: Option<String>,
    #[serde(default)]
    #[schema(max_length = 2000)]
    pub description: String,
    /// Defaults to `Other`.
    #[serde(default)]
    pub category: Option<String>,
    /// An image URL.
    #[serde(default)]
    pub icon: String,
    /// `[registry/]repository[:tag][@digest]`, repository in lowercase; for
    /// `platforms: ["libvirt"]`, the VM's base disk: an absolute path to a
    /// qcow2 file or a libvirt storage volume as `pool/volume`.
    #[schema(example = "streamspace/desktop:local")]
    pub image: String,
    /// Unique names and numbers, at least one; the first is the one the
    /// viewer opens (a VNC desktop, or a web app). Defaults to
    /// `[{"name": "vnc", "port": 5901, "protocol": "vnc"}]`.
    #[serde(default)]
    pub ports: Option<Vec<PortInput>>,
    /// Keys are `[A-Za-z_][A-Za-z0-9_]*`.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Like `env`, but the values are shown to admins only and never
    /// logged; no key may be in both.
    #[serde(default)]
    pub secret_env: BTreeMap<String, String>,
    #[serde(default)]
    #[schema(value_type = ResourcesInput)]
    pub resources: ResourcesInput,
    /// The most a user may ask for when starting a session; where unset,
    /// `resources` is the most, and where that is unset too, users cannot
    /// choose that resource.
    #[serde(default)]
    #[schema(value_type = ResourcesInput)]
    pub max_resources: ResourcesInput,
    /// Environment variables users may set when starting a session
    /// (default: none). Secret ones cannot be listed.
    #[serde(default)]
    pub user_env: Vec<String>,
    /// Whether users may choose their session's idle timeout (default:
    /// false, the template's applies).
    #[serde(default)]
    pub user_idle_timeout: bool,
    /// Most processes and threads a session may run (default 2048).
    #[serde(default)]
    #[schema(minimum = 32, maximum = 1048576)]
    pub pids_limit: Option<i64>,
    /// Linux capabilities given back after dropping all, e.g. `["CHOWN",
    /// "SETUID", "SETGID"]` for images that start as root and switch user.
    #[serde(default)]
    pub capabilities: Vec<String>,
    /// A volume per user and template, kept when sessions end.
    #[serde(default)]
    pub persistent_home: bool,
    /// An absolute path; defaults to `/home/user`.
    #[serde(default)]
    pub home_path: Option<String>,
    /// `"30m"`, `"2h"`; `"0"` or empty means never.
    #[serde(default)]
    #[schema(pattern = r"^(0|[0-9]+(ms|s|m|h|d|w|y))?$", example = "30m")]
    pub idle_timeout: Option<String>,
    /// A subset of `docker`, `kubernetes`, or `["libvirt"]` alone for a
    /// virtual machine; empty means any container platform.
    #[serde(default)]
    pub platforms: Vec<String>,
    /// Size of `/dev/shm` (`"1Gi"`): browsers crash with Docker's 64 MiB.
    /// At most `resources.memory` (64Gi without one).
    #[serde(default)]
    #[schema(value_type = Option<String>, example = "1Gi")]
    pub shm_size: Option<Memory>,
    /// Run as this user instead of the image's: `"1000"`, `"1000:1000"`,
    /// or (Docker only) a name in the image such as `"app"`.
    #[serde(default)]
    #[schema(example = "1000:1000")]
    pub user: Option<String>,
    /// Mount the image read-only; `/tmp` and `/run` get writable scratch
    /// space (and the home stays writable).
    #[serde(default)]
    pub read_only_root_filesystem: bool,
    /// Existing shared volumes (Docker volumes, Kubernetes claims) mounted
    /// beyond the home, read-only unless said; at most 16.
    #[serde(default)]
    pub volumes: Vec<VolumeInput>,
    /// Sessions to keep started and unassigned on every agent that may run
    /// the template (0 to 20, default 0): a launch takes one at once. Not
    /// with `persistent_home` (a pooled session starts before its user is
    /// known).
    #[serde(default)]
    #[schema(minimum = 0, maximum = 20)]
    pub warm_pool: Option<i64>,
    /// Credentials for pulling `image` from its registry (a private one):
    /// `{"username": "…", "password": "…"}`. The password is write-only;
    /// when replacing a template, leave it out to keep the stored one.
    #[serde(default)]
    pub registry_auth: Option<RegistryAuthInput>,
    /// Only members of these groups (by name) see and launch the template;
    /// empty (the default) means everyone. Admins see every template. At
    /// most 64 names.
    #[serde(default)]
    pub allowed_groups: Vec<String>,
    /// What viewers may do beyond pixels and keys (clipboard, files,
    /// recording, sharing); absent fields take the defaults.
    #[serde(default)]
    pub desktop: DesktopInput,
    /// How the template's virtual machines boot and the size of their
    /// home disk (64Mi to 1Ti, with `persistent_home`); only for
    /// `platforms: ["libvirt"]`, whose templates get the defaults (BIOS,
    /// 1Gi) without it (docs/VM.md).
    #[serde(default)]
    pub vm: Option<VmSpec>,
}

/// Registry credentials as written.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegistryAuthInput {
    #[schema(max_length = 255)]
    pub username: String,
    /// A password or access token; never shown again.
    #[serde(default)]
    #[schema(max_length = 8192, write_only)]
    pub password: Option<String>,
}

/// Resources as written: the same fields as the protocol's `Resources`, but
/// refusing unknown ones (`"mem"` for `"memory"` must not pass silently).
#[derive(Debug, Default, Clone, Copy, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = ResourcesInput)]
pub struct ResourcesInput {
    /// Cores: `"1"`, `"500m"`.
    #[serde(default)]
    #[schema(value_type = Option<String>, example = "500m")]
    pub cpu: Option<Cpu>,
    /// Bytes: `"512Mi"`, `"2Gi"`.
    #[serde(default)]
    #[schema(value_type = Option<String>, example = "512Mi")]
    pub memory: Option<Memory>,
    /// Whole NVIDIA GPUs, 0 to 16 (0: none).
    #[serde(default)]
    #[schema(minimum = 0, maximum = 16, example = 1)]
    pub gpu: Option<u32>,
}

/// As written; a user's request is bounded by the template's maximum
/// ([`TemplateSpec::grant`]), a template's by [`check_gpus`].
impl From<ResourcesInput> for Resources {
    fn from(r: ResourcesInput) -> Self {
        Resources {
            cpu: r.cpu,
            memory: r.memory,
            gpu: r.gpu.filter(|&n| n > 0),
        }
    }
}

/// A port as written: `port` is wide so that 70000 gets our message rather
/// than serde's "expected u16".
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PortInput {
    #[schema(pattern = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")]
    pub name: String,
    #[schema(minimum = 1, maximum = 65535)]
    pub port: i64,
    pub protocol: PortProtocol,
    /// `http` and `https` ports only: the path readiness asks (default `/`);
    /// the session is `Running` once the app answers it below 500.
    #[serde(default)]
    #[schema(max_length = 1024, example = "/")]
    pub path: Option<String>,
}
