//! Templates: what a session is made from (`TemplateSpec`), how an admin
//! writes one (`input`: the validation that keeps bad templates out of the
//! store), and what a user may ask of one when starting a session
//! (`policy`).

pub mod catalog;
mod desktop;
mod form;
mod input;
mod policy;
mod runtime;
#[cfg(test)]
mod runtime_tests;
mod secret;
#[cfg(test)]
mod tests;
mod vm;
#[cfg(test)]
mod vm_tests;

pub use desktop::DesktopInput;
pub use form::{PortInput, RegistryAuthInput, ResourcesInput, TemplateInput};
pub use input::check_image;
pub use policy::{Granted, SessionRequest};
pub use runtime::{MAX_GPUS, VolumeInput};
pub use secret::{RegistryAuth, SecretEnv};
pub use vm::{CONTAINER_PLATFORMS, DOCKER, KUBERNETES, LIBVIRT, platform_allowed};

use crate::store::User;
use crate::validate::FieldError;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;
use streamspace_protocol::{
    DesktopPolicy, HomeVolume, IdleTimeout, Memory, PortSpec, Resources, SessionId,
    SessionSecurity, SessionSpec, SharedVolume, TemplateId, UserId, VmSpec,
};

/// Platforms a template may name; libvirt only alone (`vm.rs`).
pub const PLATFORMS: [&str; 3] = [DOCKER, KUBERNETES, LIBVIRT];

pub use streamspace_protocol::DEFAULT_PIDS_LIMIT;

/// A validated template, as stored and as returned by the API (to admins;
/// others see it without its environment).
///
/// Fields added after the first release have serde defaults, so templates
/// stored by an older version read as they behaved then, or stricter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TemplateSpec {
    pub name: String,
    pub display_name: String,
    pub description: String,
    pub category: String,
    pub icon: String,
    pub image: String,
    pub ports: Vec<PortSpec>,
    pub env: BTreeMap<String, String>,
    /// Environment whose values are shown to admins only and never logged
    /// (API keys, licence keys).
    #[serde(default)]
    pub secret_env: SecretEnv,
    pub resources: Resources,
    /// The most a user may ask for; where unset, the template's own
    /// `resources` are the most.
    #[serde(default)]
    pub max_resources: Resources,
    /// Environment variables a user may set when starting a session; none
    /// unless listed.
    #[serde(default)]
    pub user_env: Vec<String>,
    /// Whether a user may choose the session's idle timeout (including
    /// "never"); if not, the template's applies.
    #[serde(default)]
    pub user_idle_timeout: bool,
    pub persistent_home: bool,
    pub home_path: String,
    /// As written by the user (`"30m"`); `None` means never idle out.
    #[schema(value_type = Option<String>)]
    pub idle_timeout: Option<IdleTimeout>,
    /// Platforms the template may run on; empty means any container
    /// platform (never libvirt: a container image cannot boot as a VM).
    pub platforms: Vec<String>,
    /// Most processes and threads of a session.
    #[serde(default = "default_pids_limit")]
    pub pids_limit: u32,
    /// Linux capabilities given back to the session after dropping all
    /// (`CHOWN`, `SETUID`, …): what some images need to start.
    #[serde(default)]
    pub capabilities: Vec<String>,
    /// Sessions kept started and unassigned on each agent that may run the
    /// template, so a launch takes one at once (`pool.rs`).
    #[serde(default)]
    pub warm_pool: u32,
    /// Credentials for pulling `image` from its registry; the password is
    /// never shown (see [`RegistryAuth`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registry_auth: Option<RegistryAuth>,
    /// Size of `/dev/shm`; the platform's default when unset.
    #[serde(default)]
    #[schema(value_type = Option<String>, example = "1Gi")]
    pub shm_size: Option<Memory>,
    /// Whom the session runs as (`"1000:1000"`); the image's user when
    /// unset.
    #[serde(default)]
    pub user: Option<String>,
    /// The image's filesystem is read-only; `/tmp` and `/run` are scratch.
    #[serde(default)]
    pub read_only_root_filesystem: bool,
    /// Existing shared volumes mounted beyond the home.
    #[serde(default)]
    pub volumes: Vec<SharedVolume>,
    /// Group names whose members see and launch the template; empty means
    /// everyone (`tenancy.rs`).
    #[serde(default)]
    pub allowed_groups: Vec<String>,
    /// What viewers may do beyond pixels and keys: clipboard, files,
    /// recording, sharing.
    #[serde(default)]
    pub desktop: DesktopPolicy,
    /// How the template's virtual machines boot (libvirt only,
    /// docs/VM.md); absent on container templates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vm: Option<VmSpec>,
}

fn default_pids_limit() -> u32 {
    DEFAULT_PIDS_LIMIT
}

impl TemplateSpec {
    pub fn idle_timeout(&self) -> Option<Duration> {
        self.idle_timeout.as_ref().map(IdleTimeout::duration)
    }

    pub fn allows_platform(&self, platform: &str) -> bool {
        platform_allowed(&self.platforms, platform)
    }

    /// The platforms the template may run on, spelled out (empty means the
    /// container ones).
    pub fn runs_on(&self) -> Vec<String> {
        match self.platforms.is_empty() {
            true => CONTAINER_PLATFORMS.map(str::to_owned).to_vec(),
            false => self.platforms.clone(),
        }
    }

    /// What an agent needs to run this template (stored as `template_id`)
    /// as `session_id` for `owner`, with what the policy granted. Secret
    /// environment comes last but for the variables that tell the image
    /// the desktop policy: nothing can shadow those.
    pub fn session_spec(
        &self,
        template_id: &TemplateId,
        session_id: &SessionId,
        owner: &User,
        granted: &Granted,
    ) -> SessionSpec {
        let mut env = self.env.clone();
        env.extend(granted.env.clone());
        env.extend(self.secret_env.values().clone());
        env.insert(
            runtime::CLIPBOARD_ENV.to_owned(),
            runtime::clipboard_env(self.desktop.clipboard).to_owned(),
        );
        SessionSpec {
            session_id: session_id.clone(),
            user: owner.username.clone(),
            user_id: owner.id.clone(),
            template: self.name.clone(),
            template_id: template_id.clone(),
            image: self.image.clone(),
            env,
            secret_env_keys: self.secret_env.values().keys().cloned().collect(),
            ports: self.ports.clone(),
            resources: granted.resources,
            home: self.persistent_home.then(|| HomeVolume {
                volume: home_volume(&owner.id, template_id),
                path: self.home_path.clone(),
                legacy: owner
                    .legacy_home
                    .then(|| format!("streamspace-home-{}-{}", owner.username, self.name)),
            }),
            security: SessionSecurity {
                pids_limit: Some(self.pids_limit),
                capabilities: self.capabilities.clone(),
                user: self.user.clone(),
                read_only_root_filesystem: self.read_only_root_filesystem,
            },
            shm_size: self.shm_size,
            volumes: self.volumes.clone(),
            seal: String::new(),
            registry_auth: self
                .registry_auth
                .as_ref()
                .and_then(RegistryAuth::for_agent),
            desktop: self.desktop.clone(),
            vm: self.vm.unwrap_or_default(),
        }
    }

    /// The template as someone who is not an admin sees it: without its
    /// environment, which may hold what only the session should know.
    pub fn for_users(mut self) -> Self {
        self.env.clear();
        self.secret_env = SecretEnv::default();
        self.registry_auth = None;
        self
    }

    /// The template as admins see it too: registry passwords are
    /// write-only.
    pub fn without_passwords(mut self) -> Self {
        if let Some(auth) = &mut self.registry_auth {
            auth.password = None;
        }
        self
    }

    /// A registry password left out keeps `previous`'s (an admin editing a
    /// template never sees it), provided the username stays the same; a
    /// new template must give one.
    pub fn keep_registry_password(
        &mut self,
        previous: Option<&TemplateSpec>,
    ) -> Result<(), FieldError> {
        let Some(auth) = self.registry_auth.as_mut().filter(|a| a.password.is_none()) else {
            return Ok(());
        };
        let kept = previous
            .and_then(|p| p.registry_auth.as_ref())
            .filter(|old| old.username == auth.username)
            .and_then(|old| old.password.clone());
        match kept {
            Some(password) => {
                auth.password = Some(password);
                Ok(())
            }
            None => Err(FieldError::new(
                "registry_auth.password",
                "is required: give the registry password or token (it is never shown again;                  to keep a stored one, leave it out and keep the same username)",
            )),
        }
    }
}

/// The persistent home of a user and template. Keyed by ids, which are
/// never reused: joined names were ambiguous (`alice` + `dev-desktop` and
/// `alice-dev` + `desktop`), and a re-created username would have inherited
/// the old user's home.
pub fn home_volume(user_id: &UserId, template_id: &TemplateId) -> String {
    format!("streamspace-home-{user_id}-{template_id}")
}
