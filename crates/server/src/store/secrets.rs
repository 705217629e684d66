//! Templates' secrets sealed at rest: a template's `secret_env` values and
//! registry password, and their copies in a session's spec and in its start
//! commands, never reach the database in clear.
//!
//! Each row keeps its secrets apart from its JSON, in its `secrets` column
//! (migration 0017), sealed by `crate::vault` under the key outside the
//! database and bound to the row's own id: a sealed value copied onto
//! another template, session or command does not open. The JSON in `spec`
//! or `payload` keeps its meaning, minus the secrets, so a replica of the
//! previous release reads it during a rolling upgrade (docs/UPGRADING.md).
//!
//! Sealing happens here, in the store, on every write, and opening on every
//! read, so no caller can store a secret in clear by forgetting to seal it.
//! Rows an older release wrote have no `secrets` and their values in the
//! JSON: they read as before, and `seal_legacy_secrets` seals them.

use super::{Store, StoreError, StoreResult, from_json, to_json};
use crate::template::{SecretEnv, TemplateSpec};
use crate::vault::Vault;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sqlx::Row;
use std::collections::BTreeMap;
use streamspace_protocol::{Action, Command, RegistryAuth, SessionId, SessionSpec, TemplateId};

/// What an admin can do when a template's secrets cannot be opened.
const TEMPLATE_REMEDY: &str = "if that key is lost or the value damaged, give the template its \
     secret_env values and registry password again (PUT /api/v1/templates/{id})";
/// What to do when a session's (or its command's) cannot.
const SESSION_REMEDY: &str = "if that key is lost or the value damaged, terminate the session \
     and launch a new one from its template";
/// The setting that records that the rows of sessions and commands an older
/// release wrote were sealed once (templates are looked at on every start).
const LEGACY_DONE: &str = "legacy_secrets_sealed";

/// A template's secrets, as sealed in `templates.secrets`.
#[derive(Default, Serialize, Deserialize)]
struct TemplateSecrets {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    secret_env: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    registry_password: Option<String>,
}

/// A session spec's secrets, as sealed in `sessions.secrets` and in a start
/// command's `commands.secrets`.
#[derive(Default, Serialize, Deserialize)]
struct SpecSecrets {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    env: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    registry_auth: Option<RegistryAuth>,
}

/// A row's JSON without its secrets, and its secrets sealed (`None`: it
/// has none).
pub(super) struct Sealed {
    pub json: String,
    pub secrets: Option<String>,
}

/// What a template's secrets are sealed for.
fn template_binding(id: &TemplateId) -> String {
    format!("streamspace-template-secrets:{id}")
}

fn session_binding(id: &SessionId) -> String {
    format!("streamspace-session-secrets:{id}")
}

fn command_binding(command: &Command) -> String {
    format!("streamspace-command-secrets:{}", command.id)
}

impl Store {
    /// `spec` as the `templates` row of `id` keeps it.
    pub(super) fn seal_template(
        &self,
        id: &TemplateId,
        spec: &TemplateSpec,
    ) -> StoreResult<Sealed> {
        let mut plain = spec.clone();
        let secrets = TemplateSecrets {
            secret_env: std::mem::take(&mut plain.secret_env).values().clone(),
            registry_password: plain.registry_auth.as_mut().and_then(|a| a.password.take()),
        };
        let what = || format!("template {id}");
        let sealed = match secrets.secret_env.is_empty() && secrets.registry_password.is_none() {
            true => None,
            false => Some(self.seal_value(&template_binding(id), what, &secrets)?),
        };
        Ok(Sealed {
            json: to_json(&plain),
            secrets: sealed,
        })
    }

    /// The spec of template `id` from its row's `spec` and `secrets`.
    pub(super) fn open_template(
        &self,
        id: &TemplateId,
        json: &str,
        secrets: Option<&str>,
    ) -> StoreResult<TemplateSpec> {
        let mut spec: TemplateSpec = from_json("template spec", json)?;
        let Some(sealed) = secrets else {
            return Ok(spec);
        };
        let what = || format!("template {id}");
        let opened: TemplateSecrets =
            self.open_value(&template_binding(id), what, TEMPLATE_REMEDY, sealed)?;
        // Values in clear in the JSON are newer than the sealed ones: this
        // release never writes them, a replica of the previous one may have
        // during a rolling upgrade.
        let mut env = opened.secret_env;
        env.extend(spec.secret_env.values().clone());
        spec.secret_env = SecretEnv::new(env);
        if let Some(auth) = spec.registry_auth.as_mut() {
            auth.password = auth.password.take().or(opened.registry_password);
        }
        Ok(spec)
    }

    /// `spec` as the `sessions` row keeps it.
    pub(super) fn seal_session_spec(&self, spec: &SessionSpec) -> StoreResult<Sealed> {
        let what = || format!("session {}", spec.session_id);
        let (plain, sealed) = self.seal_spec(&session_binding(&spec.session_id), what, spec)?;
        Ok(Sealed {
            json: to_json(&plain),
            secrets: sealed,
        })
    }

    /// The spec of session `id` from its row's `spec` and `secrets`.
    pub(super) fn open_session_spec(
        &self,
        id: &SessionId,
        json: &str,
        secrets: Option<&str>,
    ) -> StoreResult<SessionSpec> {
        let mut spec = from_json("session spec", json)?;
        if let Some(sealed) = secrets {
            let what = || format!("session {id}");
            self.open_spec(&session_binding(id), what, &mut spec, sealed)?;
        }
        Ok(spec)
    }

    /// `command` as the `commands` row keeps it: a start command's spec
    /// without its secrets.
    pub(super) fn seal_command(&self, command: &Command) -> StoreResult<Sealed> {
        let Action::Start { spec } = &command.action else {
            return Ok(Sealed {
                json: to_json(command),
                secrets: None,
            });
        };
        let what = || format!("command {} of session {}", command.id, command.session_id);
        let (plain, sealed) = self.seal_spec(&command_binding(command), what, spec)?;
        let mut stored = command.clone();
        stored.action = Action::Start {
            spec: Box::new(plain),
        };
        Ok(Sealed {
            json: to_json(&stored),
            secrets: sealed,
        })
    }

    /// A command from its row's `payload` and `secrets`.
    pub(super) fn open_command(&self, json: &str, secrets: Option<&str>) -> StoreResult<Command> {
        let mut command: Command = from_json("command payload", json)?;
        let Some(sealed) = secrets else {
            return Ok(command);
        };
        let binding = command_binding(&command);
        let what = format!("command {} of session {}", command.id, command.session_id);
        let Action::Start { spec } = &mut command.action else {
            return Err(StoreError::Corrupt(format!(
                "{what} has sealed secrets but starts nothing"
            )));
        };
        self.open_spec(&binding, || what.clone(), spec, sealed)?;
        Ok(command)
    }

    /// `spec` without the values of its secret variables and its registry
    /// credentials, and those sealed for `binding`.
    fn seal_spec(
        &self,
        binding: &str,
        what: impl Fn() -> String,
        spec: &SessionSpec,
    ) -> StoreResult<(SessionSpec, Option<String>)> {
        let mut plain = spec.clone();
        let env = spec
            .secret_env_keys
            .iter()
            .filter_map(|key| plain.env.remove_entry(key))
            .collect();
        let secrets = SpecSecrets {
            env,
            registry_auth: plain.registry_auth.take(),
        };
        if secrets.env.is_empty() && secrets.registry_auth.is_none() {
            return Ok((plain, None));
        }
        let sealed = self.seal_value(binding, what, &secrets)?;
        Ok((plain, Some(sealed)))
    }

    /// Puts back into `spec` the secrets `sealed` holds for `binding`.
    fn open_spec(
        &self,
        binding: &str,
        what: impl Fn() -> String,
        spec: &mut SessionSpec,
        sealed: &str,
    ) -> StoreResult<()> {
        let opened: SpecSecrets = self.open_value(binding, what, SESSION_REMEDY, sealed)?;
        for (key, value) in opened.env {
            spec.secret_env_keys.insert(key.clone());
            spec.env.entry(key).or_insert(value);
        }
        if spec.registry_auth.is_none() {
            spec.registry_auth = opened.registry_auth;
        }
        Ok(())
    }

    /// The key that seals `what`; a store opened without one cannot.
    fn vault(&self, what: impl Fn() -> String) -> StoreResult<&Vault> {
        self.vault
            .as_deref()
            .ok_or_else(|| StoreError::NoVault(what()))
    }

    fn seal_value<T: Serialize>(
        &self,
        binding: &str,
        what: impl Fn() -> String,
        value: &T,
    ) -> StoreResult<String> {
        Ok(self.vault(&what)?.seal(binding, to_json(value).as_bytes()))
    }

    fn open_value<T: DeserializeOwned>(
        &self,
        binding: &str,
        what: impl Fn() -> String,
        remedy: &'static str,
        sealed: &str,
    ) -> StoreResult<T> {
        let plain = self.vault(&what)?.open(binding, sealed).map_err(|source| {
            let what = what();
            tracing::error!(%what, error = %source, "cannot open sealed secrets");
            StoreError::Sealed {
                what,
                remedy,
                source,
            }
        })?;
        serde_json::from_slice(&plain)
            .map_err(|e| StoreError::Corrupt(format!("the sealed secrets of {}: {e}", what())))
    }

    /// Seals what an older release stored in clear: templates' secrets on
    /// every start (a replica of the previous release may have written
    /// some during a rolling upgrade; there are few templates), and once
    /// the secrets copied into sessions and their commands (there may be
    /// many). Each row is rewritten only if its JSON is still as read, so a
    /// concurrent write by another replica wins. Returns how many rows it
    /// sealed.
    pub async fn seal_legacy_secrets(&self) -> StoreResult<usize> {
        let mut sealed = self.seal_legacy_templates().await?;
        let done = sqlx::query("SELECT value FROM settings WHERE name = $1")
            .bind(LEGACY_DONE)
            .fetch_optional(&self.pool)
            .await?;
        if done.is_none() {
            sealed += self.seal_legacy_sessions().await?;
            sealed += self.seal_legacy_commands().await?;
            self.setting_or_insert(LEGACY_DONE, &super::now_ms().to_string())
                .await?;
        }
        if sealed > 0 {
            tracing::info!(
                rows = sealed,
                "sealed secrets an older release stored in clear"
            );
        }
        Ok(sealed)
    }

    async fn seal_legacy_templates(&self) -> StoreResult<usize> {
        let rows = sqlx::query("SELECT id, spec, secrets FROM templates")
            .fetch_all(&self.pool)
            .await?;
        let mut sealed = 0;
        for row in rows {
            let (id, json): (TemplateId, String) = (row.try_get("id")?, row.try_get("spec")?);
            let Some(in_clear) =
                skip_corrupt(&id, from_json::<TemplateSpec>("template spec", &json))
            else {
                continue;
            };
            let has_clear = !in_clear.secret_env.values().is_empty()
                || in_clear.registry_auth.is_some_and(|a| a.password.is_some());
            if !has_clear {
                continue;
            }
            let secrets: Option<String> = row.try_get("secrets")?;
            let spec = self.open_template(&id, &json, secrets.as_deref())?;
            let stored = self.seal_template(&id, &spec)?;
            sealed += self
                .rewrite("templates", "spec", id.as_str(), &json, &stored)
                .await?;
        }
        Ok(sealed)
    }

    /// A session's secret variables are its template's `secret_env` names:
    /// the spec alone does not say which they were.
    async fn seal_legacy_sessions(&self) -> StoreResult<usize> {
        let rows = sqlx::query("SELECT id, template_id, spec FROM sessions WHERE secrets IS NULL")
            .fetch_all(&self.pool)
            .await?;
        let mut names: BTreeMap<TemplateId, Vec<String>> = BTreeMap::new();
        let mut sealed = 0;
        for row in rows {
            let (id, json): (SessionId, String) = (row.try_get("id")?, row.try_get("spec")?);
            let template_id: TemplateId = row.try_get("template_id")?;
            if !names.contains_key(&template_id) {
                let secret = self.template_secret_names(&template_id).await?;
                names.insert(template_id.clone(), secret);
            }
            let Some(mut spec) = skip_corrupt(&id, self.open_session_spec(&id, &json, None)) else {
                continue;
            };
            let secret = names
                .get(&template_id)
                .map(Vec::as_slice)
                .unwrap_or_default();
            mark_secret_env(&mut spec, secret);
            let stored = self.seal_session_spec(&spec)?;
            if stored.secrets.is_some() {
                sealed += self
                    .rewrite("sessions", "spec", id.as_str(), &json, &stored)
                    .await?;
            }
        }
        Ok(sealed)
    }

    async fn seal_legacy_commands(&self) -> StoreResult<usize> {
        let rows = sqlx::query(
            "SELECT c.id, c.payload, s.template_id FROM commands c \
             LEFT JOIN sessions s ON s.id = c.session_id \
             WHERE c.secrets IS NULL AND c.action = 'start'",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut sealed = 0;
        for row in rows {
            let (id, json): (String, String) = (row.try_get("id")?, row.try_get("payload")?);
            let template_id: Option<TemplateId> = row.try_get("template_id")?;
            let Some(mut command) = skip_corrupt(&id, self.open_command(&json, None)) else {
                continue;
            };
            if let (Action::Start { spec }, Some(template_id)) = (&mut command.action, template_id)
            {
                let secret = self.template_secret_names(&template_id).await?;
                mark_secret_env(spec, &secret);
            }
            let stored = self.seal_command(&command)?;
            if stored.secrets.is_some() {
                sealed += self
                    .rewrite("commands", "payload", &id, &json, &stored)
                    .await?;
            }
        }
        Ok(sealed)
    }

    /// The names of a template's secret variables; none if it is gone.
    async fn template_secret_names(&self, id: &TemplateId) -> StoreResult<Vec<String>> {
        Ok(self
            .get_template(id)
            .await?
            .map(|t| t.spec.secret_env.values().keys().cloned().collect())
            .unwrap_or_default())
    }

    /// Writes `stored` into row `id` of `table` if its `column` still holds
    /// `was`; 1 if it did.
    async fn rewrite(
        &self,
        table: &'static str,
        column: &'static str,
        id: &str,
        was: &str,
        stored: &Sealed,
    ) -> StoreResult<usize> {
        let _turn = self.write_turn().await;
        let done = sqlx::query(super::sql(format!(
            "UPDATE {table} SET {column} = $1, secrets = $2 \
             WHERE id = $3 AND {column} = $4"
        )))
        .bind(&stored.json)
        .bind(&stored.secrets)
        .bind(id)
        .bind(was)
        .execute(&self.pool)
        .await?;
        Ok(usize::try_from(done.rows_affected()).unwrap_or_default())
    }
}

/// A row the legacy pass cannot read is left as it is (its readers report
/// it): one damaged row must not keep the control plane from starting.
fn skip_corrupt<T>(id: &impl std::fmt::Display, read: StoreResult<T>) -> Option<T> {
    read.map_err(|err| tracing::warn!(%id, %err, "cannot read a row to seal its secrets"))
        .ok()
}

/// Marks as secret the variables of `spec` its template names so.
fn mark_secret_env(spec: &mut SessionSpec, names: &[String]) {
    for name in names {
        if spec.env.contains_key(name) {
            spec.secret_env_keys.insert(name.clone());
        }
    }
}

#[cfg(test)]
#[path = "secrets_tests.rs"]
mod tests;
