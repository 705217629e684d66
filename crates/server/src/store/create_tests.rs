//! A new session is stored whole, in one step: its row, its start command
//! and the first event of its trail, and (PostgreSQL) the announcement that
//! hands the command to another replica leaves with the same commit.

use super::{Announcement, AuditEntry, NewSession, Role, Store};
use sqlx::postgres::PgListener;
use std::time::Duration;
use streamspace_protocol::{Action, Command, CommandId, DesiredState, Phase};

async fn new_session(store: &Store) -> (NewSession, Command, AuditEntry) {
    let user = store.create_user("u", "x", Role::User).await.expect("user");
    let new = NewSession {
        idle_timeout_ms: Some(60_000),
        ..NewSession::fixture(user.id)
    };
    let spec = new.spec.clone();
    let start = Command {
        id: CommandId::new(),
        session_id: spec.session_id.clone(),
        action: Action::Start {
            spec: Box::new(spec.clone()),
        },
        trace_parent: None,
    };
    let created = AuditEntry::new("user:u", "created")
        .state("running")
        .phase("Pending")
        .message(Some("placed on agent a1"));
    (new, start, created)
}

async fn a_new_session_is_stored_with_its_command_and_first_event(url: &str) {
    let store = Store::connect(url).await.expect("store");
    let (new, start, created) = new_session(&store).await;
    let session = store
        .create_session(&new, &start, &created, None)
        .await
        .expect("stored");
    assert_eq!(session.id, new.spec.session_id);
    assert_eq!(
        (session.state, session.phase),
        (DesiredState::Running, Phase::Pending)
    );
    assert_eq!(session.idle_timeout_ms, Some(60_000));
    assert_eq!(session.spec, new.spec);
    let command = store
        .pending_command(&start.id)
        .await
        .expect("read")
        .expect("the start command is pending");
    assert_eq!(command.agent_id, new.agent_id);
    assert_eq!(command.command, start);
    let trail = store.audit_trail(&session.id).await.expect("trail");
    assert_eq!(trail.len(), 1, "{trail:?}");
    assert_eq!(trail[0].kind, "created");
    assert_eq!(trail[0].message.as_deref(), Some("placed on agent a1"));
}

on_both_engines!(a_new_session_is_stored_with_its_command_and_first_event);

/// The announcement is heard once the session is there to read, never
/// before; a failed insert announces nothing.
#[tokio::test]
async fn the_announcement_leaves_with_the_commit() {
    let url = streamspace_testkit::postgres::fresh_database()
        .await
        .expect("a PostgreSQL database");
    let store = Store::connect(&url).await.expect("store");
    let mut listener = PgListener::connect(&url).await.expect("listener");
    listener.listen("create_tests").await.expect("listen");
    let (new, start, created) = new_session(&store).await;
    let announcement = Announcement {
        channel: "create_tests",
        payload: "the start command".into(),
    };
    store
        .create_session(&new, &start, &created, Some(&announcement))
        .await
        .expect("stored");
    let heard = tokio::time::timeout(Duration::from_secs(5), listener.recv())
        .await
        .expect("heard within 5 s")
        .expect("a notification");
    assert_eq!(heard.payload(), "the start command");
    assert!(
        store
            .get_session(&new.spec.session_id)
            .await
            .expect("read")
            .is_some()
    );

    // The same session again: the insert fails, and nothing is announced.
    let again = store
        .create_session(&new, &start, &created, Some(&announcement))
        .await;
    assert!(
        again.is_err(),
        "a second session with the same id was stored"
    );
    let quiet = tokio::time::timeout(Duration::from_millis(500), listener.recv()).await;
    assert!(quiet.is_err(), "a failed create announced {quiet:?}");
}
