//! The session state machine as the database enforces it: changes apply
//! only to the session as it was read, and terminated is final.

use super::{NewSession, Role, Store};
use streamspace_protocol::{DesiredState, Phase, SessionId};

async fn running_session(store: &Store) -> SessionId {
    let user = store.create_user("u", "x", Role::User).await.expect("user");
    let new = NewSession::fixture(user.id);
    let session = store.adopt_session(&new, DesiredState::Running, Phase::Running, "test");
    session.await.expect("session").id
}

/// A change decided on a phase that has moved since is not written.
async fn stale_changes_are_refused(url: &str) {
    let store = Store::connect(url).await.expect("store");
    let id = running_session(&store).await;
    let running = (DesiredState::Running, Phase::Running);
    let hibernate = store
        .set_desired_state(
            &id,
            running,
            DesiredState::Hibernated,
            Phase::Hibernating,
            None,
        )
        .await
        .expect("write");
    assert_eq!(hibernate.map(|s| s.phase), Some(Phase::Hibernating));
    // Someone still looking at it as running asks to terminate.
    let stale = store
        .set_desired_state(
            &id,
            running,
            DesiredState::Terminated,
            Phase::Stopping,
            None,
        )
        .await
        .expect("write");
    assert!(stale.is_none(), "a decision on a stale phase is refused");
}

/// Nothing gives a session being terminated another desired state, and
/// nothing moves a terminated one at all.
async fn terminated_is_final(url: &str) {
    let store = Store::connect(url).await.expect("store");
    let id = running_session(&store).await;
    let running = (DesiredState::Running, Phase::Running);
    let stopping = (DesiredState::Terminated, Phase::Stopping);
    store
        .set_desired_state(&id, running, stopping.0, stopping.1, None)
        .await
        .expect("write")
        .expect("terminating");
    let revived = store
        .set_desired_state(&id, stopping, DesiredState::Running, Phase::Waking, None)
        .await
        .expect("write");
    assert!(
        revived.is_none(),
        "a session being terminated cannot run again"
    );
    let ended = store
        .report_phase(&id, &"a1".into(), Phase::Terminated, None)
        .await;
    assert_eq!(
        ended.expect("report").map(|s| s.phase),
        Some(Phase::Terminated)
    );
    let late = store
        .report_phase(&id, &"a1".into(), Phase::Running, None)
        .await;
    assert!(
        late.expect("report").is_none(),
        "late reports change nothing"
    );
    let forced = store.force_terminate(&id, "again").await.expect("write");
    assert!(forced.is_none());
}

/// An agent saying a session ended that nobody asked to end records a
/// failure, which a person can recover, not the final `Terminated`.
async fn agents_cannot_end_sessions_on_their_own(url: &str) {
    let store = Store::connect(url).await.expect("store");
    let id = running_session(&store).await;
    let report = store
        .report_phase(&id, &"a1".into(), Phase::Terminated, None)
        .await;
    let session = report.expect("report").expect("changed");
    assert_eq!(session.phase, Phase::Failed);
    assert!(
        session
            .message
            .as_deref()
            .unwrap_or_default()
            .contains("nobody asked"),
        "{:?}",
        session.message
    );
    let again = store
        .report_phase(&id, &"a1".into(), Phase::Terminated, None)
        .await;
    assert!(again.expect("report").is_none(), "a repeat changes nothing");
}

on_both_engines!(
    stale_changes_are_refused,
    terminated_is_final,
    agents_cannot_end_sessions_on_their_own,
);
