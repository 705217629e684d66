//! Per-user quotas on sessions, CPU and memory: server-wide defaults from the
//! configuration, per-user overrides in the store, enforced on create and on
//! wake.
//!
//! How sessions count: every session that is not terminated counts toward the
//! session limit, hibernated or not (it still holds a home and a slot). Only
//! sessions meant to run count toward CPU and memory, because hibernation
//! releases compute; waking one re-checks CPU and memory.
//! Sessions whose template sets no CPU or memory count as zero for those.
//!
//! Groups: a user's limit in each dimension is the most generous of their
//! own (their override, else the server default) and those of their groups
//! (docs/GROUPS.md). No limit is the most generous of all; a group that sets
//! no limit in a dimension takes no part in it.

use crate::session_error::{QuotaExceeded, SessionResult};
use crate::state::AppState;
use crate::store::{GroupRecord, Limits, SessionRecord, StoreResult, Usage};
use serde::{Deserialize, Serialize};
use streamspace_protocol::{Cpu, Memory, Resources, UserId};

/// The limits that apply to a user with override `own` in `groups`.
fn limits_of(state: &AppState, own: Limits, groups: &[GroupRecord]) -> Limits {
    let group_limits: Vec<Limits> = groups.iter().map(|g| g.limits).collect();
    most_generous(own.over(state.config.quota_defaults), &group_limits)
}

/// The limits that apply to `user_id` in `groups`, and what they use now:
/// one query (admission waits on it; the groups were read beforehand,
/// and only admins change them).
async fn limits_and_usage(
    state: &AppState,
    user_id: &UserId,
    groups: &[GroupRecord],
) -> StoreResult<(Limits, Usage)> {
    let (own, usage) = state.store.override_and_usage(user_id).await?;
    Ok((limits_of(state, own, groups), usage))
}

/// Per dimension, the most generous of `own` and `groups`: `None` (no
/// limit) in `own` wins; a group's `None` means it sets none, so it is
/// left out.
pub fn most_generous(own: Limits, groups: &[Limits]) -> Limits {
    let pick = |own: Option<u64>, of: fn(&Limits) -> Option<u64>| {
        own.map(|mine| groups.iter().filter_map(of).fold(mine, u64::max))
    };
    Limits {
        max_sessions: pick(own.max_sessions, |l| l.max_sessions),
        cpu_millis: pick(own.cpu_millis, |l| l.cpu_millis),
        memory_bytes: pick(own.memory_bytes, |l| l.memory_bytes),
    }
}

/// A new session asking for `resources` fits the user's quota.
pub async fn check_create(
    state: &AppState,
    user_id: &UserId,
    groups: &[GroupRecord],
    resources: &Resources,
) -> SessionResult<()> {
    let (limits, usage) = limits_and_usage(state, user_id, groups).await?;
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
    let groups = state.store.groups_of(&session.user_id).await?;
    let (limits, usage) = limits_and_usage(state, &session.user_id, &groups).await?;
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

/// `GET …/quota`: what applies, what was set for this user, what their
/// groups give, what is used.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = Quota)]
pub struct QuotaView {
    /// What applies: per dimension the most generous of `own` and `groups`.
    pub limits: LimitsView,
    /// What was set for this user; `null` means the server default.
    #[serde(rename = "override")]
    pub user_override: LimitsView,
    /// The user's own limits: the override, else the server default.
    pub own: LimitsView,
    /// The limits of each of the user's groups (`null`: the group sets none).
    pub groups: Vec<GroupLimits>,
    pub usage: UsageView,
}

/// One group's part in a user's quota.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct GroupLimits {
    pub group: String,
    pub limits: LimitsView,
}

pub async fn view(state: &AppState, user_id: &UserId) -> StoreResult<QuotaView> {
    let groups = state.store.groups_of(user_id).await?;
    let (user_override, usage) = state.store.override_and_usage(user_id).await?;
    let own = user_override.over(state.config.quota_defaults);
    Ok(QuotaView {
        limits: limits_of(state, user_override, &groups).into(),
        user_override: user_override.into(),
        own: own.into(),
        groups: groups
            .into_iter()
            .map(|g| GroupLimits {
                group: g.name,
                limits: g.limits.into(),
            })
            .collect(),
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
    fn the_most_generous_limit_applies_per_dimension() {
        let limits = |s, c, m| Limits {
            max_sessions: s,
            cpu_millis: c,
            memory_bytes: m,
        };
        let own = limits(Some(2), Some(1000), None);
        let groups = [
            limits(Some(5), None, Some(1)),
            limits(Some(3), Some(500), None),
        ];
        // Sessions: the larger group's 5; cpu: own 1000 beats the group's
        // 500 (the other sets none); memory: own has no limit, which wins.
        assert_eq!(
            most_generous(own, &groups),
            limits(Some(5), Some(1000), None)
        );
        assert_eq!(most_generous(own, &[]), own);
        let unlimited_group_part = [limits(None, None, None)];
        assert_eq!(most_generous(own, &unlimited_group_part), own);
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
