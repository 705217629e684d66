//! Commands from the control plane, executed at most once each (by id) and
//! strictly in arrival order per session: one queue and one worker per
//! session (`queue.rs`), so create-then-terminate can never leave a
//! container running under a terminated session.
//!
//! Delivery is at least once: the control plane re-sends every command it
//! has no result for whenever the agent reconnects. A command already done
//! is answered from memory; one queued or running is left to finish. After
//! an agent restart the memory is gone, and re-execution is safe because
//! every platform operation is idempotent.

use crate::platform::{Platform, PlatformError};
use crate::pulls::{PullProgress, Throttle};
use crate::queue::{Pushed, QUEUE_LIMIT, SessionQueues};
use crate::readiness::wait_for_ports;
use futures::FutureExt;
use std::collections::{HashMap, VecDeque};
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use streamspace_protocol::{
    Action, AgentMessage, Command, CommandId, Phase, PortProtocol, PortSpec, SessionId,
    SessionReport, SessionSpec,
};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

/// Results remembered for answering re-sent commands.
const REMEMBERED: usize = 4096;
/// How long a started or woken session may take to answer on VNC.
const READY_LIMIT: Duration = Duration::from_secs(60);

#[derive(Clone)]
enum Outcome {
    Running,
    Done(Option<String>),
}

#[derive(Default)]
struct CommandLog {
    outcomes: HashMap<CommandId, Outcome>,
    order: VecDeque<CommandId>,
}

impl CommandLog {
    fn begin(&mut self, id: &CommandId) -> Option<Outcome> {
        if let Some(known) = self.outcomes.get(id) {
            return Some(known.clone());
        }
        self.outcomes.insert(id.clone(), Outcome::Running);
        self.order.push_back(id.clone());
        while self.order.len() > REMEMBERED {
            if let Some(old) = self.order.pop_front() {
                self.outcomes.remove(&old);
            }
        }
        None
    }

    fn finish(&mut self, id: &CommandId, error: Option<String>) {
        self.outcomes.insert(id.clone(), Outcome::Done(error));
    }
}

pub struct Executor {
    platform: Arc<dyn Platform>,
    outbox: mpsc::Sender<AgentMessage>,
    log: Mutex<CommandLog>,
    queues: SessionQueues,
    tasks: TaskTracker,
}

impl Executor {
    pub fn new(
        platform: Arc<dyn Platform>,
        outbox: mpsc::Sender<AgentMessage>,
        tasks: TaskTracker,
    ) -> Self {
        Self {
            platform,
            outbox,
            log: Mutex::default(),
            queues: SessionQueues::default(),
            tasks,
        }
    }

    /// Acknowledges the command and queues it behind the session's earlier
    /// commands, unless it was seen already.
    pub fn submit(self: &Arc<Self>, command: Command) {
        self.send(AgentMessage::Ack {
            command_id: command.id.clone(),
        });
        let known = lock(&self.log).begin(&command.id);
        match known {
            Some(Outcome::Done(error)) => self.send(AgentMessage::Result {
                command_id: command.id,
                error,
            }),
            Some(Outcome::Running) => {}
            None => self.enqueue(command),
        }
    }

    fn enqueue(self: &Arc<Self>, command: Command) {
        let (command_id, session_id) = (command.id.clone(), command.session_id.clone());
        match self.queues.push(command) {
            Pushed::Queued => {}
            Pushed::StartWorker => {
                let this = Arc::clone(self);
                let span = tracing::info_span!("session_commands", %session_id);
                self.tasks
                    .spawn(async move { this.drain(&session_id).await }.instrument(span));
            }
            Pushed::Full => {
                // Recorded as done: a re-send of this id gets the same
                // answer, and the control plane's reconciler decides whether
                // to try again with a new command.
                let error = format!(
                    "refused without running it: session {session_id} already has {QUEUE_LIMIT} \
                     commands queued on this agent, the most it keeps"
                );
                tracing::warn!(%command_id, %session_id, "command queue full");
                self.finish(command_id, Some(error));
            }
        }
    }

    /// The session's worker: runs its commands one after the other until
    /// its queue is empty (the queue then goes, and the next command starts
    /// a new worker).
    ///
    /// A command that panics (a bug in a platform) fails with an error
    /// result and the worker goes on: were the panic to end the task, the
    /// queue would stay behind with no worker, the session would look busy
    /// for good and every later command for it would wait forever.
    async fn drain(&self, session_id: &SessionId) {
        while let Some((command, superseded)) = self.queues.next(session_id) {
            let span = tracing::info_span!(
                "command",
                command_id = %command.id,
                session_id = %command.session_id,
                action = command.action.name(),
                otel.status_code = tracing::field::Empty,
                error = tracing::field::Empty,
            );
            // The trace of the request that issued it, when traced; else
            // a trace of its own rather than a child of this worker.
            streamspace_telemetry::context::adopt(&span, command.trace_parent.as_deref());
            let command_id = command.id.clone();
            // Unwind safety: what a panic may leave half-done is the
            // platform's own state, which every operation re-reads, and the
            // executor's maps, which are changed only under locks that
            // tolerate poisoning.
            let run = AssertUnwindSafe(self.run(command, superseded).instrument(span.clone()));
            if let Err(panic) = run.catch_unwind().await {
                let error = format!(
                    "the agent hit a bug running this command ({}); see the agent's log",
                    panic_message(panic.as_ref())
                );
                span.in_scope(|| tracing::error!(%error, "command panicked"));
                self.finish(command_id, Some(error));
            }
        }
    }

    async fn run(&self, command: Command, superseded: CancellationToken) {
        let error = self.execute(&command, &superseded).await.err();
        match &error {
            None => tracing::info!("command done"),
            Some(e) => {
                let span = tracing::Span::current();
                span.record("otel.status_code", "ERROR");
                span.record("error", e.as_str());
                tracing::warn!(error = %e, "command failed")
            }
        }
        self.finish(command.id, error);
    }

    /// Remembers a command's outcome and reports it.
    fn finish(&self, command_id: CommandId, error: Option<String>) {
        lock(&self.log).finish(&command_id, error.clone());
        self.send(AgentMessage::Result { command_id, error });
    }

    async fn execute(
        &self,
        command: &Command,
        superseded: &CancellationToken,
    ) -> Result<(), String> {
        let id = &command.session_id;
        let platform = self.platform.as_ref();
        match &command.action {
            Action::Start { spec } => {
                // A terminate queued behind makes a long pull pointless;
                // one that is done (the image was there) goes on to start.
                tokio::select! {
                    biased;
                    pulled = self.pull(spec) => pulled?,
                    () = superseded.cancelled() => {
                        tracing::info!("a terminate is queued: the pull is abandoned");
                        return Ok(());
                    }
                }
                self.report(SessionReport::new(id, Phase::Starting));
                self.step(id, platform.start(spec).await)?;
                self.await_ready(id, &spec.ports, superseded).await
            }
            Action::Wake { vnc_port, ports } => {
                self.report(SessionReport::new(id, Phase::Waking));
                self.step(id, platform.wake(id).await)?;
                // From a control plane that sends only the VNC port.
                let vnc = [PortSpec::new("vnc", *vnc_port, PortProtocol::Vnc)];
                let ports = if ports.is_empty() { &vnc[..] } else { ports };
                self.await_ready(id, ports, superseded).await
            }
            Action::Hibernate => {
                self.report(SessionReport::new(id, Phase::Hibernating));
                let report = self.step(id, platform.hibernate(id).await)?;
                self.report(report);
                Ok(())
            }
            Action::Terminate => {
                self.report(SessionReport::new(id, Phase::Stopping));
                let report = self.step(id, platform.terminate(id).await)?;
                self.report(report);
                Ok(())
            }
        }
    }

    /// Pulls the session's image if the platform lacks it, reporting
    /// `Pulling` with its progress (at most once a second, and only when
    /// the percentage moved: `pulls::Throttle`).
    async fn pull(&self, spec: &SessionSpec) -> Result<(), String> {
        let id = &spec.session_id;
        let throttle = Mutex::new(Throttle::default());
        let progress = |progress: PullProgress| {
            if lock(&throttle).admit(tokio::time::Instant::now(), progress.percent()) {
                let message = progress.message(&spec.image);
                self.report(SessionReport::new(id, Phase::Pulling).with_message(message));
            }
        };
        let pulled = self
            .platform
            .pull(&spec.image, spec.registry_auth.as_ref(), &progress)
            .await;
        self.step(id, pulled).map(|pulled| {
            tracing::debug!(?pulled, image = %spec.image, "image ready");
        })
    }

    /// Turns a failed platform step into the command's error. A step that
    /// cannot succeed as asked (bad spec, missing object) also marks the
    /// session `Failed`, which needs a person; a platform that is briefly
    /// unavailable leaves the phase alone so the control plane retries.
    fn step<T>(
        &self,
        session_id: &SessionId,
        result: Result<T, PlatformError>,
    ) -> Result<T, String> {
        result.map_err(|err| {
            let message = match &err {
                PlatformError::NotFound(_) => {
                    "the session's container no longer exists: terminate it and start a new one"
                        .to_owned()
                }
                other => other.to_string(),
            };
            if !matches!(err, PlatformError::Unavailable(_)) {
                self.report(SessionReport::new(session_id, Phase::Failed).with_message(&message));
            }
            message
        })
    }

    /// Waits for every port to answer, unless a terminate queued behind this
    /// command makes the wait pointless: the session is going away, and the
    /// terminate should not wait up to a minute for it.
    async fn await_ready(
        &self,
        session_id: &SessionId,
        ports: &[PortSpec],
        superseded: &CancellationToken,
    ) -> Result<(), String> {
        if ports.is_empty() {
            return Err("the session has no ports: nothing could reach it".into());
        }
        let ready = tokio::select! {
            ready = wait_for_ports(self.platform.as_ref(), session_id, ports, READY_LIMIT) => ready,
            () = superseded.cancelled() => {
                tracing::info!("a terminate is queued: not waiting for the session to answer");
                return Ok(());
            }
        };
        match ready {
            Ok(()) => {
                self.report(SessionReport::new(session_id, Phase::Running));
                Ok(())
            }
            Err(message) => {
                self.report(SessionReport::new(session_id, Phase::Failed).with_message(&message));
                Err(message)
            }
        }
    }

    fn report(&self, report: SessionReport) {
        self.send(AgentMessage::SessionStatus(report));
    }

    fn send(&self, message: AgentMessage) {
        // While disconnected the outbox may fill; what is dropped is
        // recovered on reconnect (inventory, re-sent commands).
        if self.outbox.try_send(message).is_err() {
            tracing::debug!("outbox full; message dropped until reconnect");
        }
    }

    /// Whether a command for the session is queued or running. While one
    /// is, the executor alone says when the session is `Running` (after the
    /// VNC banner); the platform only sees a started container.
    pub fn is_busy(&self, session_id: &SessionId) -> bool {
        self.queues.is_busy(session_id)
    }
}

/// The text a panic was raised with, when it has one.
fn panic_message(payload: &(dyn std::any::Any + Send)) -> &str {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("a panic without a message")
}

/// Locks a std mutex, ignoring poison: every critical section here is a
/// few map operations that cannot leave the map half-changed.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::FakePlatform;
    use crate::pulls::PullProgress;
    use std::sync::atomic::Ordering;
    use streamspace_protocol::SessionSpec;

    fn start_command() -> Command {
        let spec = SessionSpec::fixture("s1")
            .with_owner("u", "t")
            .with_image("i");
        Command {
            id: "c1".into(),
            session_id: "s1".into(),
            action: Action::Start {
                spec: Box::new(spec),
            },
            trace_parent: None,
        }
    }

    /// An executor on a fake platform, and its outbox.
    fn executor(
        outbox: usize,
    ) -> (
        Arc<FakePlatform>,
        Arc<Executor>,
        mpsc::Receiver<AgentMessage>,
    ) {
        let platform = Arc::new(FakePlatform::default());
        let (tx, rx) = mpsc::channel(outbox);
        let executor = Arc::new(Executor::new(platform.clone(), tx, TaskTracker::new()));
        (platform, executor, rx)
    }

    #[tokio::test]
    async fn running_waits_for_the_vnc_banner_and_the_session_is_busy_until_then() {
        let (platform, executor, mut rx) = executor(64);
        executor.submit(start_command());
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(
            executor.is_busy(&"s1".into()),
            "the start is still waiting for VNC"
        );
        let mut seen = Vec::new();
        while let Ok(message) = rx.try_recv() {
            seen.push(message);
        }
        assert!(
            !seen
                .iter()
                .any(|m| matches!(m, AgentMessage::SessionStatus(r) if r.phase == Phase::Running)),
            "no Running before the banner: {seen:?}"
        );
        platform.vnc_up.store(true, Ordering::SeqCst);
        let running = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                match rx.recv().await {
                    Some(AgentMessage::SessionStatus(r)) if r.phase == Phase::Running => break,
                    Some(_) => continue,
                    None => panic!("outbox closed"),
                }
            }
        })
        .await;
        assert!(running.is_ok(), "Running once the banner arrives");
        let settled = tokio::time::timeout(Duration::from_secs(5), async {
            while executor.is_busy(&"s1".into()) {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
        assert!(settled.is_ok(), "not busy once the command finished");
    }

    fn command(id: &str, session_id: &str, action: Action) -> Command {
        Command {
            id: id.into(),
            session_id: session_id.into(),
            action,
            trace_parent: None,
        }
    }

    fn start(session_id: &str) -> Action {
        let Action::Start { mut spec } = start_command().action else {
            unreachable!("start_command starts");
        };
        spec.session_id = session_id.into();
        Action::Start { spec }
    }

    /// Reads the outbox until `count` results arrived; returns them by id.
    async fn results(
        rx: &mut mpsc::Receiver<AgentMessage>,
        count: usize,
    ) -> HashMap<String, Option<String>> {
        let mut results = HashMap::new();
        let collect = async {
            while results.len() < count {
                match rx.recv().await {
                    Some(AgentMessage::Result { command_id, error }) => {
                        results.insert(command_id.into(), error);
                    }
                    Some(_) => {}
                    None => panic!("outbox closed"),
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(10), collect)
            .await
            .expect("every command finishes");
        results
    }

    /// Create-then-terminate for many sessions, submitted from a task on a
    /// worker thread as the control loop does: every session must end
    /// terminated. (Spawning a task per command let terminate overtake
    /// start: tokio runs the task spawned last first.)
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn commands_for_one_session_run_in_arrival_order() {
        const SESSIONS: usize = 50;
        let (platform, executor, mut rx) = executor(8 * SESSIONS);
        platform.vnc_up.store(true, Ordering::SeqCst);
        let submitter = Arc::clone(&executor);
        tokio::spawn(async move {
            for n in 0..SESSIONS {
                let session = format!("s{n}");
                submitter.submit(command(&format!("{session}-c"), &session, start(&session)));
                submitter.submit(command(
                    &format!("{session}-t"),
                    &session,
                    Action::Terminate,
                ));
            }
        })
        .await
        .expect("submitter");

        let results = results(&mut rx, 2 * SESSIONS).await;
        assert!(results.values().all(Option::is_none), "{results:?}");
        let left = platform.existing.lock().expect("existing").clone();
        assert!(left.is_empty(), "sessions left running: {left:?}");
        let calls = platform.calls.lock().expect("calls").clone();
        for n in 0..SESSIONS {
            let session = format!("s{n}");
            let order: Vec<&str> = calls
                .iter()
                .filter(|(id, _)| *id == session)
                .map(|(_, op)| *op)
                .collect();
            assert_eq!(order, ["start", "terminate"], "{session}");
        }
        // A worker reports its last result just before it lets its queue go.
        let settled = tokio::time::timeout(Duration::from_secs(5), async {
            while (0..SESSIONS).any(|n| executor.is_busy(&format!("s{n}").into())) {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        });
        assert!(
            settled.await.is_ok(),
            "sessions still busy after their results"
        );
    }

    /// A terminate behind a start whose VNC server never answers runs at
    /// once instead of after the minute the start would wait.
    #[tokio::test]
    async fn a_queued_terminate_ends_the_wait_for_vnc() {
        let (platform, executor, mut rx) = executor(64);
        executor.submit(start_command());
        tokio::time::sleep(Duration::from_millis(200)).await;
        executor.submit(command("c2", "s1", Action::Terminate));
        let results = results(&mut rx, 2).await;
        assert_eq!(results["c1"], None, "the start itself succeeded");
        assert_eq!(results["c2"], None);
        assert!(platform.existing.lock().expect("existing").is_empty());
        assert!(!executor.is_busy(&"s1".into()));
    }

    /// A command re-sent while it waits in its queue runs once.
    #[tokio::test]
    async fn a_resent_queued_command_runs_once() {
        let (platform, executor, mut rx) = executor(64);
        executor.submit(start_command());
        executor.submit(command("c2", "s1", Action::Hibernate));
        executor.submit(command("c2", "s1", Action::Hibernate));
        platform.vnc_up.store(true, Ordering::SeqCst);
        let results = results(&mut rx, 2).await;
        assert_eq!(results.len(), 2);
        let calls = platform.calls.lock().expect("calls").clone();
        let ops: Vec<&str> = calls.iter().map(|(_, op)| *op).collect();
        assert_eq!(ops, ["start", "hibernate"]);
    }

    /// A session's queue is bounded: past the limit, commands are refused
    /// with an error result instead of growing memory.
    #[tokio::test]
    async fn a_full_queue_refuses_commands_with_an_error() {
        let (platform, executor, mut rx) = executor(4 * QUEUE_LIMIT);
        // The start waits for VNC, so everything after it stays queued.
        executor.submit(start_command());
        tokio::time::sleep(Duration::from_millis(100)).await;
        for n in 0..QUEUE_LIMIT {
            executor.submit(command(&format!("h{n}"), "s1", Action::Hibernate));
        }
        let refused = results(&mut rx, 1).await;
        let error = refused
            .get(&format!("h{}", QUEUE_LIMIT - 1))
            .cloned()
            .flatten()
            .expect("the last command is refused");
        assert!(error.contains("commands queued"), "{error}");
        // It is recorded as failed for good: no promise of a later run.
        assert!(error.contains("without running it"), "{error}");
        assert!(!error.contains("again"), "{error}");
        platform.vnc_up.store(true, Ordering::SeqCst);
        let done = results(&mut rx, QUEUE_LIMIT).await;
        assert!(done.values().all(Option::is_none), "{done:?}");
        assert!(!executor.is_busy(&"s1".into()));
    }

    /// A command whose platform call panics fails with an error result,
    /// and the session's later commands still run: the worker survives
    /// (a dead worker left its queue behind, so the session stayed busy
    /// and every later command waited for good).
    #[tokio::test]
    async fn a_panicking_command_fails_and_the_queue_goes_on() {
        let (platform, executor, mut rx) = executor(64);
        platform.start_panics.store(true, Ordering::SeqCst);
        executor.submit(start_command());
        executor.submit(command("c2", "s1", Action::Hibernate));
        let first = results(&mut rx, 2).await;
        let error = first["c1"].clone().expect("the start failed");
        assert!(
            error.contains("the fake platform's start has a bug"),
            "{error}"
        );
        assert_eq!(first["c2"], None, "the hibernate behind it ran");
        assert!(!executor.is_busy(&"s1".into()));

        // A later command gets a worker of its own.
        platform.start_panics.store(false, Ordering::SeqCst);
        platform.vnc_up.store(true, Ordering::SeqCst);
        executor.submit(command("c3", "s1", start("s1")));
        assert_eq!(results(&mut rx, 1).await["c3"], None);
    }

    /// Every status report in the outbox, in order, once `count` results came.
    async fn statuses(rx: &mut mpsc::Receiver<AgentMessage>) -> Vec<SessionReport> {
        let mut seen = Vec::new();
        let collect = async {
            loop {
                match rx.recv().await {
                    Some(AgentMessage::SessionStatus(report)) => seen.push(report),
                    Some(AgentMessage::Result { .. }) => return,
                    Some(_) => {}
                    None => panic!("outbox closed"),
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(10), collect)
            .await
            .expect("the command finishes");
        seen
    }

    /// A missing image is pulled before the start: `Pulling` with its
    /// progress comes first, throttled (fifty steps at once make one
    /// report), then `Starting`.
    #[tokio::test]
    async fn a_missing_image_is_pulled_first_and_its_progress_throttled() {
        let (platform, executor, mut rx) = executor(256);
        platform.vnc_up.store(true, Ordering::SeqCst);
        let steps = (1..=50).map(|n| PullProgress {
            total: 100,
            downloaded: 2 * n,
            done: 4 * n,
        });
        *platform.pull_steps.lock().expect("steps") = steps.collect();
        executor.submit(start_command());
        let phases: Vec<(Phase, Option<String>)> = statuses(&mut rx)
            .await
            .into_iter()
            .map(|r| (r.phase, r.message))
            .collect();
        assert_eq!(
            phases,
            [
                (
                    Phase::Pulling,
                    Some("pulling i: 2% (0.0 MB of 0.0 MB)".to_owned())
                ),
                (Phase::Starting, None),
                (Phase::Running, None),
            ]
        );
    }

    /// A terminate behind a start whose pull takes long runs at once: the
    /// pull is abandoned and nothing is started.
    #[tokio::test]
    async fn a_queued_terminate_abandons_the_pull() {
        let (platform, executor, mut rx) = executor(64);
        platform.pull_hangs.store(true, Ordering::SeqCst);
        executor.submit(start_command());
        tokio::time::sleep(Duration::from_millis(100)).await;
        executor.submit(command("c2", "s1", Action::Terminate));
        let results = results(&mut rx, 2).await;
        assert_eq!(results["c1"], None);
        assert_eq!(results["c2"], None);
        let calls = platform.calls.lock().expect("calls").clone();
        let ops: Vec<&str> = calls.iter().map(|(_, op)| *op).collect();
        assert_eq!(ops, ["terminate"], "nothing was started");
    }

    /// A pull that fails fails the session with why, and nothing starts.
    #[tokio::test]
    async fn a_failed_pull_fails_the_session_and_starts_nothing() {
        let (platform, executor, mut rx) = executor(64);
        *platform.pull_fails.lock().expect("fails") = Some("image i not found in docker.io".into());
        executor.submit(start_command());
        let reports = statuses(&mut rx).await;
        let last = reports.last().expect("a report");
        assert_eq!(last.phase, Phase::Failed);
        assert_eq!(
            last.message.as_deref(),
            Some("image i not found in docker.io")
        );
        assert!(
            platform.calls.lock().expect("calls").is_empty(),
            "nothing started"
        );
    }

    #[test]
    fn log_remembers_outcomes_and_forgets_the_oldest() {
        let mut log = CommandLog::default();
        assert!(log.begin(&"a".into()).is_none());
        assert!(matches!(log.begin(&"a".into()), Some(Outcome::Running)));
        log.finish(&"a".into(), Some("boom".into()));
        assert!(matches!(log.begin(&"a".into()), Some(Outcome::Done(Some(e))) if e == "boom"));
        for i in 0..REMEMBERED {
            log.begin(&i.to_string().into());
        }
        assert!(
            log.begin(&"a".into()).is_none(),
            "the oldest entry was forgotten"
        );
    }
}
