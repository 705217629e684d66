//! Per-user quotas on sessions, CPU and memory: server-wide defaults from the
//! configuration, per-user overrides in the store, enforced on create and on
//! wake.
//!
//! How sessions count: every session that is not terminated counts toward the
//! session limit, hibernated or not (it still holds a home and a slot). Only
//! sessions meant to run count toward CPU and memory, because hibernation
//! releases compute; waking one re-checks CPU and memory.
//! Sessions whose template sets no CPU or memory count as zero for those.

use crate::session_error::{QuotaExceeded, SessionResult};
use crate::state::AppState;
use crate::store::{Limits, SessionRecord, StoreResult, Usage};
use serde::{Deserialize, Serialize};
use streamspace_protocol::{Cpu, Memory, Resources, UserId};

/// The limits that apply to `user_id`.
pub async fn limits_for(state: &AppState, user_id: &UserId) -> StoreResult<Limits> {
    let own = state.store.quota_override(user_id).await?;
    Ok(own.over(state.config.quota_defaults))
}

/// A new session asking for `resources` fits the user's quota.
pub async fn check_create(
    state: &AppState,
    user_id: &UserId,
    resources: &Resources,
) -> SessionResult<()> {
    let limits = limits_for(state, user_id).await?;
    let usage = state.store.usage(user_id).await?;
    if let Some(max) = limits.max_sessions
        && usage.sessions + 1 > max
    {
        return Err(QuotaExceeded::Sessions {
            used: usage.sessions,
            max,
        }
        .into());
    }
    Ok(check_compute(&limits, &usage, resources)?)
}

/// Waking `session` fits its owner's CPU and memory quota.
pub async fn check_wake(state: &AppState, session: &SessionRecord) -> SessionResult<()> {
    let limits = limits_for(state, &session.user_id).await?;
    let usage = state.store.usage(&session.user_id).await?;
    Ok(check_compute(&limits, &usage, &session.spec.resources)?)
}

fn check_compute(limits: &Limits, usage: &Usage, wanted: &Resources) -> Result<(), QuotaExceeded> {
    let cpu = wanted.cpu.map_or(0, Cpu::millicores);
    // Saturating: usage summed from absurd requests reaches u64::MAX.
    if let Some(max) = limits.cpu_millis
        && usage.cpu_millis.saturating_add(cpu) > max
    {
        return Err(QuotaExceeded::Cpu {
            used: Cpu(usage.cpu_millis),
            requested: Cpu(cpu),
            max: Cpu(max),
        });
    }
    let memory = wanted.memory.map_or(0, Memory::bytes);
    if let Some(max) = limits.memory_bytes
        && usage.memory_bytes.saturating_add(memory) > max
    {
        return Err(QuotaExceeded::Memory {
            used: Memory(usage.memory_bytes),
            requested: Memory(memory),
            max: Memory(max),
        });
    }
    Ok(())
}

/// Limits as the API shows and accepts them: quantities as strings, `null`
/// for "no limit" (or, in an override, "the default").
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = Limits)]
pub struct LimitsView {
    /// Sessions not terminated, hibernated ones included.
    #[serde(default)]
    pub max_sessions: Option<u64>,
    #[serde(default)]
    pub cpu: Option<Cpu>,
    #[serde(default)]
    pub memory: Option<Memory>,
}

impl From<Limits> for LimitsView {
    fn from(l: Limits) -> Self {
        LimitsView {
            max_sessions: l.max_sessions,
            cpu: l.cpu_millis.map(Cpu),
            memory: l.memory_bytes.map(Memory),
        }
    }
}

impl From<LimitsView> for Limits {
    fn from(v: LimitsView) -> Self {
        Limits {
            max_sessions: v.max_sessions,
            cpu_millis: v.cpu.map(Cpu::millicores),
            memory_bytes: v.memory.map(Memory::bytes),
        }
    }
}

/// What a user's sessions hold.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = QuotaUsage)]
pub struct UsageView {
    pub sessions: u64,
    pub cpu: Cpu,
    pub memory: Memory,
}

/// `GET …/quota`: what applies, what was set for this user, what is used.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = Quota)]
pub struct QuotaView {
    /// What applies.
    pub limits: LimitsView,
    /// What was set for this user; `null` means the server default.
    #[serde(rename = "override")]
    pub user_override: LimitsView,
    pub usage: UsageView,
}

pub async fn view(state: &AppState, user_id: &UserId) -> StoreResult<QuotaView> {
    let own = state.store.quota_override(user_id).await?;
    let usage = state.store.usage(user_id).await?;
    Ok(QuotaView {
        limits: own.over(state.config.quota_defaults).into(),
        user_override: own.into(),
        usage: UsageView {
            sessions: usage.sessions,
            cpu: Cpu(usage.cpu_millis),
            memory: Memory(usage.memory_bytes),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_fall_back_to_defaults() {
        let defaults = Limits {
            max_sessions: Some(5),
            cpu_millis: Some(4000),
            memory_bytes: None,
        };
        let own = Limits {
            max_sessions: Some(1),
            ..Limits::default()
        };
        let effective = own.over(defaults);
        assert_eq!(effective.max_sessions, Some(1));
        assert_eq!(effective.cpu_millis, Some(4000));
        assert_eq!(effective.memory_bytes, None);
    }

    #[test]
    fn compute_is_checked_against_what_runs() {
        let limits = Limits {
            cpu_millis: Some(1000),
            memory_bytes: Some(1 << 30),
            ..Limits::default()
        };
        let usage = Usage {
            sessions: 2,
            cpu_millis: 1000,
            memory_bytes: 0,
        };
        let one_core = Resources {
            cpu: Some(Cpu(1000)),
            memory: None,
            gpu: None,
        };
        let err = check_compute(&limits, &usage, &one_core).expect_err("over the cpu limit");
        assert_eq!(
            crate::session_error::SessionError::from(err).to_string(),
            "quota exceeded: cpu: 1 in use + 1 requested > 1 allowed"
        );
        assert!(check_compute(&limits, &Usage::default(), &one_core).is_ok());
        let saturated = Usage {
            memory_bytes: u64::MAX,
            ..Usage::default()
        };
        let some_memory = Resources {
            cpu: None,
            memory: Some(Memory(1)),
            gpu: None,
        };
        assert!(check_compute(&limits, &saturated, &some_memory).is_err());
    }
}
