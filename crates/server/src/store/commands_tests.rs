use super::*;
use crate::store::{NewSession, Role};
use streamspace_protocol::{Action, DesiredState, Phase, SessionSpec};

const TRACE: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

/// A store with a running session on agent `a1`, and a start command for
/// it issued in a traced request.
async fn setup(url: &str) -> (Store, Command) {
    let store = Store::connect(url).await.expect("store");
    let user = store.create_user("alice", "h", Role::User).await;
    let new = NewSession {
        user_id: user.expect("user").id,
        template_id: "t".into(),
        template_name: "desktop".into(),
        agent_id: "a1".into(),
        platform: "docker".into(),
        spec: SessionSpec::fixture(SessionId::new()),
        idle_timeout_ms: None,
    };
    let adopted = store.adopt_session(&new, DesiredState::Running, Phase::Running, "test");
    let session = adopted.await.expect("session");
    let command = Command {
        id: CommandId::new(),
        session_id: session.id,
        action: Action::Hibernate,
        trace_parent: Some(TRACE.into()),
    };
    store
        .enqueue_command(&"a1".into(), &command)
        .await
        .expect("stored");
    (store, command)
}

/// The trace context is stored with the command and re-sent with it.
async fn a_commands_trace_context_is_kept(url: &str) {
    let (store, command) = setup(url).await;
    let open = store.open_commands(&"a1".into()).await.expect("read");
    assert_eq!(open.len(), 1);
    assert_eq!(open[0].command, command);
}

/// The ack and the result that move a command return its issue time,
/// once each: a repeated ack is not measured again but keeps the command
/// fresh for the reconciler; another agent's reports move nothing.
async fn each_stage_is_reported_once(url: &str) {
    let (store, command) = setup(url).await;
    let (a1, a2): (AgentId, AgentId) = ("a1".into(), "a2".into());
    let (id, agent) = (&command.id, &a1);
    let before = now_ms();
    let advance = |status, agent| store.advance_command(id, agent, status, None);

    assert_eq!(
        advance(CommandStatus::Acked, &a2).await.expect("write"),
        None
    );
    let acked = advance(CommandStatus::Acked, agent).await.expect("write");
    let acked = acked.expect("the first ack moves it");
    assert_eq!(acked.action, "hibernate");
    assert!(
        (before - 5_000..=now_ms()).contains(&acked.issued_at),
        "{acked:?}"
    );

    let fresh = store
        .latest_command(&command.session_id)
        .await
        .expect("read");
    let fresh = fresh.expect("the command").updated_at;
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    assert_eq!(
        advance(CommandStatus::Acked, agent).await.expect("write"),
        None
    );
    let again = store
        .latest_command(&command.session_id)
        .await
        .expect("read");
    assert!(
        again.expect("the command").updated_at > fresh,
        "a repeated ack refreshes it"
    );

    let done = advance(CommandStatus::Completed, agent)
        .await
        .expect("write");
    assert_eq!(done, Some(acked.clone()), "the result moves it");
    assert_eq!(
        advance(CommandStatus::Completed, agent)
            .await
            .expect("write"),
        None
    );
    assert_eq!(
        advance(CommandStatus::Acked, agent).await.expect("write"),
        None
    );
    let status = store.command_status(id).await.expect("read");
    assert_eq!(status.as_deref(), Some("completed"));
}

on_both_engines!(
    a_commands_trace_context_is_kept,
    each_stage_is_reported_once
);
