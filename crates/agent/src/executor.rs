//! Commands from the control plane, executed at most once each (by id) and
//! one at a time per session, in the order they arrive.
//!
//! Delivery is at least once: the control plane re-sends every command it
//! has no result for whenever the agent reconnects. A command already done
//! is answered from memory; one still running is left to finish. After an
//! agent restart the memory is gone, and re-execution is safe because every
//! platform operation is idempotent.

use crate::platform::{Platform, PlatformError};
use crate::readiness::wait_for_vnc;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use streamspace_protocol::{Action, AgentMessage, Command, Phase, SessionReport};
use tokio::sync::mpsc;
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
    outcomes: HashMap<String, Outcome>,
    order: VecDeque<String>,
}

impl CommandLog {
    fn begin(&mut self, id: &str) -> Option<Outcome> {
        if let Some(known) = self.outcomes.get(id) {
            return Some(known.clone());
        }
        self.outcomes.insert(id.to_owned(), Outcome::Running);
        self.order.push_back(id.to_owned());
        while self.order.len() > REMEMBERED {
            if let Some(old) = self.order.pop_front() {
                self.outcomes.remove(&old);
            }
        }
        None
    }

    fn finish(&mut self, id: &str, error: Option<String>) {
        self.outcomes.insert(id.to_owned(), Outcome::Done(error));
    }
}

pub struct Executor {
    platform: Arc<dyn Platform>,
    outbox: mpsc::Sender<AgentMessage>,
    log: Mutex<CommandLog>,
    sessions: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Commands submitted and not finished, per session.
    busy: Mutex<HashMap<String, u32>>,
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
            sessions: Mutex::default(),
            busy: Mutex::default(),
            tasks,
        }
    }

    /// Acknowledges the command and runs it unless it ran already.
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
            None => {
                let span = tracing::info_span!(
                    "command",
                    command_id = %command.id,
                    session_id = %command.session_id,
                    action = command.action.name()
                );
                *lock(&self.busy)
                    .entry(command.session_id.clone())
                    .or_default() += 1;
                let this = Arc::clone(self);
                self.tasks
                    .spawn(async move { this.run(command).await }.instrument(span));
            }
        }
    }

    async fn run(&self, command: Command) {
        let session_lock = self.session_lock(&command.session_id);
        let _serial = session_lock.lock().await;
        let error = self.execute(&command).await.err();
        match &error {
            None => tracing::info!("command done"),
            Some(e) => tracing::warn!(error = %e, "command failed"),
        }
        if matches!(command.action, Action::Terminate) && error.is_none() {
            lock(&self.sessions).remove(&command.session_id);
        }
        lock(&self.log).finish(&command.id, error.clone());
        self.settle(&command.session_id);
        self.send(AgentMessage::Result {
            command_id: command.id,
            error,
        });
    }

    async fn execute(&self, command: &Command) -> Result<(), String> {
        let id = command.session_id.as_str();
        let platform = self.platform.as_ref();
        match &command.action {
            Action::Start { spec } => {
                self.report(SessionReport::new(id, Phase::Starting));
                self.step(id, platform.start(spec).await)?;
                let port = spec.vnc_port().ok_or("the session has no VNC port")?;
                self.await_ready(id, port).await
            }
            Action::Wake { vnc_port } => {
                self.report(SessionReport::new(id, Phase::Waking));
                self.step(id, platform.wake(id).await)?;
                self.await_ready(id, *vnc_port).await
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

    /// Turns a failed platform step into the command's error. A step that
    /// cannot succeed as asked (bad spec, missing object) also marks the
    /// session `Failed`, which needs a person; a platform that is briefly
    /// unavailable leaves the phase alone so the control plane retries.
    fn step(
        &self,
        session_id: &str,
        result: Result<SessionReport, PlatformError>,
    ) -> Result<SessionReport, String> {
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

    async fn await_ready(&self, session_id: &str, port: u16) -> Result<(), String> {
        match wait_for_vnc(self.platform.as_ref(), session_id, port, READY_LIMIT).await {
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
    pub fn is_busy(&self, session_id: &str) -> bool {
        lock(&self.busy).contains_key(session_id)
    }

    fn settle(&self, session_id: &str) {
        let mut busy = lock(&self.busy);
        if let Some(count) = busy.get_mut(session_id) {
            *count -= 1;
            if *count == 0 {
                busy.remove(session_id);
            }
        }
    }

    fn session_lock(&self, session_id: &str) -> Arc<tokio::sync::Mutex<()>> {
        lock(&self.sessions)
            .entry(session_id.to_owned())
            .or_default()
            .clone()
    }
}

/// Locks a std mutex, ignoring poison: every critical section here is a
/// single map operation that cannot leave the map half-changed.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::FakePlatform;
    use std::sync::atomic::Ordering;
    use streamspace_protocol::{PortProtocol, PortSpec, SessionSpec};

    fn start_command() -> Command {
        let spec = SessionSpec {
            session_id: "s1".into(),
            user: "u".into(),
            template: "t".into(),
            image: "i".into(),
            env: Default::default(),
            ports: vec![PortSpec {
                name: "vnc".into(),
                port: 5901,
                protocol: PortProtocol::Vnc,
            }],
            resources: Default::default(),
            home: None,
            ..Default::default()
        };
        Command {
            id: "c1".into(),
            session_id: "s1".into(),
            action: Action::Start {
                spec: Box::new(spec),
            },
        }
    }

    #[tokio::test]
    async fn running_waits_for_the_vnc_banner_and_the_session_is_busy_until_then() {
        let platform = Arc::new(FakePlatform::default());
        let (tx, mut rx) = mpsc::channel(64);
        let executor = Arc::new(Executor::new(platform.clone(), tx, TaskTracker::new()));
        executor.submit(start_command());
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(executor.is_busy("s1"), "the start is still waiting for VNC");
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
            while executor.is_busy("s1") {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
        assert!(settled.is_ok(), "not busy once the command finished");
    }

    #[test]
    fn log_remembers_outcomes_and_forgets_the_oldest() {
        let mut log = CommandLog::default();
        assert!(log.begin("a").is_none());
        assert!(matches!(log.begin("a"), Some(Outcome::Running)));
        log.finish("a", Some("boom".into()));
        assert!(matches!(log.begin("a"), Some(Outcome::Done(Some(e))) if e == "boom"));
        for i in 0..REMEMBERED {
            log.begin(&i.to_string());
        }
        assert!(log.begin("a").is_none(), "the oldest entry was forgotten");
    }
}
