//! Control-plane-wide values every replica shares.

use super::{Store, StoreError, StoreResult, from_json, to_json};
use serde::{Deserialize, Serialize};
use sqlx::Row;

impl Store {
    /// The value of setting `name`, stored as `default` if it has none yet.
    /// Replicas starting together agree: the first insert wins and every
    /// one reads what it wrote.
    pub async fn setting_or_insert(&self, name: &str, default: &str) -> StoreResult<String> {
        let _turn = self.write_turn().await;
        sqlx::query(
            "INSERT INTO settings (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(default)
        .execute(&self.pool)
        .await?;
        let row = sqlx::query("SELECT value FROM settings WHERE name = $1")
            .bind(name)
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get("value")?)
    }
}

/// Who must use a second factor (TOTP) to log in with a password.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MfaRequired {
    #[default]
    Off,
    Admins,
    Everyone,
}

/// The settings an admin changes at run time (`GET|PUT /api/v1/settings`),
/// shared by every replica through the `settings` table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Who must enrol TOTP before doing anything else.
    pub mfa_required: MfaRequired,
    /// Whether local accounts may log in with a password. When off, only
    /// `break_glass_admin` may (so single sign-on trouble cannot lock
    /// everyone out).
    pub password_login: bool,
    /// A local admin who may always log in with a password.
    pub break_glass_admin: Option<String>,
    /// Audit events older than this many days are deleted.
    pub audit_retention_days: u32,
    /// Record every session's viewers, whatever its template says
    /// (docs/RECORDING.md).
    #[serde(default)]
    pub record_all_sessions: bool,
    /// Recordings older than this many days are deleted.
    #[serde(default = "default_recording_retention_days")]
    pub recording_retention_days: u32,
    /// The oldest recordings are deleted while all together take more
    /// than this many MiB (the hard cap is `--recording-max-total`).
    #[serde(default = "default_recording_retention_mib")]
    pub recording_retention_mib: u64,
}

fn default_recording_retention_days() -> u32 {
    30
}

fn default_recording_retention_mib() -> u64 {
    10 * 1024
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            mfa_required: MfaRequired::Off,
            password_login: true,
            break_glass_admin: None,
            audit_retention_days: 365,
            record_all_sessions: false,
            recording_retention_days: default_recording_retention_days(),
            recording_retention_mib: default_recording_retention_mib(),
        }
    }
}

/// The `settings` row that holds [`Settings`], as one JSON document so a
/// change is one atomic write.
const ADMIN_SETTINGS: &str = "admin_settings";

impl Store {
    /// The admin settings, or the defaults when none were saved. Fields a
    /// newer release added come out as their defaults.
    pub async fn settings(&self) -> StoreResult<Settings> {
        let row = sqlx::query("SELECT value FROM settings WHERE name = $1")
            .bind(ADMIN_SETTINGS)
            .fetch_optional(&self.pool)
            .await?;
        let Some(row) = row else {
            return Ok(Settings::default());
        };
        let mut saved: serde_json::Value =
            from_json("settings", &row.try_get::<String, _>("value")?)?;
        let mut merged = serde_json::to_value(Settings::default()).unwrap_or_default();
        if let (Some(merged), Some(saved)) = (merged.as_object_mut(), saved.as_object_mut()) {
            merged.extend(std::mem::take(saved));
        }
        serde_json::from_value(merged).map_err(|e| StoreError::Corrupt(format!("settings: {e}")))
    }

    pub async fn save_settings(&self, settings: &Settings) -> StoreResult<()> {
        let _turn = self.write_turn().await;
        sqlx::query(
            "INSERT INTO settings (name, value) VALUES ($1, $2) \
             ON CONFLICT (name) DO UPDATE SET value = excluded.value",
        )
        .bind(ADMIN_SETTINGS)
        .bind(to_json(settings))
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn settings_round_trip(url: &str) {
        let store = Store::connect(url).await.expect("store");
        assert_eq!(store.settings().await.expect("read"), Settings::default());
        let changed = Settings {
            mfa_required: MfaRequired::Admins,
            password_login: false,
            break_glass_admin: Some("root".into()),
            audit_retention_days: 30,
            record_all_sessions: true,
            recording_retention_days: 7,
            recording_retention_mib: 100,
        };
        store.save_settings(&changed).await.expect("write");
        store.save_settings(&changed).await.expect("overwrite");
        assert_eq!(store.settings().await.expect("read"), changed);
    }

    on_both_engines!(settings_round_trip);
}
