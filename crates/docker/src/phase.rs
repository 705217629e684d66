//! From a container's real state to a session [`Phase`]. Pure, unit-tested.
//!
//! # Hibernated or failed?
//!
//! A stopped container looks the same whether we stopped it (hibernation) or
//! it died by itself, and a container's labels cannot be changed after
//! creation to record why it stopped. So the rule, in order:
//!
//! 1. `OOMKilled` → **Failed** ("ran out of memory"), whoever stopped it.
//! 2. This platform asked for the stop ([`Intent::Hibernate`], kept in
//!    memory until the next start, wake or terminate) → **Hibernated**,
//!    whatever the exit code (a stop that needed SIGKILL exits with 137);
//!    it is removing the container ([`Intent::Terminate`]) → **Stopping**.
//! 3. Otherwise (an agent restarted since, or an operator typed
//!    `docker stop`), the exit code decides: 0 or death by a stop signal
//!    (SIGHUP 129, SIGINT 130, SIGKILL 137, SIGTERM 143) means somebody
//!    stopped it on purpose → **Hibernated**; any other code (1, SIGSEGV
//!    139, …) is a crash → **Failed** with the exit code, Docker's error and
//!    the last log lines.
//!
//! A removed container is **Terminated** if this platform removed it and
//! **Failed** ("removed outside StreamSpace") otherwise; see `watch.rs`.

use bollard::models::{ContainerState, ContainerStateStatusEnum};
use streamspace_agent::intent::Intent;
use streamspace_protocol::Phase;

/// A session's phase as derived from its container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observation {
    pub phase: Phase,
    pub message: Option<String>,
    /// The container ran and failed: its last log lines explain why.
    pub wants_logs: bool,
}

impl Observation {
    fn phase(phase: Phase) -> Self {
        Observation {
            phase,
            message: None,
            wants_logs: false,
        }
    }

    fn with(phase: Phase, message: String) -> Self {
        Observation {
            phase,
            message: Some(message),
            wants_logs: false,
        }
    }

    fn failed_with_logs(message: String) -> Self {
        Observation {
            phase: Phase::Failed,
            message: Some(message),
            wants_logs: true,
        }
    }
}

/// Exit codes of a process ended by a signal someone sends to stop it on
/// purpose (128 + SIGHUP, SIGINT, SIGKILL, SIGTERM).
const STOP_SIGNAL_EXITS: [i64; 4] = [129, 130, 137, 143];

/// The phase of a session whose container is in `state`.
pub fn observe(state: &ContainerState, intent: Option<Intent>) -> Observation {
    let error = state.error.as_deref().filter(|e| !e.is_empty());
    match state.status {
        Some(ContainerStateStatusEnum::RUNNING) => Observation::phase(Phase::Running),
        Some(ContainerStateStatusEnum::RESTARTING) => Observation::phase(Phase::Starting),
        Some(ContainerStateStatusEnum::CREATED) => match error {
            Some(error) if crate::gpu::is_missing_driver(error) => Observation::with(
                Phase::Failed,
                format!(
                    "the session's container could not start: {}",
                    crate::gpu::missing_driver(error)
                ),
            ),
            Some(error) => Observation::with(
                Phase::Failed,
                format!("the session's container could not start: {error}"),
            ),
            // Hibernated before it ever ran: it stays created, not started.
            None if intent == Some(Intent::Hibernate) => Observation::phase(Phase::Hibernated),
            None => Observation::phase(Phase::Starting),
        },
        Some(ContainerStateStatusEnum::PAUSED) => {
            Observation::with(Phase::Hibernated, "container is paused".into())
        }
        Some(ContainerStateStatusEnum::STOPPING) => match intent {
            Some(Intent::Terminate) => Observation::phase(Phase::Stopping),
            _ => Observation::phase(Phase::Hibernating),
        },
        Some(ContainerStateStatusEnum::REMOVING) => Observation::phase(Phase::Stopping),
        Some(ContainerStateStatusEnum::DEAD) => Observation::failed_with_logs(format!(
            "the session's container is dead (Docker could not stop or remove it){}",
            error.map(|e| format!(": {e}")).unwrap_or_default()
        )),
        Some(ContainerStateStatusEnum::EXITED) => observe_exit(state, intent, error),
        Some(ContainerStateStatusEnum::EMPTY) | None => {
            Observation::with(Phase::Pending, "Docker reports no container state".into())
        }
    }
}

fn observe_exit(
    state: &ContainerState,
    intent: Option<Intent>,
    error: Option<&str>,
) -> Observation {
    let code = state.exit_code.unwrap_or_default();
    if state.oom_killed == Some(true) {
        return Observation::failed_with_logs(format!(
            "the session ran out of memory and was killed (OOMKilled, exit code {code}); give its template more memory"
        ));
    }
    match intent {
        Some(Intent::Hibernate) => return Observation::phase(Phase::Hibernated),
        // Killed by our own forced removal, which has not finished yet.
        Some(Intent::Terminate) => return Observation::phase(Phase::Stopping),
        // Not recorded here: waking clears the intent, a started container
        // shows it.
        Some(Intent::Wake) | None => {}
    }
    if code == 0 || STOP_SIGNAL_EXITS.contains(&code) {
        return Observation::with(
            Phase::Hibernated,
            format!("container stopped (exit code {code})"),
        );
    }
    Observation::failed_with_logs(format!(
        "the session's container exited by itself with exit code {code}{}",
        error.map(|e| format!(": {e}")).unwrap_or_default()
    ))
}

/// Appends a container's last log lines to a failure message.
pub fn with_log_tail(message: &str, lines: &[String]) -> String {
    if lines.is_empty() {
        return message.to_owned();
    }
    format!("{message}; last log lines:\n{}", lines.join("\n"))
}

/// Keeps the last `max_lines` non-empty lines of `text`, each cut to
/// `max_chars` characters, so a chatty container cannot flood a message.
pub fn log_tail(text: &str, max_lines: usize, max_chars: usize) -> Vec<String> {
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    lines[lines.len().saturating_sub(max_lines)..]
        .iter()
        .map(|line| match line.char_indices().nth(max_chars) {
            Some((cut, _)) => format!("{}…", &line[..cut]),
            None => (*line).to_owned(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(status: ContainerStateStatusEnum) -> ContainerState {
        ContainerState {
            status: Some(status),
            ..Default::default()
        }
    }

    fn exited(code: i64) -> ContainerState {
        ContainerState {
            exit_code: Some(code),
            ..state(ContainerStateStatusEnum::EXITED)
        }
    }

    #[test]
    fn live_states() {
        use ContainerStateStatusEnum::*;
        assert_eq!(observe(&state(RUNNING), None).phase, Phase::Running);
        assert_eq!(observe(&state(CREATED), None).phase, Phase::Starting);
        assert_eq!(observe(&state(RESTARTING), None).phase, Phase::Starting);
        assert_eq!(observe(&state(PAUSED), None).phase, Phase::Hibernated);
        assert_eq!(observe(&state(REMOVING), None).phase, Phase::Stopping);
        assert_eq!(observe(&state(STOPPING), None).phase, Phase::Hibernating);
        let stopping = observe(&state(STOPPING), Some(Intent::Terminate));
        assert_eq!(stopping.phase, Phase::Stopping);
        assert_eq!(
            observe(&ContainerState::default(), None).phase,
            Phase::Pending
        );
        let never_started = observe(&state(CREATED), Some(Intent::Hibernate));
        assert_eq!(never_started.phase, Phase::Hibernated);
    }

    #[test]
    fn a_gpu_container_on_an_engine_without_the_toolkit_says_what_to_install() {
        let state = ContainerState {
            error: Some(
                r#"could not select device driver "nvidia" with capabilities: [[gpu]]"#.into(),
            ),
            ..state(ContainerStateStatusEnum::CREATED)
        };
        let observed = observe(&state, None);
        assert_eq!(observed.phase, Phase::Failed);
        let message = observed.message.expect("message");
        assert!(message.contains("NVIDIA Container Toolkit"), "{message}");
    }

    #[test]
    fn a_container_that_could_not_start_failed() {
        let state = ContainerState {
            error: Some("driver failed programming external connectivity".into()),
            ..state(ContainerStateStatusEnum::CREATED)
        };
        let observed = observe(&state, None);
        assert_eq!(observed.phase, Phase::Failed);
        let message = observed.message.expect("message");
        assert!(
            message.contains("could not start: driver failed"),
            "{message}"
        );
    }

    #[test]
    fn dead_is_failed() {
        let observed = observe(&state(ContainerStateStatusEnum::DEAD), None);
        assert_eq!(observed.phase, Phase::Failed);
        assert!(observed.wants_logs);
    }

    #[test]
    fn our_stop_is_hibernation_whatever_the_exit_code() {
        for code in [0, 1, 137, 143, 139] {
            let observed = observe(&exited(code), Some(Intent::Hibernate));
            assert_eq!(observed.phase, Phase::Hibernated, "exit code {code}");
            assert_eq!(observed.message, None);
        }
    }

    #[test]
    fn a_container_we_are_removing_is_stopping() {
        let observed = observe(&exited(137), Some(Intent::Terminate));
        assert_eq!(observed.phase, Phase::Stopping);
    }

    #[test]
    fn without_memory_stop_signals_and_clean_exits_are_hibernation() {
        for code in [0, 129, 130, 137, 143] {
            let observed = observe(&exited(code), None);
            assert_eq!(observed.phase, Phase::Hibernated, "exit code {code}");
            assert!(!observed.wants_logs);
        }
    }

    #[test]
    fn crashes_are_failures_with_exit_code_and_logs() {
        for code in [1, 2, 134, 139] {
            let observed = observe(&exited(code), None);
            assert_eq!(observed.phase, Phase::Failed, "exit code {code}");
            assert!(observed.wants_logs);
            let message = observed.message.expect("message");
            assert!(message.contains(&format!("exit code {code}")), "{message}");
        }
    }

    #[test]
    fn out_of_memory_is_a_failure_even_when_we_stopped_it() {
        let state = ContainerState {
            oom_killed: Some(true),
            ..exited(137)
        };
        for intent in [None, Some(Intent::Hibernate)] {
            let observed = observe(&state, intent);
            assert_eq!(observed.phase, Phase::Failed);
            let message = observed.message.expect("message");
            assert!(message.contains("OOMKilled"), "{message}");
        }
    }

    #[test]
    fn log_tail_keeps_the_last_short_lines() {
        let text = "one\ntwo\n\n   three\nfour  \n";
        assert_eq!(log_tail(text, 2, 100), vec!["three", "four"]);
        assert_eq!(log_tail(text, 10, 100).len(), 4);
        assert_eq!(log_tail("abcdef", 1, 3), vec!["abc…"]);
        assert_eq!(log_tail("", 5, 10), Vec::<String>::new());
        assert_eq!(with_log_tail("failed", &[]), "failed");
        assert_eq!(
            with_log_tail("failed", &["a".into(), "b".into()]),
            "failed; last log lines:\na\nb"
        );
    }
}
