//! Placement: which agent runs a new session.
//!
//! An explicit `agent_id` is honoured if that agent can take the session.
//! Otherwise the candidates are the agents of the allowed platforms that are
//! online, not draining, not degraded (their platform's health check found
//! a problem) and have room (sessions, CPU, memory, free GPUs); the least
//! loaded wins. When nothing fits, the error counts why, a session asking
//! for GPUs says how many no agent had free, and when only degraded agents
//! would have fitted it names them with their problems.
//!
//! Agent pools bound all of it: an agent outside the user's pools
//! (`tenancy.rs`) is never chosen, whether named by `agent_id`, matched by
//! the selector or neither; the refusal names the agent's pool (or the
//! pools that would have matched) and the user's pools.

use crate::presence::{problem as health_problem, status as agent_status};
use crate::session_error::{PlacementError, SessionResult, Unfit};
use crate::state::AppState;
use crate::store::{AgentLoad, AgentRecord};
use crate::template::platform_allowed;
use crate::tenancy::Pools;
use std::collections::BTreeMap;
use streamspace_protocol::{AgentId, Capacity, Cpu, Memory, Resources};

pub struct Placement<'a> {
    /// Platforms the session may run on (requested, or the template's);
    /// empty means any container platform, never libvirt (a container image
    /// cannot boot as a VM).
    pub platforms: &'a [String],
    pub agent_id: Option<&'a AgentId>,
    /// Labels an agent must carry (`region` also matches its region;
    /// `pool` matches only its pool, never a label it gave itself).
    pub selector: &'a BTreeMap<String, String>,
    pub resources: Resources,
    /// The agent pools the session's user may use.
    pub pools: &'a Pools,
}

pub async fn choose(state: &AppState, placement: &Placement<'_>) -> SessionResult<AgentRecord> {
    let platform_ok = |a: &AgentRecord| {
        platform_allowed(placement.platforms, &a.platform)
            && matches_selector(a, placement.selector)
    };

    if let Some(id) = placement.agent_id {
        let (agent, load) = state
            .store
            .agent_with_load(id)
            .await?
            .ok_or_else(|| PlacementError::UnknownAgent(id.clone()))?;
        if !placement.pools.allows(&agent.pool) {
            return Err(PlacementError::OutsidePools {
                name: agent.name,
                pool: agent.pool,
                allowed: placement.pools.names(),
            }
            .into());
        }
        if !platform_ok(&agent) {
            return Err(PlacementError::AgentNotAllowed {
                name: agent.name,
                platform: agent.platform,
            }
            .into());
        }
        return match fitness(state, &agent, load, &placement.resources) {
            Ok(()) => Ok(agent),
            Err(Unfit::Degraded) => Err(PlacementError::AgentDegraded {
                problem: health_problem(state, &agent).unwrap_or_default(),
                name: agent.name,
            }
            .into()),
            Err(why) => Err(PlacementError::AgentUnfit {
                name: agent.name,
                why,
            }
            .into()),
        };
    }

    let loads = state.store.agent_loads().await?;
    let load_of = |a: &AgentRecord| loads.get(&a.id).copied().unwrap_or_default();
    let mut best: Option<(f64, AgentRecord)> = None;
    let mut refused = Vec::new();
    let mut degraded = Vec::new();
    let mut elsewhere = Vec::new();
    for agent in state.store.list_agents().await? {
        if !platform_ok(&agent) {
            continue;
        }
        if !placement.pools.allows(&agent.pool) {
            elsewhere.push(agent.pool);
            continue;
        }
        let load = load_of(&agent);
        match fitness(state, &agent, load, &placement.resources) {
            Ok(()) => {
                let score = utilisation(&agent, load);
                if best.as_ref().is_none_or(|(s, _)| score < *s) {
                    best = Some((score, agent));
                }
            }
            Err(why) => {
                if why == Unfit::Degraded {
                    let problem = health_problem(state, &agent).unwrap_or_default();
                    degraded.push((agent.name, problem));
                }
                refused.push(why);
            }
        }
    }
    let platforms = placement.platforms.to_vec();
    let Some((_, agent)) = best else {
        if !degraded.is_empty() && degraded.len() == refused.len() {
            return Err(PlacementError::OnlyDegraded {
                platforms,
                degraded,
            }
            .into());
        }
        let gpus = placement.resources.gpus();
        return Err(match (refused.is_empty(), gpus) {
            (true, _) if !elsewhere.is_empty() => {
                elsewhere.sort();
                elsewhere.dedup();
                PlacementError::NoAgentInPools {
                    platforms,
                    allowed: placement.pools.names(),
                    elsewhere,
                }
            }
            (true, _) => PlacementError::NoAgent { platforms },
            (false, 0) => PlacementError::NoCapacity { platforms, refused },
            (false, gpus) => PlacementError::NoGpu {
                gpus,
                platforms,
                refused,
            },
        }
        .into());
    };
    Ok(agent)
}

fn matches_selector(agent: &AgentRecord, selector: &BTreeMap<String, String>) -> bool {
    selector.iter().all(|(key, value)| match key.as_str() {
        // An agent's labels are its own word; its pool is an admin's.
        "pool" => agent.pool == *value,
        _ => {
            agent.labels.get(key) == Some(value)
                || (key == "region" && agent.region.as_deref() == Some(value.as_str()))
        }
    })
}

fn fitness(
    state: &AppState,
    agent: &AgentRecord,
    load: AgentLoad,
    wanted: &Resources,
) -> Result<(), Unfit> {
    match agent_status(state, agent) {
        "offline" => return Err(Unfit::Offline),
        "draining" => return Err(Unfit::Draining),
        "degraded" => return Err(Unfit::Degraded),
        _ => {}
    }
    if too_few_gpus(&agent.capacity, load, wanted) {
        Err(Unfit::FewGpus)
    } else if over_capacity(&agent.capacity, load, wanted) {
        Err(Unfit::Full)
    } else {
        Ok(())
    }
}

/// Whether the GPUs `wanted` are more than those of `capacity` that the
/// sessions in `load` (hibernated and failed ones included) do not hold. Unlike CPU
/// and memory, an agent that reports none has none.
fn too_few_gpus(capacity: &Capacity, load: AgentLoad, wanted: &Resources) -> bool {
    let wanted = u64::from(wanted.gpus());
    wanted > 0 && load.gpus.saturating_add(wanted) > u64::from(capacity.gpus)
}

/// Whether `wanted` on top of `load` goes past `capacity`. The additions
/// saturate: a load summed from absurd requests reaches `u64::MAX`, which
/// must read as full, not wrap around to nearly empty.
fn over_capacity(capacity: &Capacity, load: AgentLoad, wanted: &Resources) -> bool {
    let sessions_full = capacity.max_sessions > 0 && load.sessions >= capacity.max_sessions;
    let more_cpu = wanted.cpu.map_or(0, Cpu::millicores);
    let more_memory = wanted.memory.map_or(0, Memory::bytes);
    let cpu = load.cpu_millis.saturating_add(more_cpu);
    let memory = load.memory_bytes.saturating_add(more_memory);
    let cpu_full = capacity.cpu.is_some_and(|c| cpu > c.millicores());
    let memory_full = capacity.memory.is_some_and(|m| memory > m.bytes());
    sessions_full || cpu_full || memory_full
}

/// The fraction of its most used dimension an agent has committed.
fn utilisation(agent: &AgentRecord, load: AgentLoad) -> f64 {
    let c = &agent.capacity;
    let ratio = |used: u64, total: Option<u64>| match total {
        Some(t) if t > 0 => used as f64 / t as f64,
        _ => 0.0,
    };
    let sessions = if c.max_sessions > 0 {
        f64::from(load.sessions) / f64::from(c.max_sessions)
    } else {
        // Without a session limit, fewer sessions still means less loaded.
        f64::from(load.sessions) * 1e-6
    };
    sessions
        .max(ratio(load.cpu_millis, c.cpu.map(|x| x.millicores())))
        .max(ratio(load.memory_bytes, c.memory.map(|x| x.bytes())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capacity_counts_sessions_cpu_and_memory() {
        let capacity = Capacity {
            max_sessions: 2,
            cpu: Some(Cpu(2000)),
            memory: None,
            ..Capacity::default()
        };
        let one_core = Resources {
            cpu: Some(Cpu(1000)),
            memory: Some(Memory(1 << 40)),
            gpu: None,
        };
        // Memory has no limit here, but its addition must not overflow.
        let load = |sessions, cpu_millis| AgentLoad {
            sessions,
            cpu_millis,
            memory_bytes: u64::MAX,
            gpus: 0,
        };
        assert!(!over_capacity(&capacity, load(1, 1000), &one_core));
        assert!(over_capacity(&capacity, load(2, 0), &one_core));
        assert!(over_capacity(&capacity, load(1, 1001), &one_core));
        assert!(over_capacity(&capacity, load(0, u64::MAX), &one_core));
    }

    #[test]
    fn gpus_are_counted_and_an_agent_without_any_has_none() {
        let gpus = |n: u32| Capacity {
            gpus: n,
            ..Capacity::default()
        };
        let asking = |n: u32| Resources {
            gpu: Some(n),
            ..Resources::default()
        };
        let holding = |n: u64| AgentLoad {
            gpus: n,
            ..AgentLoad::default()
        };
        assert!(!too_few_gpus(&gpus(0), holding(0), &Resources::default()));
        assert!(too_few_gpus(&gpus(0), holding(0), &asking(1)));
        assert!(!too_few_gpus(&gpus(2), holding(1), &asking(1)));
        assert!(too_few_gpus(&gpus(2), holding(1), &asking(2)));
        assert!(too_few_gpus(&gpus(2), holding(u64::MAX), &asking(1)));
    }
}
