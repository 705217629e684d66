//! How a template's container runs beyond its image, as an admin writes it
//! and as validation accepts it: the size of `/dev/shm`, the user it runs
//! as, a read-only root filesystem, shared volumes and GPUs, and the
//! variables that tell the image the template's policy. Each rule refuses
//! with the field it is about.

use super::KUBERNETES;
use crate::validate::{FieldError, check_slug};
use serde::Deserialize;
use std::collections::BTreeMap;
use streamspace_protocol::{ClipboardPolicy, Memory, Resources, SharedVolume, parse_numeric_user};

/// Tells a session's image its template's clipboard policy (`both`,
/// `to_session`, `from_session`, `off`). What the session sends travels the
/// zero-copy path, which the control plane never parses, so only the image
/// can refuse to send its clipboard: the demo images map it to Xvnc's
/// `-SendCutText` and `-AcceptCutText` (docs/UI.md).
pub const CLIPBOARD_ENV: &str = "STREAMSPACE_CLIPBOARD";

/// The variables the control plane sets from the template's policy, which
/// no one may set by hand: set last, they would silently win.
const POLICY_ENV: [&str; 1] = [CLIPBOARD_ENV];

/// [`CLIPBOARD_ENV`]'s value for `policy`: its JSON name.
pub fn clipboard_env(policy: ClipboardPolicy) -> &'static str {
    match policy {
        ClipboardPolicy::Both => "both",
        ClipboardPolicy::ToSession => "to_session",
        ClipboardPolicy::FromSession => "from_session",
        ClipboardPolicy::Off => "off",
    }
}

/// Refuses the policy's own variables in `env`, `secret_env` and `user_env`.
pub fn check_policy_env<'a>(
    env: &BTreeMap<String, String>,
    secret_env: &BTreeMap<String, String>,
    user_env: impl IntoIterator<Item = &'a String>,
) -> Result<(), FieldError> {
    let named = [
        ("env", env.keys().collect::<Vec<_>>()),
        ("secret_env", secret_env.keys().collect()),
    ]
    .into_iter()
    .chain([("user_env", user_env.into_iter().collect())]);
    for (field, keys) in named {
        if let Some(key) = keys.into_iter().find(|k| POLICY_ENV.contains(&k.as_str())) {
            return Err(FieldError::new(
                format!("{field}.{key}"),
                format!("{key} is set from the template's policy: use desktop.clipboard instead"),
            ));
        }
    }
    Ok(())
}

/// The largest `/dev/shm` of a template without a memory limit: it is a
/// tmpfs, so its pages come out of the host's memory.
pub const MAX_SHM: Memory = Memory(64 << 30);

/// Most shared volumes one template mounts.
pub const MAX_VOLUMES: usize = 16;

/// Most GPUs one session may have (a large host has 8 or 16).
pub const MAX_GPUS: u32 = 16;

/// Where a shared volume may not go: the kernel's and the devices'
/// filesystems, which the platform mounts itself.
const SYSTEM_PATHS: [&str; 3] = ["/proc", "/sys", "/dev"];

/// Where a read-only root gets writable scratch space (tmpfs on Docker,
/// emptyDir on Kubernetes), which a volume must not replace.
pub const SCRATCH_PATHS: [&str; 2] = ["/tmp", "/run"];

/// A prefix only the homes StreamSpace makes have: a template naming one
/// would mount another user's home.
const HOME_PREFIX: &str = "streamspace-home";

/// A shared volume as written.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VolumeInput {
    /// An existing Docker volume or Kubernetes PersistentVolumeClaim, made
    /// by an admin of the platform; never created by StreamSpace.
    #[schema(
        pattern = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$",
        example = "datasets"
    )]
    pub source: String,
    /// An absolute path in the session, e.g. `/data`.
    #[schema(example = "/data")]
    pub path: String,
    /// Default true: sessions of many users share the volume.
    #[serde(default)]
    pub read_only: Option<bool>,
}

/// What [`super::TemplateInput`] says about the container, checked
/// together because the rules refer to each other.
pub struct RuntimeInput<'a> {
    pub shm_size: Option<Memory>,
    pub user: Option<String>,
    pub read_only_root_filesystem: bool,
    pub volumes: Vec<VolumeInput>,
    pub home_path: &'a str,
    pub platforms: &'a [String],
    pub resources: &'a Resources,
}

/// [`RuntimeInput`], checked.
#[derive(Debug)]
pub struct Runtime {
    pub shm_size: Option<Memory>,
    pub user: Option<String>,
    pub volumes: Vec<SharedVolume>,
}

impl RuntimeInput<'_> {
    pub fn validate(self) -> Result<Runtime, FieldError> {
        check_shm_size(self.shm_size, self.resources)?;
        let user = self
            .user
            .map(|user| check_user(&user, self.platforms).map(|()| user))
            .transpose()?;
        let volumes = check_volumes(self.volumes, self.home_path, self.read_only_root_filesystem)?;
        Ok(Runtime {
            shm_size: self.shm_size,
            user,
            volumes,
        })
    }
}

/// `/dev/shm` counts against the session's memory: more than its limit
/// could never be used, and without one it is bounded by [`MAX_SHM`].
fn check_shm_size(shm: Option<Memory>, resources: &Resources) -> Result<(), FieldError> {
    let Some(shm) = shm else { return Ok(()) };
    let (most, why) = match resources.memory {
        Some(memory) => (memory, "resources.memory, which it counts against"),
        None => (MAX_SHM, "the most without a resources.memory"),
    };
    if shm > most {
        return Err(FieldError::new(
            "shm_size",
            format!("{shm} is more than {most} ({why}): use at most that, e.g. \"1Gi\""),
        ));
    }
    Ok(())
}

/// `"1000"`, `"1000:1000"`, or names as Docker takes them (`"app"`,
/// `"app:staff"`); names only when the template may run on Docker, since
/// Kubernetes runs containers as numeric ids only.
fn check_user(user: &str, platforms: &[String]) -> Result<(), FieldError> {
    let part_ok = |part: &str| {
        parse_numeric_user(part).is_some_and(|(_, gid)| gid.is_none()) || is_user_name(part)
    };
    let valid = match user.split_once(':') {
        Some((name, group)) => part_ok(name) && part_ok(group),
        None => part_ok(user),
    };
    if !valid {
        return Err(FieldError::new(
            "user",
            format!(
                "{user:?} is not a user: use a uid (\"1000\"), uid:gid (\"1000:1000\") or, on \
                 Docker only, a name from the image (\"app\")"
            ),
        ));
    }
    let kubernetes_only = !platforms.is_empty() && platforms.iter().all(|p| p == KUBERNETES);
    if kubernetes_only && parse_numeric_user(user).is_none() {
        return Err(FieldError::new(
            "user",
            format!(
                "{user:?} is a name, and Kubernetes runs containers as numeric ids only: use \
                 \"1000\" or \"1000:1000\""
            ),
        ));
    }
    Ok(())
}

/// A POSIX-ish user or group name (what `useradd` accepts by default).
fn is_user_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    (1..=32).contains(&bytes.len())
        && bytes
            .first()
            .is_some_and(|b| b.is_ascii_lowercase() || *b == b'_')
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'-'))
}

fn check_volumes(
    volumes: Vec<VolumeInput>,
    home_path: &str,
    read_only_root: bool,
) -> Result<Vec<SharedVolume>, FieldError> {
    if volumes.len() > MAX_VOLUMES {
        return Err(FieldError::new(
            "volumes",
            format!(
                "{} volumes is too many: at most {MAX_VOLUMES}",
                volumes.len()
            ),
        ));
    }
    let mut checked: Vec<SharedVolume> = Vec::with_capacity(volumes.len());
    for (i, volume) in volumes.into_iter().enumerate() {
        let field = format!("volumes[{i}]");
        let source = check_source(&format!("{field}.source"), volume.source)?;
        let path = check_volume_path(&format!("{field}.path"), &volume.path)?;
        let clash = |other: &str, what: &str| -> Result<(), FieldError> {
            match overlaps(&path, other) {
                true => Err(FieldError::new(
                    format!("{field}.path"),
                    format!("{path} overlaps {what} ({other}): mount it elsewhere"),
                )),
                false => Ok(()),
            }
        };
        clash(home_path, "home_path")?;
        for earlier in &checked {
            clash(&earlier.path, "another volume")?;
        }
        for system in SYSTEM_PATHS {
            clash(system, "a system filesystem")?;
        }
        if read_only_root && SCRATCH_PATHS.contains(&path.as_str()) {
            return Err(FieldError::new(
                format!("{field}.path"),
                format!("{path} is the scratch space a read-only root gets: mount it elsewhere"),
            ));
        }
        checked.push(SharedVolume {
            source,
            path,
            read_only: volume.read_only.unwrap_or(true),
        });
    }
    Ok(checked)
}

/// A name both a Docker volume and a Kubernetes claim can have, and never
/// a home's.
fn check_source(field: &str, source: String) -> Result<String, FieldError> {
    check_slug(field, &source)?;
    if source.starts_with(HOME_PREFIX) {
        return Err(FieldError::new(
            field,
            format!(
                "{source:?} names a StreamSpace home (they belong to one user each): use a \
                 volume made to be shared"
            ),
        ));
    }
    Ok(source)
}

/// An absolute path without `.` or `..`, not `/`, written back without
/// repeated or trailing slashes.
fn check_volume_path(field: &str, path: &str) -> Result<String, FieldError> {
    let refuse = |why: &str| {
        Err(FieldError::new(
            field,
            format!("{path:?} {why}: use an absolute path such as \"/data\""),
        ))
    };
    if !path.starts_with('/') {
        return refuse("is not absolute");
    }
    if path.len() > 1024 || path.contains(['\0', ',', ':']) {
        return refuse("is too long or holds ',', ':' or NUL");
    }
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    if parts.iter().any(|p| *p == "." || *p == "..") {
        return refuse("holds '.' or '..'");
    }
    if parts.is_empty() {
        return refuse("is the root");
    }
    Ok(format!("/{}", parts.join("/")))
}

/// Whether one path is the other or inside it.
pub fn overlaps(a: &str, b: &str) -> bool {
    let a = a.trim_end_matches('/');
    let b = b.trim_end_matches('/');
    let inside = |inner: &str, outer: &str| {
        inner == outer
            || inner
                .strip_prefix(outer)
                .is_some_and(|r| r.starts_with('/'))
    };
    inside(a, b) || inside(b, a)
}

/// A GPU count as written: at most [`MAX_GPUS`]; 0 means none.
pub fn check_gpus(field: &str, gpus: Option<u32>) -> Result<Option<u32>, FieldError> {
    match gpus {
        Some(n) if n > MAX_GPUS => Err(FieldError::new(
            field,
            format!("{n} GPUs is more than any session may have: at most {MAX_GPUS}"),
        )),
        Some(0) | None => Ok(None),
        Some(n) => Ok(Some(n)),
    }
}
