//! Why the session logic (lifecycle, quota, placement) refused or failed, in
//! its own terms: no status codes here. The API turns these into HTTP answers
//! in one place (`From<SessionError> for ApiError` in `error.rs`); the
//! reconciler tells expected refusals from store failures by variant.

use crate::store::StoreError;
use streamspace_protocol::{AgentId, Cpu, Memory};

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("session not found")]
    NotFound,
    #[error("the session has no agent")]
    NoAgent,
    #[error("this session's platform cannot hibernate sessions")]
    CannotHibernate,
    /// Only termination is left for a session that is (being) terminated.
    #[error(
        "the session is {}: a terminated session cannot run again; start a new one from its template",
        if *.terminated { "terminated" } else { "being terminated" }
    )]
    Ending { terminated: bool },
    #[error("the session is already terminated")]
    AlreadyTerminated,
    /// It moved under every attempt (agent reports kept landing).
    #[error("the session kept changing while the request was applied: try again")]
    KeptChanging,
    #[error("quota exceeded: {0}")]
    Quota(#[from] QuotaExceeded),
    #[error(transparent)]
    Placement(#[from] PlacementError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub type SessionResult<T> = Result<T, SessionError>;

impl SessionError {
    /// A refusal the caller could expect (the session or the platform says
    /// no), as opposed to the store failing.
    pub fn is_refusal(&self) -> bool {
        !matches!(self, SessionError::Store(_))
    }
}

/// Which quota a session would exceed, with the numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum QuotaExceeded {
    #[error("{used} of {max} sessions in use: terminate one first")]
    Sessions { used: u64, max: u64 },
    #[error("cpu: {used} in use + {requested} requested > {max} allowed")]
    Cpu { used: Cpu, requested: Cpu, max: Cpu },
    #[error("memory: {used} in use + {requested} requested > {max} allowed")]
    Memory {
        used: Memory,
        requested: Memory,
        max: Memory,
    },
}

/// Why no agent could take a session.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlacementError {
    /// The `agent_id` asked for names no agent.
    #[error("no agent with id {0:?}")]
    UnknownAgent(AgentId),
    /// The agent asked for runs another platform or lacks the selected labels.
    #[error(
        "agent {name} runs {platform} or lacks the selected labels, so this session may not use it"
    )]
    AgentNotAllowed { name: String, platform: String },
    /// The agent asked for is in a pool none of the user's groups may use.
    #[error(
        "agent {name} is in pool {pool:?}, and your groups may use only pool(s) {}: \
         pick an agent in one of those, or ask an admin to give one of your groups pool {pool:?}",
        quoted(.allowed)
    )]
    OutsidePools {
        name: String,
        pool: String,
        allowed: Vec<String>,
    },
    /// Only agents in pools the user may not use would have matched.
    #[error(
        "no {}agent in your pool(s) {} matches; the agents that would are in pool(s) {}, \
         which none of your groups may use: ask an admin to give one of your groups such a pool",
        platform_prefix(.platforms),
        quoted(.allowed),
        quoted(.elsewhere)
    )]
    NoAgentInPools {
        platforms: Vec<String>,
        allowed: Vec<String>,
        elsewhere: Vec<String>,
    },
    #[error("agent {name} cannot take the session: it is {why}")]
    AgentUnfit { name: String, why: Unfit },
    /// The agent asked for is degraded: its platform's problem says why.
    #[error(
        "agent {name} cannot take the session: it is degraded ({problem}); \
         try again once its platform answers, or let placement pick another agent"
    )]
    AgentDegraded { name: String, problem: String },
    /// Every agent that would otherwise fit is degraded.
    #[error(
        "no healthy {}agent can take the session: {}; sessions go to such an agent again \
         once its platform answers",
        platform_prefix(.platforms),
        .degraded.iter().map(|(name, problem)| format!("{name} is degraded ({problem})"))
            .collect::<Vec<_>>().join("; ")
    )]
    OnlyDegraded {
        platforms: Vec<String>,
        /// (agent name, its platform's problem).
        degraded: Vec<(String, String)>,
    },
    #[error(
        "no {}agent is enrolled: an admin can create an enrollment token \
         (POST /api/v1/agents/enrollment-tokens) and start an agent with it",
        platform_prefix(.platforms)
    )]
    NoAgent { platforms: Vec<String> },
    #[error(
        "no online {}agent with free capacity: {}",
        platform_prefix(.platforms),
        count_unfit(.refused)
    )]
    NoCapacity {
        platforms: Vec<String>,
        refused: Vec<Unfit>,
    },
    #[error(
        "no online {}agent has {gpus} free GPU{}: {} (agents report the NVIDIA GPUs they \
         detect, or those declared with --gpus)",
        platform_prefix(.platforms),
        if *.gpus == 1 { "" } else { "s" },
        count_unfit(.refused)
    )]
    NoGpu {
        gpus: u32,
        platforms: Vec<String>,
        refused: Vec<Unfit>,
    },
}

impl PlacementError {
    /// Whether the user's pools ruled out the agents (not allowed, rather
    /// than busy).
    pub fn is_outside_pools(&self) -> bool {
        matches!(
            self,
            PlacementError::OutsidePools { .. } | PlacementError::NoAgentInPools { .. }
        )
    }

    /// Whether the request named an agent it may not use (its fault), rather
    /// than the agents having no room (for now).
    pub fn is_bad_agent_id(&self) -> bool {
        matches!(
            self,
            PlacementError::UnknownAgent(_) | PlacementError::AgentNotAllowed { .. }
        )
    }
}

/// Why an agent cannot take a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Unfit {
    #[error("offline")]
    Offline,
    #[error("draining")]
    Draining,
    /// Online, but its platform's last health check found a problem.
    #[error("degraded")]
    Degraded,
    #[error("full")]
    Full,
    #[error("short of free GPUs")]
    FewGpus,
}

/// `"docker/kubernetes "`, or nothing when any platform would do.
fn platform_prefix(platforms: &[String]) -> String {
    match platforms {
        [] => String::new(),
        _ => format!("{} ", platforms.join("/")),
    }
}

/// `"a", "b"`.
fn quoted(names: &[String]) -> String {
    let quoted: Vec<String> = names.iter().map(|n| format!("{n:?}")).collect();
    quoted.join(", ")
}

/// `"1 offline, 2 full"`.
fn count_unfit(refused: &[Unfit]) -> String {
    let counts: Vec<String> = [
        Unfit::Offline,
        Unfit::Draining,
        Unfit::Degraded,
        Unfit::FewGpus,
        Unfit::Full,
    ]
    .into_iter()
    .filter_map(|kind| {
        let n = refused.iter().filter(|r| **r == kind).count();
        (n > 0).then(|| format!("{n} {kind}"))
    })
    .collect();
    counts.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placement_errors_say_what_was_refused() {
        let err = PlacementError::NoCapacity {
            platforms: vec!["docker".into()],
            refused: vec![Unfit::Full, Unfit::Offline, Unfit::Full],
        };
        assert_eq!(
            err.to_string(),
            "no online docker agent with free capacity: 1 offline, 2 full"
        );
        let err = PlacementError::NoGpu {
            gpus: 1,
            platforms: vec![],
            refused: vec![Unfit::FewGpus, Unfit::FewGpus, Unfit::Offline],
        };
        assert!(
            err.to_string()
                .starts_with("no online agent has 1 free GPU: 1 offline, 2 short of free GPUs"),
            "{err}"
        );
        let err = PlacementError::NoAgent { platforms: vec![] };
        assert!(err.to_string().starts_with("no agent is enrolled"), "{err}");
    }

    #[test]
    fn degraded_agents_are_named_with_their_problem() {
        let err = PlacementError::OnlyDegraded {
            platforms: vec!["docker".into()],
            degraded: vec![
                ("a".into(), "engine hung".into()),
                ("b".into(), "disk full".into()),
            ],
        };
        assert_eq!(
            err.to_string(),
            "no healthy docker agent can take the session: a is degraded (engine hung); \
             b is degraded (disk full); sessions go to such an agent again once its \
             platform answers"
        );
        let err = PlacementError::NoCapacity {
            platforms: vec![],
            refused: vec![Unfit::Degraded, Unfit::Full],
        };
        assert_eq!(
            err.to_string(),
            "no online agent with free capacity: 1 degraded, 1 full"
        );
    }

    #[test]
    fn ending_names_how_far_it_got() {
        let err = SessionError::Ending { terminated: false };
        assert!(
            err.to_string()
                .starts_with("the session is being terminated:")
        );
        assert!(SessionError::Quota(QuotaExceeded::Sessions { used: 1, max: 1 }).is_refusal());
        assert!(!SessionError::Store(StoreError::Corrupt("x".into())).is_refusal());
    }
}
