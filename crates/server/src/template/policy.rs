//! What a user may ask of a template when starting a session. The template
//! (its admin) decides, and the defaults are conservative: no more
//! resources than the template's own, no environment variables, and the
//! template's idle timeout.

use super::TemplateSpec;
use super::input::check_idle_timeout;
use crate::validate::{FieldError, check_env};
use std::collections::BTreeMap;
use std::time::Duration;
use streamspace_protocol::{Cpu, IdleTimeout, Memory, Resources};

/// What a user asked for beyond the template.
#[derive(Debug, Clone, Default)]
pub struct SessionRequest {
    pub resources: Option<Resources>,
    pub env: BTreeMap<String, String>,
    /// As written (`"30m"`, `"0"` for never).
    pub idle_timeout: Option<String>,
}

/// What the template grants a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Granted {
    pub resources: Resources,
    /// Only variables the template lets users set.
    pub env: BTreeMap<String, String>,
    /// `None` means never.
    pub idle_timeout: Option<Duration>,
}

impl TemplateSpec {
    /// Checks `request` against this template's policy: a refusal names the
    /// field and says what the template allows.
    pub fn grant(&self, request: SessionRequest) -> Result<Granted, FieldError> {
        Ok(Granted {
            resources: self.grant_resources(request.resources.unwrap_or_default())?,
            env: self.grant_env(request.env)?,
            idle_timeout: self.grant_idle_timeout(request.idle_timeout)?,
        })
    }

    fn grant_resources(&self, asked: Resources) -> Result<Resources, FieldError> {
        let cpu_max = self.max_resources.cpu.or(self.resources.cpu);
        let memory_max = self.max_resources.memory.or(self.resources.memory);
        let cpu = within(
            &self.name,
            "resources.cpu",
            asked.cpu,
            cpu_max,
            Cpu::millicores,
        )?;
        let memory = within(
            &self.name,
            "resources.memory",
            asked.memory,
            memory_max,
            Memory::bytes,
        )?;
        let gpu = within(
            &self.name,
            "resources.gpu",
            asked.gpu,
            self.max_resources.gpu.or(self.resources.gpu),
            u64::from,
        )?;
        let granted = Resources {
            cpu: cpu.or(self.resources.cpu),
            memory: memory.or(self.resources.memory),
            gpu: gpu.or(self.resources.gpu),
        };
        self.check_shm_fits(&granted)?;
        Ok(granted)
    }

    /// `/dev/shm` counts against the session's memory: a user may not ask
    /// for less memory than the template's shared memory.
    fn check_shm_fits(&self, granted: &Resources) -> Result<(), FieldError> {
        match (self.shm_size, granted.memory) {
            (Some(shm), Some(memory)) if memory < shm => Err(FieldError::new(
                "resources.memory",
                format!(
                    "{memory} is less than template {}'s shm_size ({shm}): ask for at least that",
                    self.name
                ),
            )),
            _ => Ok(()),
        }
    }

    fn grant_env(
        &self,
        asked: BTreeMap<String, String>,
    ) -> Result<BTreeMap<String, String>, FieldError> {
        check_env("env", &asked)?;
        if let Some(key) = asked.keys().find(|k| !self.user_env.contains(k)) {
            let allowed = match self.user_env.is_empty() {
                true => "none".to_owned(),
                false => self.user_env.join(", "),
            };
            return Err(FieldError::new(
                format!("env.{key}"),
                format!(
                    "template {} does not let users set {key} (variables users may set: {allowed})",
                    self.name
                ),
            ));
        }
        Ok(asked)
    }

    fn grant_idle_timeout(&self, asked: Option<String>) -> Result<Option<Duration>, FieldError> {
        let Some(text) = asked else {
            return Ok(self.idle_timeout());
        };
        if !self.user_idle_timeout {
            return Err(FieldError::new(
                "idle_timeout",
                format!(
                    "template {} does not let users choose the idle timeout: leave it out",
                    self.name
                ),
            ));
        }
        let checked = check_idle_timeout(Some(text))?;
        Ok(checked.as_ref().map(IdleTimeout::duration))
    }
}

/// `asked`, if it is within `max`; a dimension with no maximum cannot be
/// chosen by users at all (they could otherwise ask any amount).
fn within<T: Copy + std::fmt::Display>(
    template: &str,
    field: &str,
    asked: Option<T>,
    max: Option<T>,
    amount: impl Fn(T) -> u64,
) -> Result<Option<T>, FieldError> {
    match (asked, max) {
        (None, _) => Ok(None),
        (Some(asked), Some(max)) if amount(asked) <= amount(max) => Ok(Some(asked)),
        (Some(asked), Some(max)) => Err(FieldError::new(
            field,
            format!("{asked} is more than template {template} allows: at most {max}"),
        )),
        (Some(_), None) => Err(FieldError::new(
            field,
            format!("template {template} does not let users choose this: leave it out"),
        )),
    }
}
