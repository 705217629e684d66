//! One queue of commands per session, drained by one worker, so a session's
//! commands run strictly in the order they arrived: a terminate can never
//! overtake the start before it and leave a container behind.
//!
//! A queue exists only while its session has a command queued or running
//! (that is what "busy" means), and holds at most [`QUEUE_LIMIT`] commands:
//! the control plane keeps about one command per session open, so a longer
//! queue means something is wrong, and refusing is better than growing.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard};
use streamspace_protocol::{Action, Command, SessionId};
use tokio_util::sync::CancellationToken;

/// Most commands one session may have queued or running.
pub(crate) const QUEUE_LIMIT: usize = 32;

/// What [`SessionQueues::push`] did with a command.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Pushed {
    /// The session had no queue: the caller must start its worker.
    StartWorker,
    /// Queued behind the session's running command.
    Queued,
    /// The session's queue is full; the command was not queued.
    Full,
}

struct Queue {
    waiting: VecDeque<Command>,
    /// Cancelled when a terminate is queued behind the running command, so
    /// that a start does not keep the terminate waiting for a VNC server
    /// that nobody will watch.
    superseded: CancellationToken,
}

#[derive(Default)]
pub(crate) struct SessionQueues {
    by_session: Mutex<HashMap<SessionId, Queue>>,
}

impl SessionQueues {
    pub(crate) fn push(&self, command: Command) -> Pushed {
        let mut queues = self.lock();
        let terminates = matches!(command.action, Action::Terminate);
        match queues.get_mut(&command.session_id) {
            // One more than those waiting runs.
            Some(queue) if queue.waiting.len() + 1 >= QUEUE_LIMIT => Pushed::Full,
            Some(queue) => {
                if terminates {
                    queue.superseded.cancel();
                }
                queue.waiting.push_back(command);
                Pushed::Queued
            }
            None => {
                let session_id = command.session_id.clone();
                let queue = Queue {
                    waiting: VecDeque::from([command]),
                    superseded: CancellationToken::new(),
                };
                queues.insert(session_id, queue);
                Pushed::StartWorker
            }
        }
    }

    /// The session's next command, with the token that says a terminate is
    /// queued behind it; `None` when there is none, and then the queue is
    /// gone (the worker must end, and the next push starts a new one).
    pub(crate) fn next(&self, session_id: &SessionId) -> Option<(Command, CancellationToken)> {
        let mut queues = self.lock();
        let queue = queues.get_mut(session_id)?;
        let Some(command) = queue.waiting.pop_front() else {
            queues.remove(session_id);
            return None;
        };
        queue.superseded = CancellationToken::new();
        if queue
            .waiting
            .iter()
            .any(|c| matches!(c.action, Action::Terminate))
        {
            queue.superseded.cancel();
        }
        Some((command, queue.superseded.clone()))
    }

    /// Whether the session has a command queued or running.
    pub(crate) fn is_busy(&self, session_id: &SessionId) -> bool {
        self.lock().contains_key(session_id)
    }

    #[cfg(test)]
    pub(crate) fn sessions(&self) -> usize {
        self.lock().len()
    }

    /// Every critical section is a few map and deque operations that cannot
    /// leave them half-changed, so a poisoned lock is safe to use.
    fn lock(&self) -> MutexGuard<'_, HashMap<SessionId, Queue>> {
        self.by_session.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use streamspace_protocol::CommandId;

    fn command(id: &str, session_id: &str, action: Action) -> Command {
        Command {
            id: id.into(),
            session_id: session_id.into(),
            action,
            trace_parent: None,
        }
    }

    #[test]
    fn commands_come_out_in_arrival_order_and_the_queue_goes_when_empty() {
        let queues = SessionQueues::default();
        assert_eq!(
            queues.push(command("1", "s", Action::Hibernate)),
            Pushed::StartWorker
        );
        assert_eq!(
            queues.push(command(
                "2",
                "s",
                Action::Wake {
                    vnc_port: 1,
                    ports: vec![],
                }
            )),
            Pushed::Queued
        );
        assert_eq!(
            queues.push(command("x", "other", Action::Hibernate)),
            Pushed::StartWorker
        );
        let ids: Vec<CommandId> = std::iter::from_fn(|| queues.next(&"s".into()))
            .map(|(c, _)| c.id)
            .collect();
        assert_eq!(ids, ["1", "2"]);
        assert!(!queues.is_busy(&"s".into()), "an empty queue is removed");
        assert!(queues.is_busy(&"other".into()));
        assert_eq!(queues.sessions(), 1);
        assert!(queues.next(&"s".into()).is_none());
    }

    #[test]
    fn a_session_is_busy_while_its_last_command_runs() {
        let queues = SessionQueues::default();
        queues.push(command("1", "s", Action::Hibernate));
        let _running = queues.next(&"s".into()).expect("command");
        assert!(queues.is_busy(&"s".into()));
        assert!(queues.next(&"s".into()).is_none());
        assert!(!queues.is_busy(&"s".into()));
    }

    #[test]
    fn a_queue_holds_a_bounded_number_of_commands() {
        let queues = SessionQueues::default();
        for n in 0..QUEUE_LIMIT - 1 {
            let pushed = queues.push(command(&n.to_string(), "s", Action::Hibernate));
            assert_ne!(pushed, Pushed::Full, "{n}");
        }
        assert_eq!(
            queues.push(command("over", "s", Action::Hibernate)),
            Pushed::Full
        );
        // Another session is not affected.
        assert_eq!(
            queues.push(command("y", "t", Action::Hibernate)),
            Pushed::StartWorker
        );
    }

    #[test]
    fn a_queued_terminate_supersedes_what_runs_before_it() {
        let queues = SessionQueues::default();
        queues.push(command("1", "s", Action::Hibernate));
        let (_, first) = queues.next(&"s".into()).expect("first");
        assert!(!first.is_cancelled());
        queues.push(command(
            "2",
            "s",
            Action::Wake {
                vnc_port: 1,
                ports: vec![],
            },
        ));
        assert!(!first.is_cancelled(), "only a terminate supersedes");
        queues.push(command("3", "s", Action::Terminate));
        assert!(first.is_cancelled());
        let (wake, second) = queues.next(&"s".into()).expect("wake");
        assert_eq!(wake.id, "2");
        assert!(
            second.is_cancelled(),
            "a terminate is still queued behind it"
        );
        let (terminate, third) = queues.next(&"s".into()).expect("terminate");
        assert_eq!(terminate.id, "3");
        assert!(!third.is_cancelled());
    }
}
