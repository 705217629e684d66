use super::*;
use crate::store::{NewSession, Role, User};
use streamspace_protocol::{DesiredState, Phase, SessionSpec};

/// A store with alice's running session and two more users, bob and carol.
async fn setup(url: &str) -> (Store, SessionId, [User; 3]) {
    let store = Store::connect(url).await.expect("store");
    let mut users = Vec::new();
    for name in ["alice", "bob", "carol"] {
        users.push(
            store
                .create_user(name, "h", Role::User)
                .await
                .expect("user"),
        );
    }
    let new = NewSession {
        user_id: users[0].id.clone(),
        template_id: "t".into(),
        template_name: "desktop".into(),
        agent_id: "a1".into(),
        platform: "docker".into(),
        spec: SessionSpec::fixture(SessionId::new()),
        idle_timeout_ms: None,
    };
    let session = store.adopt_session(&new, DesiredState::Running, Phase::Running, "test");
    let id = session.await.expect("session").id;
    let users: [User; 3] = users.try_into().expect("three");
    (store, id, users)
}

fn invite<'a>(session: &'a SessionId, owner: &'a User, guest: &'a User) -> NewShare<'a> {
    NewShare {
        session_id: session,
        created_by: &owner.id,
        guest: Some(&guest.id),
        token_hash: None,
        control: false,
        expires_at: None,
    }
}

fn link<'a>(session: &'a SessionId, owner: &'a User, hash: &'a str, at: i64) -> NewShare<'a> {
    NewShare {
        session_id: session,
        created_by: &owner.id,
        guest: None,
        token_hash: Some(hash),
        control: true,
        expires_at: Some(at),
    }
}

/// An invite lets its user in until it ends; a second live invite of the
/// same user is refused.
async fn an_invite_opens_the_session_to_its_user_until_it_ends(url: &str) {
    let (store, session, [alice, bob, carol]) = setup(url).await;
    let share = store
        .create_share(invite(&session, &alice, &bob))
        .await
        .expect("write")
        .expect("made");
    assert_eq!(share.guest_username.as_deref(), Some("bob"));
    let again = store.create_share(invite(&session, &alice, &bob)).await;
    assert_eq!(again.expect("write"), Err(ShareRefusal::AlreadyInvited));
    let found = store.guest_share(&session, &bob.id).await.expect("read");
    assert_eq!(found.map(|s| s.id), Some(share.id.clone()));
    assert!(
        store
            .guest_share(&session, &carol.id)
            .await
            .expect("read")
            .is_none()
    );
    assert_eq!(store.shared_with(&bob.id).await.expect("read").len(), 1);

    let ended = store.end_share(&session, &share.id).await.expect("write");
    assert_eq!(ended, vec![share.id.clone()]);
    assert!(
        store
            .guest_share(&session, &bob.id)
            .await
            .expect("read")
            .is_none()
    );
    assert!(!store.share_is_live(&share.id).await.expect("read"));
    assert!(store.shared_with(&bob.id).await.expect("read").is_empty());
    let twice = store.end_share(&session, &share.id).await.expect("write");
    assert!(twice.is_empty(), "an ended share cannot be ended again");
}

/// A link is found by its hash only while it lasts; its guests get shares
/// of their own that end with it.
async fn a_links_guests_end_with_the_link(url: &str) {
    let (store, session, [alice, bob, carol]) = setup(url).await;
    let later = now_ms() + 60_000;
    let made = store
        .create_share(link(&session, &alice, "hash", later))
        .await;
    let link = made.expect("write").expect("made");
    assert!(link.is_link);
    let found = store.share_link("hash").await.expect("read").expect("live");
    let bobs = store
        .join_link(&found, &bob.id)
        .await
        .expect("write")
        .expect("in");
    let again = store
        .join_link(&found, &bob.id)
        .await
        .expect("write")
        .expect("in");
    assert_eq!(bobs.id, again.id, "coming back gives the same share");
    assert!(bobs.control && bobs.expires_at == Some(later) && !bobs.is_link);
    store
        .join_link(&found, &carol.id)
        .await
        .expect("write")
        .expect("in");
    assert_eq!(store.live_shares(&session).await.expect("read").len(), 3);

    let ended = store.end_share(&session, &link.id).await.expect("write");
    assert_eq!(ended.len(), 3, "the link and both guests: {ended:?}");
    assert!(store.share_link("hash").await.expect("read").is_none());
    assert!(
        store
            .guest_share(&session, &bob.id)
            .await
            .expect("read")
            .is_none()
    );
    assert!(store.live_shares(&session).await.expect("read").is_empty());
}

/// An expired link is no longer found, and neither are its guests' shares.
async fn an_expired_link_opens_nothing(url: &str) {
    let (store, session, [alice, bob, _]) = setup(url).await;
    let soon = now_ms() + 300;
    let made = store
        .create_share(link(&session, &alice, "hash", soon))
        .await;
    let link = made.expect("write").expect("made");
    store
        .join_link(&link, &bob.id)
        .await
        .expect("write")
        .expect("in");
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    assert!(store.share_link("hash").await.expect("read").is_none());
    assert!(
        store
            .guest_share(&session, &bob.id)
            .await
            .expect("read")
            .is_none()
    );
    assert!(!store.share_is_live(&link.id).await.expect("read"));
}

/// A link lets a bounded number of users in.
async fn a_link_lets_a_bounded_number_of_users_in(url: &str) {
    let (store, session, [alice, ..]) = setup(url).await;
    let made = store
        .create_share(link(&session, &alice, "hash", now_ms() + 60_000))
        .await;
    let link = made.expect("write").expect("made");
    for i in 0..MAX_GUESTS_PER_LINK {
        let guest = store
            .create_user(&format!("g{i}"), "h", Role::User)
            .await
            .expect("user");
        store
            .join_link(&link, &guest.id)
            .await
            .expect("write")
            .expect("within the bound");
    }
    let last = store
        .create_user("last", "h", Role::User)
        .await
        .expect("user");
    let over = store.join_link(&link, &last.id).await.expect("write");
    assert_eq!(over, Err(ShareRefusal::LinkFull));
}

/// A session has a bounded number of live links and shares.
async fn shares_and_links_are_bounded_per_session(url: &str) {
    let (store, session, [alice, ..]) = setup(url).await;
    let later = now_ms() + 60_000;
    let hashes: Vec<String> = (0..=MAX_LINKS_PER_SESSION)
        .map(|i| format!("h{i}"))
        .collect();
    for hash in &hashes[..MAX_LINKS_PER_SESSION as usize] {
        let made = store
            .create_share(link(&session, &alice, hash, later))
            .await;
        made.expect("write").expect("within the bound");
    }
    let over = store
        .create_share(link(
            &session,
            &alice,
            &hashes[MAX_LINKS_PER_SESSION as usize],
            later,
        ))
        .await;
    assert_eq!(over.expect("write"), Err(ShareRefusal::TooMany));
    for i in MAX_LINKS_PER_SESSION..MAX_SHARES_PER_SESSION {
        let guest = store.create_user(&format!("u{i}"), "h", Role::User).await;
        let guest = guest.expect("user");
        let made = store.create_share(invite(&session, &alice, &guest)).await;
        made.expect("write").expect("within the bound");
    }
    let last = store
        .create_user("last", "h", Role::User)
        .await
        .expect("user");
    let over = store.create_share(invite(&session, &alice, &last)).await;
    assert_eq!(over.expect("write"), Err(ShareRefusal::TooMany));
}

/// Watchers are listed while open and live, and not after.
async fn watchers_are_listed_while_open(url: &str) {
    let (store, session, [alice, bob, _]) = setup(url).await;
    let made = store.create_share(invite(&session, &alice, &bob)).await;
    let share = made.expect("write").expect("made");
    let watcher = store.add_watcher(&share.id, &bob.id).await.expect("write");
    store.touch_watcher(&watcher).await.expect("write");
    let watching = store.watchers(&session).await.expect("read");
    assert_eq!(watching.len(), 1);
    assert_eq!(
        (watching[0].username.as_str(), &watching[0].share_id),
        ("bob", &share.id)
    );
    store.remove_watcher(&watcher).await.expect("write");
    assert!(store.watchers(&session).await.expect("read").is_empty());

    store.add_watcher(&share.id, &bob.id).await.expect("write");
    store.end_share(&session, &share.id).await.expect("write");
    assert!(
        store.watchers(&session).await.expect("read").is_empty(),
        "an ended share's viewers are not listed"
    );
}

on_both_engines!(
    an_invite_opens_the_session_to_its_user_until_it_ends,
    a_links_guests_end_with_the_link,
    an_expired_link_opens_nothing,
    shares_and_links_are_bounded_per_session,
    a_link_lets_a_bounded_number_of_users_in,
    watchers_are_listed_while_open,
);
