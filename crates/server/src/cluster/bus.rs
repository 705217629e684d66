//! The replicas' bus: notices one replica publishes for the others, by
//! PostgreSQL's `NOTIFY` on one channel, received by each replica's
//! `LISTEN` and handed to whoever subscribed here (`cluster/mod.rs`
//! delivers them). On SQLite there is one replica and nothing to tell, so
//! publishing is a no-op there. A part of the application state: it knows
//! nothing of it.
//!
//! `NOTIFY` is delivered when the publishing transaction commits, to every
//! listening session, in order per publisher; a replica that is not
//! listening at that moment (reconnecting) misses it. So notices are only
//! ever a shortcut: what they say is also in the store (commands, session
//! rows) or is asked again (a tunnel that times out), and the slower paths
//! (the reconciler, re-reads) still reach the same end.

use super::replica::ReplicaId;
use crate::changes::Change;
use crate::hub::channels::AgentHub;
use crate::store::Announcement;
use serde::{Deserialize, Serialize};
use sqlx::AnyPool;
use sqlx::postgres::PgListener;
use std::sync::Arc;
use std::time::Duration;
use streamspace_protocol::{
    Action, AgentId, Command, CommandId, ServerMessage, TemplateId, UserId,
};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

/// The one channel every replica listens on.
pub const CHANNEL: &str = "streamspace_cluster";

/// PostgreSQL refuses payloads of 8000 bytes or more; what is bigger
/// travels as an id and is read from the store.
pub const MAX_PAYLOAD: usize = 7_900;

/// Notices kept for slow subscribers.
const CAPACITY: usize = 4_096;

/// What one replica tells the others.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Notice {
    /// A message for an agent whose control channel may be held by another
    /// replica: the one that holds it sends it.
    ToAgent {
        agent_id: AgentId,
        message: ServerMessage,
    },
    /// A command stored for an agent not connected to the replica that
    /// issued it: the one that holds the agent sends it. The command itself
    /// travels when it fits (no read of the store on the way: that read was
    /// a tenth of a dispatch under load); one whose spec exceeds NOTIFY's
    /// limit travels as its id and is read from the store, the truth anyway.
    Command {
        agent_id: AgentId,
        command_id: CommandId,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        command: Option<Box<Command>>,
    },
    /// A session or agent changed: every replica's live event streams show
    /// it (`changes.rs`).
    Change { change: Change },
    /// A user's logins or role changed (logout, password, demotion): their
    /// streams on every replica re-check their login (`auth/revoke.rs`).
    Revoked { user_id: UserId },
    /// A share ended: its guests' viewers on every replica close.
    ShareEnded { share_id: String },
    /// The admin settings were saved: every replica reads them again.
    SettingsChanged,
    /// Pull a template's image on an agent another replica holds, which
    /// reads the template (and its registry credentials) from the store:
    /// the credentials never travel in a notice.
    Prepull {
        agent_id: AgentId,
        template_id: TemplateId,
    },
}

/// The notice of a stored command, carrying the command itself unless it
/// holds a secret: a notice is a statement's parameter (in PostgreSQL's log
/// when statements or slow ones are logged) and waits in its notification
/// queue on disk, neither of them sealed, so a start with a template's
/// secrets travels as its id and the receiver opens it from the store.
pub fn command_notice(agent_id: &AgentId, command: &Command) -> Notice {
    let secret = matches!(&command.action, Action::Start { spec } if spec.carries_secrets());
    Notice::Command {
        agent_id: agent_id.clone(),
        command_id: command.id.clone(),
        command: (!secret).then(|| Box::new(command.clone())),
    }
}

#[derive(Serialize, Deserialize)]
struct Envelope {
    origin: ReplicaId,
    notice: Notice,
}

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("a notice of {0} bytes is too large for NOTIFY")]
    TooLarge(usize),
    #[error("cannot publish a notice: {0}")]
    Database(#[from] sqlx::Error),
}

#[derive(Clone)]
pub struct Bus {
    origin: ReplicaId,
    /// PostgreSQL's pool and URL; `None` on SQLite.
    shared: Option<Arc<Shared>>,
    received: broadcast::Sender<Notice>,
}

struct Shared {
    pool: AnyPool,
    url: String,
    /// Whether the `LISTEN` is in place now.
    listening: tokio::sync::watch::Sender<bool>,
}

impl Bus {
    /// The bus of a replica that is alone (SQLite).
    pub fn alone(origin: ReplicaId) -> Self {
        Self {
            origin,
            shared: None,
            received: broadcast::channel(CAPACITY).0,
        }
    }

    /// The bus of replicas sharing the PostgreSQL database at `url`.
    pub fn shared(origin: ReplicaId, pool: AnyPool, url: String) -> Self {
        Self {
            shared: Some(Arc::new(Shared {
                pool,
                url,
                listening: tokio::sync::watch::Sender::new(false),
            })),
            ..Self::alone(origin)
        }
    }

    /// Whether other replicas may exist.
    pub fn is_shared(&self) -> bool {
        self.shared.is_some()
    }

    /// Tells every other replica; nothing on SQLite.
    pub async fn publish(&self, notice: Notice) -> Result<(), BusError> {
        let Some(shared) = &self.shared else {
            return Ok(());
        };
        let payload = self.payload(notice)?;
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(CHANNEL)
            .bind(payload)
            .execute(&shared.pool)
            .await?;
        Ok(())
    }

    /// The notice that hands a stored command to the replica holding its
    /// agent, for the store to send in the transaction that stores the
    /// command (so it leaves at commit, without a round trip of its own);
    /// `None` on SQLite.
    pub fn command_announcement(
        &self,
        agent_id: &AgentId,
        command: &Command,
    ) -> Option<Announcement> {
        self.shared.as_ref()?;
        let payload = self.payload(command_notice(agent_id, command)).ok()?;
        Some(Announcement {
            channel: CHANNEL,
            payload,
        })
    }

    /// The notice as NOTIFY carries it, if it fits; a command too large to
    /// travel whole goes as its id.
    fn payload(&self, notice: Notice) -> Result<String, BusError> {
        let envelope = Envelope {
            origin: self.origin.clone(),
            notice,
        };
        let payload = serde_json::to_string(&envelope).unwrap_or_default();
        if payload.len() <= MAX_PAYLOAD {
            return Ok(payload);
        }
        match envelope.notice {
            Notice::Command {
                agent_id,
                command_id,
                command: Some(_),
            } => self.payload(Notice::Command {
                agent_id,
                command_id,
                command: None,
            }),
            _ => Err(BusError::TooLarge(payload.len())),
        }
    }

    /// Sends `message` to the agent: at once when this replica holds its
    /// control channel, else through whichever replica does. `false` when
    /// it cannot have gone anywhere (alone and not connected here, or the
    /// database refused the notice).
    pub async fn to_agent(
        &self,
        hub: &AgentHub,
        agent_id: &AgentId,
        message: ServerMessage,
    ) -> bool {
        if hub.is_connected(agent_id) {
            return hub.send(agent_id, message);
        }
        if !self.is_shared() {
            return false;
        }
        let notice = Notice::ToAgent {
            agent_id: agent_id.clone(),
            message,
        };
        match self.publish(notice).await {
            Ok(()) => true,
            Err(err) => {
                tracing::warn!(%agent_id, error = %err, "cannot pass a message to the agent's replica");
                false
            }
        }
    }

    /// Notices from the other replicas, from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Notice> {
        self.received.subscribe()
    }

    /// Listens until shutdown, reconnecting when the listening connection
    /// drops; returns at once on SQLite.
    pub async fn listen(self, shutdown: CancellationToken) {
        let Some(shared) = self.shared.clone() else {
            return;
        };
        let mut pause = Duration::from_millis(100);
        while !shutdown.is_cancelled() {
            let listened = tokio::select! {
                result = self.listen_once(&shared) => result,
                _ = shutdown.cancelled() => return,
            };
            if let Err(err) = listened {
                tracing::warn!(error = %err, "the replicas' bus lost its connection; reconnecting");
            }
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = shutdown.cancelled() => return,
            }
            pause = (pause * 2).min(Duration::from_secs(5));
        }
    }

    async fn listen_once(&self, shared: &Shared) -> Result<(), sqlx::Error> {
        let mut listener = PgListener::connect(&shared.url).await?;
        // Without this a dropped connection is re-established silently and
        // the notices in between are lost without a word.
        listener.ignore_pool_close_event(false);
        listener.listen(CHANNEL).await?;
        tracing::info!(replica = %self.origin, "listening to the other replicas");
        shared.listening.send_replace(true);
        let heard = async {
            loop {
                let notification = listener.recv().await?;
                self.received_payload(notification.payload());
            }
        };
        let ended = heard.await;
        shared.listening.send_replace(false);
        ended
    }

    /// Waits until this replica hears the others (at once on SQLite), at
    /// most `limit`; whether it does. The server takes requests only then,
    /// so nothing said by another replica once this one serves is missed
    /// for want of a listener.
    pub async fn until_listening(&self, limit: Duration) -> bool {
        let Some(shared) = &self.shared else {
            return true;
        };
        let mut listening = shared.listening.subscribe();
        let wait = listening.wait_for(|listening| *listening);
        matches!(tokio::time::timeout(limit, wait).await, Ok(Ok(_)))
    }

    fn received_payload(&self, payload: &str) {
        match serde_json::from_str::<Envelope>(payload) {
            Ok(envelope) if envelope.origin == self.origin => {}
            // No subscriber is fine: nobody here needs it.
            Ok(envelope) => drop(self.received.send(envelope.notice)),
            // A newer replica's notice this one does not know.
            Err(err) => tracing::debug!(error = %err, "ignoring an unknown notice"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two replicas on one database: each hears the other's notices and
    /// not its own.
    #[tokio::test]
    async fn replicas_hear_each_other_and_not_themselves() {
        let url = streamspace_testkit::postgres::fresh_database()
            .await
            .expect("a PostgreSQL database");
        sqlx::any::install_default_drivers();
        let pool = AnyPool::connect(&url).await.expect("pool");
        let (a, b) = (ReplicaId::new(), ReplicaId::new());
        let bus_a = Bus::shared(a, pool.clone(), url.clone());
        let bus_b = Bus::shared(b, pool, url);
        let stop = CancellationToken::new();
        let (mut heard_a, mut heard_b) = (bus_a.subscribe(), bus_b.subscribe());
        tokio::spawn(bus_a.clone().listen(stop.clone()));
        tokio::spawn(bus_b.clone().listen(stop.clone()));
        let notice = |reason: &str| Notice::ToAgent {
            agent_id: AgentId::from("agent"),
            message: ServerMessage::Goodbye {
                reason: reason.into(),
            },
        };
        // Until both listen, a notice may be missed: repeat until heard.
        let heard = async {
            loop {
                bus_a.publish(notice("from a")).await.expect("publish");
                let wait = tokio::time::timeout(Duration::from_millis(200), heard_b.recv());
                if let Ok(got) = wait.await {
                    return got.expect("notice");
                }
            }
        };
        let got = tokio::time::timeout(Duration::from_secs(10), heard).await;
        assert_eq!(got.expect("b heard a"), notice("from a"));
        assert!(heard_a.try_recv().is_err(), "a heard itself");
        let big = "x".repeat(MAX_PAYLOAD);
        assert!(matches!(
            bus_a.publish(notice(&big)).await,
            Err(BusError::TooLarge(_))
        ));
        stop.cancel();
    }

    fn start(env_value: &str) -> Command {
        let spec = streamspace_protocol::SessionSpec::fixture("s1").with_env("BIG", env_value);
        Command {
            id: CommandId::from("c1"),
            session_id: spec.session_id.clone(),
            action: streamspace_protocol::Action::Start {
                spec: Box::new(spec),
            },
            trace_parent: None,
        }
    }

    fn told(payload: &str) -> Notice {
        serde_json::from_str::<Envelope>(payload)
            .expect("an envelope")
            .notice
    }

    /// A command that fits travels whole (the other replica sends it
    /// without reading the store); one too large for NOTIFY as its id.
    #[test]
    fn a_command_travels_whole_when_it_fits_and_as_its_id_otherwise() {
        let bus = Bus::alone(ReplicaId::new());
        let agent = AgentId::from("a1");
        let small = start("x");
        let payload = bus.payload(command_notice(&agent, &small)).expect("fits");
        assert_eq!(told(&payload), command_notice(&agent, &small));

        let large = start(&"x".repeat(MAX_PAYLOAD));
        let payload = bus.payload(command_notice(&agent, &large)).expect("fits");
        assert!(payload.len() <= MAX_PAYLOAD);
        let expected = Notice::Command {
            agent_id: agent.clone(),
            command_id: large.id.clone(),
            command: None,
        };
        assert_eq!(told(&payload), expected);
    }

    /// A start with a template's secret variable or registry credentials
    /// travels as its id: nothing secret is in the payload.
    #[test]
    fn a_command_with_secrets_travels_as_its_id() {
        let bus = Bus::alone(ReplicaId::new());
        let agent = AgentId::from("a1");
        let with_env = |spec: streamspace_protocol::SessionSpec| {
            let mut spec = spec.with_env("API_KEY", "hunter2");
            spec.secret_env_keys.insert("API_KEY".into());
            spec
        };
        let fixture = || streamspace_protocol::SessionSpec::fixture("s1");
        for spec in [
            with_env(fixture()),
            fixture().with_registry_auth("robot", "hunter2"),
        ] {
            let command = Command {
                id: CommandId::from("c1"),
                session_id: spec.session_id.clone(),
                action: streamspace_protocol::Action::Start {
                    spec: Box::new(spec),
                },
                trace_parent: None,
            };
            let payload = bus.payload(command_notice(&agent, &command)).expect("fits");
            assert!(!payload.contains("hunter2"), "{payload}");
            let expected = Notice::Command {
                agent_id: agent.clone(),
                command_id: command.id.clone(),
                command: None,
            };
            assert_eq!(told(&payload), expected);
        }
    }

    /// An older replica's notice (no command in it) is still understood.
    #[test]
    fn a_command_notice_without_the_command_is_understood() {
        let json =
            r#"{"origin":"r1","notice":{"kind":"command","agent_id":"a1","command_id":"c1"}}"#;
        assert_eq!(
            told(json),
            Notice::Command {
                agent_id: AgentId::from("a1"),
                command_id: CommandId::from("c1"),
                command: None,
            }
        );
    }

    #[tokio::test]
    async fn a_lone_replica_publishes_nothing() {
        let bus = Bus::alone(ReplicaId::new());
        let mut heard = bus.subscribe();
        let notice = Notice::ToAgent {
            agent_id: AgentId::from("agent"),
            message: ServerMessage::Goodbye { reason: "x".into() },
        };
        bus.publish(notice).await.expect("no-op");
        assert!(heard.try_recv().is_err());
    }
}
