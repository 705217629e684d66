//! Warm pools: a template with `warm_pool: N` keeps N sessions started and
//! unassigned on every online agent that may run it, owned by the pool
//! (`store/pool.rs`) until a launch takes one, so that launch is a write in
//! the store, not a container start.
//!
//! - **Refill** (`run`, every 2 s, on the replica holding the singleton
//!   lock, `cluster/leader.rs`): per template and online agent (connected
//!   to any replica: the start command reaches it through the bus), one
//!   more session while fewer than N are alive; failed ones, and those of
//!   templates whose pool shrank or went away, are ended. The count and the
//!   start happen under the admission turn, so even two refills during a
//!   handover do not both fill one gap.
//! - **Take** (`take`, from `POST /sessions`): a launch that asks nothing of
//!   its own (no resources, env, idle timeout, platform or agent) gets the
//!   oldest running pooled session on a connected agent: re-owned in the
//!   store, its spec and seal made the user's. The container keeps the
//!   labels it started with (Docker cannot change a container's labels):
//!   they name the pool; the store says whose it is. Pooled sessions have
//!   no persistent home (templates with one cannot have a pool).

use crate::lifecycle::{self, Placed, change_state};
use crate::scheduler::Placement;
use crate::seal::SessionIds;
use crate::session_error::SessionResult;
use crate::state::AppState;
use crate::store::{
    AgentRecord, AuditEntry, POOL_USER, Role, SessionRecord, TemplateRecord, User, duration_ms,
};
use crate::template::SessionRequest;
use crate::tenancy::Pools;
use std::collections::BTreeMap;
use std::time::Duration;
use streamspace_protocol::{DesiredState, Phase, SessionId};

const REFILL_INTERVAL: Duration = Duration::from_secs(2);
const ACTOR: &str = "system:pool";

/// Runs until the server shuts down.
pub async fn run(state: AppState) {
    let mut tick = tokio::time::interval(REFILL_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut turns = state.leader.changes();
    while crate::cluster::leader::next_turn(&mut tick, &mut turns, &state.shutdown).await {
        if !state.leader.is_held() {
            continue;
        }
        if let Err(err) = refill(&state).await {
            tracing::warn!(error = %err, "warm pool refill failed");
        }
    }
}

fn pool_owner() -> User {
    User {
        id: POOL_USER.into(),
        username: "_pool".into(),
        role: Role::User,
        legacy_home: false,
    }
}

async fn refill(state: &AppState) -> SessionResult<()> {
    let templates = state.store.list_templates().await?;
    end_unwanted(state, &templates).await?;
    // Most installations keep no pool: then there are no agents to read.
    if templates.iter().all(|t| t.spec.warm_pool == 0) {
        return Ok(());
    }
    let agents = state.store.list_agents().await?;
    for template in templates.iter().filter(|t| t.spec.warm_pool > 0) {
        for agent in agents.iter().filter(|a| may_host(state, template, a)) {
            match top_up(state, template, agent).await {
                Ok(()) => {}
                // Expected: the agent is full, or left meanwhile.
                Err(err) if err.is_refusal() => {
                    tracing::debug!(template = %template.spec.name, agent = %agent.name, %err,
                        "cannot add to the warm pool");
                }
                Err(err) => {
                    tracing::error!(template = %template.spec.name, agent = %agent.name, %err,
                        "cannot add to the warm pool");
                }
            }
        }
    }
    Ok(())
}

fn may_host(state: &AppState, template: &TemplateRecord, agent: &AgentRecord) -> bool {
    crate::presence::status(state, agent) == "online"
        && template.spec.allows_platform(&agent.platform)
}

/// Ends pooled sessions nobody should take: failed, or beyond what their
/// template (if it still exists) keeps per agent.
async fn end_unwanted(state: &AppState, templates: &[TemplateRecord]) -> SessionResult<()> {
    let mut kept: BTreeMap<(String, String), u32> = BTreeMap::new();
    for session in state.store.pool_sessions(None).await? {
        if session.state == DesiredState::Terminated {
            continue;
        }
        let target = templates
            .iter()
            .find(|t| t.id == session.template_id)
            .map_or(0, |t| t.spec.warm_pool);
        let agent = session
            .agent_id
            .as_ref()
            .map(|a| a.to_string())
            .unwrap_or_default();
        let count = kept
            .entry((session.template_id.to_string(), agent))
            .or_default();
        let reason = if session.phase == Phase::Failed {
            "a pooled session failed: replaced"
        } else if *count >= target {
            "the template's warm pool is smaller now"
        } else {
            *count += 1;
            continue;
        };
        change_state(
            state,
            session,
            DesiredState::Terminated,
            ACTOR,
            Some(reason),
        )
        .await?;
    }
    Ok(())
}

/// Starts one more pooled session of `template` on `agent` if it has fewer
/// than the pool's size alive; counted again under the admission turn.
async fn top_up(
    state: &AppState,
    template: &TemplateRecord,
    agent: &AgentRecord,
) -> SessionResult<()> {
    let quick = state.store.pool_sizes(&template.id).await?;
    if quick.get(&agent.id).copied().unwrap_or(0) >= template.spec.warm_pool as usize {
        return Ok(());
    }
    let admission = state.store.admission().await?;
    let started = start_one(state, template, agent).await;
    admission.release().await;
    let Some(placed) = started? else {
        return Ok(());
    };
    placed.dispatch(state).await?;
    let detail = serde_json::json!({
        "template": template.spec.name, "agent": agent.name, "warm_pool": true,
    });
    crate::audit_log::sessions::created(state, ACTOR, &placed.session.id, None, detail).await;
    Ok(())
}

async fn start_one(
    state: &AppState,
    template: &TemplateRecord,
    agent: &AgentRecord,
) -> SessionResult<Option<Placed>> {
    let sizes = state.store.pool_sizes(&template.id).await?;
    if sizes.get(&agent.id).copied().unwrap_or(0) >= template.spec.warm_pool as usize {
        return Ok(None);
    }
    // The template's own amounts: what a launch that asks nothing gets.
    let Ok(granted) = template.spec.grant(SessionRequest::default()) else {
        return Ok(None);
    };
    let spec = template
        .spec
        .session_spec(&template.id, &SessionId::new(), &pool_owner(), &granted);
    let placement = Placement {
        platforms: &template.spec.platforms,
        agent_id: Some(&agent.id),
        selector: &BTreeMap::new(),
        resources: spec.resources,
        // The pool's own sessions go on every agent; `take` hands them
        // only to users whose pools hold the agent.
        pools: &Pools::Any,
    };
    let created = |agent: &AgentRecord| {
        AuditEntry::new(ACTOR, "created")
            .state("running")
            .phase("Pending")
            .message(Some(&format!(
                "started for the warm pool on agent {}",
                agent.name
            )))
    };
    let placed = lifecycle::place_new(state, &placement, spec, (template, None), created).await?;
    Ok(Some(placed))
}

/// A running pooled session of `template`, now `user`'s, if there is one
/// on a connected agent in one of `pools`; called with the admission turn
/// held, after the user's quota was checked.
pub async fn take(
    state: &AppState,
    user: &User,
    template: &TemplateRecord,
    idle: Option<Duration>,
    pools: &Pools,
) -> SessionResult<Option<SessionRecord>> {
    if template.spec.warm_pool == 0 {
        return Ok(None);
    }
    let usable = usable_agents(state, pools).await?;
    for pooled in state.store.pool_sessions(Some(&template.id)).await? {
        let Some(agent_id) = pooled.agent_id.clone() else {
            continue;
        };
        let ready = pooled.phase == Phase::Running && pooled.state == DesiredState::Running;
        if !ready || !usable.contains(&agent_id) || !state.hub.is_connected(&agent_id) {
            continue;
        }
        let mut spec = pooled.spec.clone();
        spec.user = user.username.clone();
        spec.user_id = user.id.clone();
        spec.seal = state.sealer.seal(&SessionIds {
            session: &spec.session_id,
            user: &spec.user_id,
            template: &spec.template_id,
            agent: &agent_id,
        });
        let idle_ms = idle.map(duration_ms);
        if state
            .store
            .assign_pool_session(&pooled.id, &user.id, &spec, idle_ms)
            .await?
        {
            return Ok(state.store.get_session(&pooled.id).await?);
        }
    }
    Ok(None)
}

/// The agents in `pools`.
async fn usable_agents(
    state: &AppState,
    pools: &Pools,
) -> SessionResult<std::collections::HashSet<streamspace_protocol::AgentId>> {
    let agents = state.store.list_agents().await?;
    Ok(agents
        .into_iter()
        .filter(|a| pools.allows(&a.pool))
        .map(|a| a.id)
        .collect())
}
