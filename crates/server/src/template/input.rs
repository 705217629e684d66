//! The validation that keeps bad templates out of the store: a
//! [`TemplateInput`] as written, checked into a [`TemplateSpec`].

use super::form::{PortInput, RegistryAuthInput, ResourcesInput, TemplateInput};
use super::runtime::{RuntimeInput, check_gpus, check_policy_env};
use super::{DEFAULT_PIDS_LIMIT, PLATFORMS, RegistryAuth, SecretEnv, TemplateSpec, vm};
use crate::validate::{FieldError, check_env, check_slug};
use std::collections::BTreeMap;
use streamspace_protocol::{
    CAPABILITIES, Cpu, IdleTimeout, Memory, PortProtocol, PortSpec, Resources,
};

impl ResourcesInput {
    /// The resources, with the GPU count bounded; `field` is where they
    /// were written (`resources`, `max_resources`).
    pub(super) fn checked(self, field: &str) -> Result<Resources, FieldError> {
        check_gpus(&format!("{field}.gpu"), self.gpu)?;
        Ok(Resources::from(self))
    }
}

const DEFAULT_HOME: &str = "/home/user";
const DEFAULT_VNC_PORT: u16 = 5901;

impl TemplateInput {
    pub fn validate(self) -> Result<TemplateSpec, FieldError> {
        check_slug("name", &self.name)?;
        for platform in &self.platforms {
            if !PLATFORMS.contains(&platform.as_str()) {
                return Err(FieldError::new(
                    "platforms",
                    format!("unknown platform {platform:?}: use one of {PLATFORMS:?}"),
                ));
            }
        }
        vm::check_platforms(&self.platforms)?;
        // A VM's image is its base disk, checked with the rest of a VM's
        // rules; a container's is an image reference.
        let vm = vm::check(&self)?;
        if vm.is_none() {
            check_image(&self.image)?;
        }
        let ports = match self.ports.is_none() && vm.is_some() {
            true => vm::default_ports(),
            false => check_ports(self.ports)?,
        };
        check_env("env", &self.env)?;
        let home_path = self.home_path.unwrap_or_else(|| DEFAULT_HOME.to_owned());
        if !home_path.starts_with('/') || home_path.contains('\0') {
            return Err(FieldError::new(
                "home_path",
                format!("{home_path:?} must be an absolute path such as \"/home/user\""),
            ));
        }
        let idle_timeout = check_idle_timeout(self.idle_timeout)?;
        check_length("display_name", self.display_name.as_deref(), 100)?;
        check_length("description", Some(&self.description), 2000)?;
        check_secret_env(&self.env, &self.secret_env)?;
        check_user_env(&self.user_env, &self.secret_env)?;
        check_policy_env(&self.env, &self.secret_env, &self.user_env)?;
        let pids_limit = check_pids_limit(self.pids_limit)?;
        let warm_pool = check_warm_pool(self.warm_pool, self.persistent_home)?;
        let capabilities = check_capabilities(self.capabilities)?;
        let resources = self.resources.checked("resources")?;
        let max_resources = self.max_resources.checked("max_resources")?;
        check_max_resources(&resources, &max_resources)?;
        let registry_auth = self.registry_auth.map(check_registry_auth).transpose()?;
        let allowed_groups =
            crate::tenancy::check_group_list("allowed_groups", self.allowed_groups)?;
        let desktop = match vm {
            Some(_) => vm::desktop(self.desktop.validate()?),
            None => self.desktop.validate()?,
        };
        let runtime = RuntimeInput {
            shm_size: self.shm_size,
            user: self.user,
            read_only_root_filesystem: self.read_only_root_filesystem,
            volumes: self.volumes,
            home_path: &home_path,
            platforms: &self.platforms,
            resources: &resources,
        }
        .validate()?;
        Ok(TemplateSpec {
            display_name: self.display_name.unwrap_or_else(|| self.name.clone()),
            name: self.name,
            description: self.description,
            category: self.category.unwrap_or_else(|| "Other".to_owned()),
            icon: self.icon,
            image: self.image,
            ports,
            env: self.env,
            secret_env: SecretEnv::new(self.secret_env),
            resources,
            max_resources,
            user_env: self.user_env,
            user_idle_timeout: self.user_idle_timeout,
            persistent_home: self.persistent_home,
            home_path,
            idle_timeout,
            platforms: self.platforms,
            pids_limit,
            capabilities,
            warm_pool,
            registry_auth,
            shm_size: runtime.shm_size,
            user: runtime.user,
            read_only_root_filesystem: self.read_only_root_filesystem,
            volumes: runtime.volumes,
            allowed_groups,
            desktop,
            vm,
        })
    }
}

/// A username registries accept (no `:`, which would end it in basic
/// auth) and a bounded password; both without control characters.
fn check_registry_auth(input: RegistryAuthInput) -> Result<RegistryAuth, FieldError> {
    let clean = |text: &str| !text.chars().any(char::is_control);
    let username = input.username;
    if username.is_empty() || username.chars().count() > 255 || username.contains(':') {
        return Err(FieldError::new(
            "registry_auth.username",
            "must be 1 to 255 characters without \":\"",
        ));
    }
    if !clean(&username) {
        return Err(FieldError::new(
            "registry_auth.username",
            "must not contain control characters",
        ));
    }
    if let Some(password) = &input.password
        && (password.is_empty() || password.len() > 8192 || !clean(password))
    {
        return Err(FieldError::new(
            "registry_auth.password",
            "must be 1 to 8192 bytes without control characters (leave it out to keep the \
             stored one)",
        ));
    }
    Ok(RegistryAuth {
        username,
        password: input.password,
    })
}

/// Secret variables follow the same naming rules, and a name is either
/// secret or not: in both, which value wins would be a surprise.
fn check_secret_env(
    env: &BTreeMap<String, String>,
    secret_env: &BTreeMap<String, String>,
) -> Result<(), FieldError> {
    check_env("secret_env", secret_env)?;
    match secret_env.keys().find(|k| env.contains_key(*k)) {
        Some(key) => Err(FieldError::new(
            format!("secret_env.{key}"),
            format!("{key} is also in env: keep it in one of them"),
        )),
        None => Ok(()),
    }
}

/// Variables users may set: valid names, and never a secret one (a user
/// could otherwise replace the admin's credential with their own value).
fn check_user_env(
    user_env: &[String],
    secret_env: &BTreeMap<String, String>,
) -> Result<(), FieldError> {
    let as_map: BTreeMap<String, String> = user_env
        .iter()
        .map(|k| (k.clone(), String::new()))
        .collect();
    check_env("user_env", &as_map)?;
    match user_env.iter().find(|k| secret_env.contains_key(*k)) {
        Some(key) => Err(FieldError::new(
            "user_env",
            format!("{key} is a secret variable: users cannot set it"),
        )),
        None => Ok(()),
    }
}

/// A pool is a few ready sessions per agent, and cannot carry homes: its
/// sessions start before anyone asks, and a running container cannot
/// mount a volume afterwards.
fn check_warm_pool(value: Option<i64>, persistent_home: bool) -> Result<u32, FieldError> {
    match value.unwrap_or(0) {
        0 => Ok(0),
        n @ 1..=20 if !persistent_home => Ok(n as u32),
        1..=20 => Err(FieldError::new(
            "warm_pool",
            "a warm pool cannot be used with persistent_home: pooled sessions start before their user is known, so they cannot mount the user's home",
        )),
        n => Err(FieldError::new(
            "warm_pool",
            format!("{n} is out of range: keep 0 to 20 sessions ready per agent"),
        )),
    }
}

fn check_pids_limit(value: Option<i64>) -> Result<u32, FieldError> {
    const RANGE: std::ops::RangeInclusive<i64> = 32..=1_048_576;
    match value {
        None => Ok(DEFAULT_PIDS_LIMIT),
        Some(n) if RANGE.contains(&n) => Ok(n as u32),
        Some(n) => Err(FieldError::new(
            "pids_limit",
            format!(
                "{n} is out of range: use {} to {} (a desktop with a browser needs a few hundred)",
                RANGE.start(),
                RANGE.end()
            ),
        )),
    }
}

/// Capabilities as Linux names them; `CAP_CHOWN` and `chown` are accepted
/// and stored as `CHOWN`.
fn check_capabilities(names: Vec<String>) -> Result<Vec<String>, FieldError> {
    let mut checked: Vec<String> = Vec::with_capacity(names.len());
    for (i, name) in names.iter().enumerate() {
        let upper = name.trim().to_ascii_uppercase();
        let bare = upper.strip_prefix("CAP_").unwrap_or(&upper).to_owned();
        if !CAPABILITIES.contains(&bare.as_str()) {
            return Err(FieldError::new(
                format!("capabilities[{i}]"),
                format!(
                    "{name:?} is not a Linux capability: use names such as \"CHOWN\" or \"SETUID\""
                ),
            ));
        }
        if !checked.contains(&bare) {
            checked.push(bare);
        }
    }
    Ok(checked)
}

/// A maximum below the template's own amount would refuse the template's
/// own sessions.
fn check_max_resources(resources: &Resources, max: &Resources) -> Result<(), FieldError> {
    let below = |own: Option<u64>, most: Option<u64>| own.zip(most).is_some_and(|(o, m)| m < o);
    if below(
        resources.cpu.map(Cpu::millicores),
        max.cpu.map(Cpu::millicores),
    ) {
        return Err(FieldError::new(
            "max_resources.cpu",
            "must be at least resources.cpu",
        ));
    }
    if below(
        resources.memory.map(Memory::bytes),
        max.memory.map(Memory::bytes),
    ) {
        return Err(FieldError::new(
            "max_resources.memory",
            "must be at least resources.memory",
        ));
    }
    if below(resources.gpu.map(u64::from), max.gpu.map(u64::from)) {
        return Err(FieldError::new(
            "max_resources.gpu",
            "must be at least resources.gpu",
        ));
    }
    Ok(())
}

fn check_length(field: &str, value: Option<&str>, max: usize) -> Result<(), FieldError> {
    match value {
        Some(v) if v.chars().count() > max => Err(FieldError::new(
            field,
            format!("must be at most {max} characters"),
        )),
        _ => Ok(()),
    }
}

pub fn check_image(image: &str) -> Result<(), FieldError> {
    let valid = !image.is_empty()
        && image == image.trim()
        && image.parse::<oci_spec::distribution::Reference>().is_ok()
        && repository_of(image) == repository_of(image).to_lowercase();
    if valid {
        Ok(())
    } else {
        Err(FieldError::new(
            "image",
            format!(
                "{image:?} is not a valid image reference: use [registry/]repository[:tag][@digest] \
                 in lowercase, e.g. \"streamspace/desktop:local\""
            ),
        ))
    }
}

/// The reference without its digest and tag: the part Docker requires to be
/// lowercase (tags may use capitals).
fn repository_of(image: &str) -> &str {
    let name = image.split('@').next().unwrap_or(image);
    match name.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => repo,
        _ => name,
    }
}

fn check_ports(ports: Option<Vec<PortInput>>) -> Result<Vec<PortSpec>, FieldError> {
    let Some(ports) = ports else {
        return Ok(vec![PortSpec::new(
            "vnc",
            DEFAULT_VNC_PORT,
            PortProtocol::Vnc,
        )]);
    };
    let mut checked: Vec<PortSpec> = Vec::with_capacity(ports.len());
    for (i, p) in ports.into_iter().enumerate() {
        let field = format!("ports[{i}]");
        let port = u16::try_from(p.port)
            .ok()
            .filter(|&port| port > 0)
            .ok_or_else(|| {
                FieldError::new(
                    format!("{field}.port"),
                    format!("{} is not a port: use 1 to 65535", p.port),
                )
            })?;
        check_slug(&format!("{field}.name"), &p.name)?;
        if checked.iter().any(|c| c.name == p.name || c.port == port) {
            return Err(FieldError::new(
                field,
                "port names and numbers must be unique".to_owned(),
            ));
        }
        let path = check_ready_path(&field, p.protocol, p.path)?;
        checked.push(PortSpec {
            name: p.name,
            port,
            protocol: p.protocol,
            path,
        });
    }
    if checked
        .first()
        .is_none_or(|p| !p.protocol.decides_readiness())
    {
        return Err(FieldError::new(
            "ports",
            "list a \"vnc\" desktop or an \"http\" web app first: the first port is what a \
             session opens at"
                .to_owned(),
        ));
    }
    for (protocol, name) in [
        (PortProtocol::Audio, "audio"),
        (PortProtocol::Microphone, "microphone"),
    ] {
        if checked.iter().filter(|p| p.protocol == protocol).count() > 1 {
            return Err(FieldError::new(
                "ports",
                format!("list at most one \"{name}\" port"),
            ));
        }
    }
    Ok(checked)
}

/// A web port's readiness path: absolute, printable, no spaces (it goes
/// into a request line as written).
fn check_ready_path(
    field: &str,
    protocol: PortProtocol,
    path: Option<String>,
) -> Result<Option<String>, FieldError> {
    let Some(path) = path else { return Ok(None) };
    let field = format!("{field}.path");
    if !protocol.is_web() {
        return Err(FieldError::new(
            field,
            "only \"http\" and \"https\" ports have a path: remove it",
        ));
    }
    let printable = path.bytes().all(|b| b.is_ascii_graphic());
    if !path.starts_with('/') || !printable || path.len() > 1024 {
        return Err(FieldError::new(
            field,
            format!(
                "{path:?} must be an absolute URL path such as \"/\" or \"/healthz\", without spaces"
            ),
        ));
    }
    Ok(Some(path))
}

/// An idle timeout as written, parsed once; `None` means never (empty,
/// `"0"`, a zero duration).
pub fn check_idle_timeout(value: Option<String>) -> Result<Option<IdleTimeout>, FieldError> {
    let Some(text) = value else {
        return Ok(None);
    };
    IdleTimeout::parse(&text).map_err(|err| FieldError::new("idle_timeout", err.to_string()))
}
