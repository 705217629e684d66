//! Session sharing through the real binary: invites and links, who may see
//! what (everyone else gets 404), expiry, bounds, the audit trail, and the
//! guests' viewers. The agent is the protocol-level fake; behind each data
//! channel it opens sits a small VNC server (`RecordingVnc`) that does the
//! real RFB handshake and records every byte a viewer sends it, so a test
//! sees exactly what of a guest's input reached the session.

use crate::audit::events;
use crate::fake_agent::{FakeAgent, enroll};
use crate::revoked_streams::{data_channel, next_channel, user};
use crate::{TestApp, on_both_engines, run_sql};
use anyhow::{Context, bail, ensure};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use streamspace_testkit::Api;
use streamspace_testkit::rfb::VncSocket;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout};

/// How soon an ended share's viewers must close.
const WITHIN: Duration = Duration::from_secs(1);

/// A session of alice's on a fake agent, and bob and carol, two more users.
struct Shared {
    app: TestApp,
    agent: FakeAgent,
    session: String,
    alice: Api,
    bob: Api,
    carol: Api,
}

async fn setup(app: TestApp) -> anyhow::Result<Shared> {
    app.admin
        .create_template(json!({"name": "desktop", "image": "streamspace/desktop:local"}))
        .await?;
    let (agent_id, secret) = enroll(&app.admin, "a").await?;
    let mut agent = FakeAgent::connect(&app.url, &agent_id, &secret).await?;
    let (_, alice) = user(&app, "alice", "user").await?;
    let (_, bob) = user(&app, "bob", "user").await?;
    let (_, carol) = user(&app, "carol", "user").await?;
    let session = agent
        .run_session(&alice, json!({"template": "desktop"}))
        .await?;
    Ok(Shared {
        app,
        agent,
        session,
        alice,
        bob,
        carol,
    })
}

fn shares_path(session: &str) -> String {
    format!("/api/v1/sessions/{session}/shares")
}

/// `alice` shares the session with `body`; the answer.
async fn share(s: &Shared, body: Value) -> anyhow::Result<Value> {
    let path = shares_path(&s.session);
    s.alice
        .expect(Method::POST, &path, Some(body), StatusCode::CREATED)
        .await
}

/// The secret of a link's URL (after `#`).
fn secret_of(created: &Value) -> anyhow::Result<String> {
    let url = created["url"].as_str().context("a link's url")?;
    Ok(url.split_once('#').context("a fragment")?.1.to_owned())
}

async fn status(api: &Api, method: Method, path: &str) -> anyhow::Result<StatusCode> {
    Ok(api.call(method, path, None).await?.status)
}

async fn an_invited_user_sees_the_session_and_nobody_else_does(app: TestApp) -> anyhow::Result<()> {
    let s = setup(app).await?;
    let session_path = format!("/api/v1/sessions/{}", s.session);
    assert_eq!(
        status(&s.bob, Method::GET, &session_path).await?,
        StatusCode::NOT_FOUND
    );
    let created = share(&s, json!({"username": "bob", "mode": "view"})).await?;
    assert_eq!(created["kind"], "invite");
    assert_eq!(
        (created["guest"].as_str(), created["mode"].as_str()),
        (Some("bob"), Some("view"))
    );
    assert!(created["url"].is_null(), "an invite has no link");

    // Bob reads the session and finds it among those shared with him…
    let seen = s
        .bob
        .expect(Method::GET, &session_path, None, StatusCode::OK)
        .await?;
    assert_eq!(seen["user"], "alice");
    let mine = s
        .bob
        .expect(Method::GET, "/api/v1/shared-sessions", None, StatusCode::OK)
        .await?;
    assert_eq!(mine[0]["session"]["id"].as_str(), Some(s.session.as_str()));
    assert_eq!(mine[0]["mode"], "view");
    // …but cannot change it, list or make its shares, or reach its files.
    for (method, path) in [
        (Method::DELETE, session_path.clone()),
        (Method::GET, shares_path(&s.session)),
        (Method::GET, format!("{session_path}/events")),
        (Method::GET, format!("{session_path}/files")),
        (Method::GET, format!("{session_path}/files/notes.txt")),
    ] {
        assert_eq!(
            status(&s.bob, method, &path).await?,
            StatusCode::NOT_FOUND,
            "{path}"
        );
    }
    let reshare = json!({"username": "carol"});
    let answer = s
        .bob
        .call(Method::POST, &shares_path(&s.session), Some(reshare))
        .await?;
    assert_eq!(
        answer.status,
        StatusCode::NOT_FOUND,
        "a guest cannot pass it on"
    );

    // Carol, not invited, gets the 404 of a session that does not exist.
    assert_eq!(
        status(&s.carol, Method::GET, &session_path).await?,
        StatusCode::NOT_FOUND
    );
    let none = s
        .carol
        .expect(Method::GET, "/api/v1/shared-sessions", None, StatusCode::OK)
        .await?;
    assert_eq!(none, json!([]));
    let refused = VncSocket::connect(
        &s.app.url,
        &s.session,
        s.carol.token.as_deref().unwrap_or_default(),
        &[],
    )
    .await;
    assert_eq!(refused.err().map(|r| r.status), Some(404), "carol's viewer");

    // The share is in the session's trail and the system log.
    let trail = s
        .alice
        .expect(
            Method::GET,
            &format!("{session_path}/events"),
            None,
            StatusCode::OK,
        )
        .await?;
    let kinds: Vec<&str> = trail
        .as_array()
        .context("trail")?
        .iter()
        .filter_map(|e| e["kind"].as_str())
        .collect();
    ensure!(kinds.contains(&"share.create"), "the trail: {kinds:?}");
    let logged = events(&s.app, "kind=share.create").await?;
    assert_eq!(logged.len(), 1);
    assert_eq!(logged[0]["actor"], "user:alice");
    assert_eq!(logged[0]["detail"]["guest"], "bob");
    Ok(())
}

async fn a_link_lets_signed_in_users_in_until_it_expires(app: TestApp) -> anyhow::Result<()> {
    let s = setup(app).await?;
    let created = share(
        &s,
        json!({"link": true, "mode": "control", "expires_in": "30m"}),
    )
    .await?;
    assert_eq!(created["kind"], "link");
    let secret = secret_of(&created)?;
    assert!(secret.starts_with("ssj_") && secret.len() == 47, "{secret}");
    let join = json!({"token": secret});

    // Nobody signed in gets past the door.
    let anonymous = Api::new(&s.app.url);
    let answer = anonymous
        .call(Method::POST, "/api/v1/share-links/join", Some(join.clone()))
        .await?;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    // A signed-in user comes in with control, for as long as the link lasts.
    let joined = s
        .carol
        .expect(
            Method::POST,
            "/api/v1/share-links/join",
            Some(join.clone()),
            StatusCode::OK,
        )
        .await?;
    assert_eq!(joined["session_id"].as_str(), Some(s.session.as_str()));
    assert_eq!(joined["mode"], "control");
    let session_path = format!("/api/v1/sessions/{}", s.session);
    assert_eq!(
        status(&s.carol, Method::GET, &session_path).await?,
        StatusCode::OK
    );
    // The owner opening her own link just gets her session.
    let own = s
        .alice
        .expect(
            Method::POST,
            "/api/v1/share-links/join",
            Some(join.clone()),
            StatusCode::OK,
        )
        .await?;
    assert!(own["share_id"].is_null());
    // Made-up and malformed secrets open nothing.
    for token in [
        "ssj_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "nonsense",
        "",
    ] {
        let answer = s
            .bob
            .call(
                Method::POST,
                "/api/v1/share-links/join",
                Some(json!({"token": token})),
            )
            .await?;
        assert_eq!(answer.status, StatusCode::NOT_FOUND, "{token:?}");
    }

    // Past its expiry (moved into the past here, rather than waiting) the
    // link is refused, and those who came through it are out too.
    run_sql(&s.app, "UPDATE session_shares SET expires_at = 1").await?;
    let answer = s
        .bob
        .call(Method::POST, "/api/v1/share-links/join", Some(join))
        .await?;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);
    ensure!(
        answer.body["error"]
            .as_str()
            .is_some_and(|e| e.contains("expired")),
        "{}",
        answer.body
    );
    assert_eq!(
        status(&s.carol, Method::GET, &session_path).await?,
        StatusCode::NOT_FOUND
    );
    let listed = s
        .alice
        .expect(Method::GET, &shares_path(&s.session), None, StatusCode::OK)
        .await?;
    assert_eq!(listed["shares"], json!([]));
    Ok(())
}

async fn bad_share_requests_say_which_field(app: TestApp) -> anyhow::Result<()> {
    let s = setup(app).await?;
    let path = shares_path(&s.session);
    let cases = [
        (json!({}), "username"),
        (json!({"username": "bob", "link": true}), "link"),
        (json!({"username": "nobody-here"}), "username"),
        (json!({"username": "alice"}), "username"),
        (json!({"username": "   "}), "username"),
        (
            json!({"username": "bob", "expires_in": "soon"}),
            "expires_in",
        ),
        (json!({"link": true, "expires_in": "30d"}), "expires_in"),
        (json!({"link": true, "expires_in": "5s"}), "expires_in"),
        (json!({"username": "x".repeat(300)}), "username"),
    ];
    for (body, field) in cases {
        let refused = s
            .alice
            .refused(Method::POST, &path, body.clone(), StatusCode::BAD_REQUEST)
            .await?;
        assert_eq!(refused["field"].as_str(), Some(field), "{body}: {refused}");
    }
    for body in [
        json!({"username": "bob", "mode": "admin"}),
        json!({"link": true, "extra": 1}),
    ] {
        s.alice
            .refused(Method::POST, &path, body, StatusCode::BAD_REQUEST)
            .await?;
    }
    // One live invite per user; a bounded number of links per session.
    share(&s, json!({"username": "bob"})).await?;
    s.alice
        .refused(
            Method::POST,
            &path,
            json!({"username": "bob"}),
            StatusCode::CONFLICT,
        )
        .await?;
    for _ in 0..8 {
        share(&s, json!({"link": true})).await?;
    }
    let over = s
        .alice
        .refused(
            Method::POST,
            &path,
            json!({"link": true}),
            StatusCode::CONFLICT,
        )
        .await?;
    ensure!(
        over["error"].as_str().is_some_and(|e| e.contains("most")),
        "{over}"
    );
    // Ending: only a live share of this session, once.
    let missing = format!("{path}/no-such-share");
    assert_eq!(
        status(&s.alice, Method::DELETE, &missing).await?,
        StatusCode::NOT_FOUND
    );
    Ok(())
}

/// A VNC server behind one data channel: the RFB 3.8 handshake (security
/// None), then it records everything the viewer sends.
struct RecordingVnc {
    received: Arc<Mutex<Vec<u8>>>,
    /// The ClientInit's shared flag.
    shared_flag: Arc<Mutex<Option<u8>>>,
}

impl RecordingVnc {
    fn serve(mut channel: TcpStream) -> Self {
        let received = Arc::new(Mutex::new(Vec::new()));
        let shared_flag = Arc::new(Mutex::new(None));
        let (into, flag) = (received.clone(), shared_flag.clone());
        tokio::spawn(async move {
            let handshake = async {
                channel.write_all(b"RFB 003.008\n").await?;
                let mut version = [0u8; 12];
                channel.read_exact(&mut version).await?;
                channel.write_all(&[1, 1]).await?; // one type: None
                channel.read_u8().await?;
                channel.write_all(&0u32.to_be_bytes()).await?;
                *flag.lock().expect("lock") = Some(channel.read_u8().await?);
                let mut init = vec![
                    0, 64, 0, 48, 32, 24, 0, 1, 0, 255, 0, 255, 0, 255, 16, 8, 0, 0, 0, 0,
                ];
                init.extend_from_slice(&4u32.to_be_bytes());
                init.extend_from_slice(b"test");
                channel.write_all(&init).await?;
                anyhow::Ok(())
            };
            if handshake.await.is_err() {
                return;
            }
            let mut buf = [0u8; 4096];
            while let Ok(n) = channel.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                into.lock().expect("lock").extend_from_slice(&buf[..n]);
            }
        });
        RecordingVnc {
            received,
            shared_flag,
        }
    }

    fn received(&self) -> Vec<u8> {
        self.received.lock().expect("lock").clone()
    }
}

/// A viewer of the session as `api`'s user, past the RFB handshake, with
/// the VNC server that records what reaches it.
async fn view(s: &mut Shared, api: &Api) -> anyhow::Result<(VncSocket, RecordingVnc)> {
    let (base, id) = (s.app.url.clone(), s.session.clone());
    let token = api.token.clone().unwrap_or_default();
    let viewer = tokio::spawn(async move { VncSocket::connect(&base, &id, &token, &[]).await });
    let tunnel_id = next_channel(&mut s.agent).await?;
    let channel = data_channel(&s.app, &s.agent.secret, &tunnel_id).await?;
    let server = RecordingVnc::serve(channel);
    let mut vnc = viewer
        .await?
        .map_err(|r| anyhow::anyhow!("/vnc refused: {} {}", r.status, r.error))?;
    let init = vnc.handshake().await?;
    assert_eq!(
        (init.width, init.height, init.name.as_str()),
        (64, 48, "test")
    );
    Ok((vnc, server))
}

const KEY_A_DOWN: [u8; 8] = [4, 1, 0, 0, 0, 0, 0, b'a'];
const POINTER_CLICK: [u8; 6] = [5, 1, 0, 10, 0, 20];
const CUT_TEXT: [u8; 10] = [6, 0, 0, 0, 0, 0, 0, 2, b'h', b'i'];
const UPDATE_REQUEST: [u8; 10] = [3, 1, 0, 0, 0, 0, 0, 64, 0, 48];

/// Waits until `server` has received `len` bytes (or the limit passes).
async fn received_len(server: &RecordingVnc, len: usize) -> Vec<u8> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let got = server.received();
        if got.len() >= len || Instant::now() > deadline {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn a_view_only_guests_input_never_reaches_the_vnc_server(app: TestApp) -> anyhow::Result<()> {
    let mut s = setup(app).await?;
    share(&s, json!({"username": "bob", "mode": "view"})).await?;
    let alice = s.alice.clone();
    let (mut owner, owner_server) = view(&mut s, &alice).await?;
    let bob = s.bob.clone();
    let (mut guest, guest_server) = view(&mut s, &bob).await?;

    // The guest types, clicks, pastes, then asks for a picture; only the
    // request for the picture reaches the server.
    for message in [&KEY_A_DOWN[..], &POINTER_CLICK, &CUT_TEXT, &UPDATE_REQUEST] {
        guest.write(message).await?;
    }
    let got = received_len(&guest_server, UPDATE_REQUEST.len()).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(guest_server.received(), got, "nothing more arrives later");
    assert_eq!(
        got, UPDATE_REQUEST,
        "only the update request of the view-only guest"
    );
    assert_eq!(
        *guest_server.shared_flag.lock().expect("lock"),
        Some(1),
        "a guest never takes the desktop alone"
    );

    // The owner's keys and clicks do reach it.
    let mut sent = Vec::new();
    for message in [&KEY_A_DOWN[..], &POINTER_CLICK, &UPDATE_REQUEST] {
        owner.write(message).await?;
        sent.extend_from_slice(message);
    }
    assert_eq!(received_len(&owner_server, sent.len()).await, sent);

    // Bob is watching, and his joining is audited.
    let listed = s
        .alice
        .expect(Method::GET, &shares_path(&s.session), None, StatusCode::OK)
        .await?;
    assert_eq!(
        listed["watchers"].as_array().map(Vec::len),
        Some(1),
        "{listed}"
    );
    assert_eq!(listed["watchers"][0]["username"], "bob");
    let joins = events(&s.app, "kind=share.join").await?;
    assert_eq!(joins.len(), 1);
    assert_eq!(joins[0]["actor"], "user:bob");
    Ok(())
}

async fn a_guest_with_control_types_into_the_session(app: TestApp) -> anyhow::Result<()> {
    let mut s = setup(app).await?;
    share(&s, json!({"username": "bob", "mode": "control"})).await?;
    let bob = s.bob.clone();
    let (mut guest, server) = view(&mut s, &bob).await?;
    let mut sent = Vec::new();
    for message in [&KEY_A_DOWN[..], &POINTER_CLICK] {
        guest.write(message).await?;
        sent.extend_from_slice(message);
    }
    assert_eq!(received_len(&server, sent.len()).await, sent);
    Ok(())
}

/// Waits for the viewer to be closed; how long it took.
async fn closes_within(vnc: &mut VncSocket, limit: Duration) -> anyhow::Result<Duration> {
    let start = Instant::now();
    match timeout(limit, vnc.read_exact(1)).await {
        Err(_) => bail!("the viewer was still connected after {limit:?}"),
        Ok(Ok(byte)) => bail!("the viewer got {byte:?} instead of the end"),
        Ok(Err(_)) => Ok(start.elapsed()),
    }
}

async fn ending_a_share_closes_its_viewer_within_a_second(app: TestApp) -> anyhow::Result<()> {
    let mut s = setup(app).await?;
    let invite = share(&s, json!({"username": "bob"})).await?;
    let link = share(&s, json!({"link": true})).await?;
    let join = json!({"token": secret_of(&link)?});
    s.carol
        .expect(
            Method::POST,
            "/api/v1/share-links/join",
            Some(join),
            StatusCode::OK,
        )
        .await?;
    let alice = s.alice.clone();
    let (mut owner, _owner_server) = view(&mut s, &alice).await?;
    let bob = s.bob.clone();
    let (mut bobs, _bob_server) = view(&mut s, &bob).await?;
    let carol = s.carol.clone();
    let (mut carols, _carol_server) = view(&mut s, &carol).await?;

    let path = format!(
        "{}/{}",
        shares_path(&s.session),
        invite["id"].as_str().context("id")?
    );
    s.alice
        .expect(Method::DELETE, &path, None, StatusCode::NO_CONTENT)
        .await?;
    let took = closes_within(&mut bobs, WITHIN).await?;
    println!("bob's viewer closed {took:?} after his share ended");
    // Ending the link closes everyone who came through it.
    let path = format!(
        "{}/{}",
        shares_path(&s.session),
        link["id"].as_str().context("id")?
    );
    s.alice
        .expect(Method::DELETE, &path, None, StatusCode::NO_CONTENT)
        .await?;
    closes_within(&mut carols, WITHIN).await?;
    // The owner's own viewer stays.
    owner.write(&UPDATE_REQUEST).await?;
    ensure!(
        timeout(Duration::from_millis(500), owner.read_exact(1))
            .await
            .is_err(),
        "the owner's viewer stays open"
    );

    // Neither may come back, nobody is listed as watching, and the ends are audited.
    let refused = VncSocket::connect(
        &s.app.url,
        &s.session,
        s.bob.token.as_deref().unwrap_or_default(),
        &[],
    )
    .await;
    assert_eq!(refused.err().map(|r| r.status), Some(404));
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let listed = s
            .alice
            .expect(Method::GET, &shares_path(&s.session), None, StatusCode::OK)
            .await?;
        if listed["watchers"] == json!([]) && listed["shares"] == json!([]) {
            break;
        }
        ensure!(Instant::now() < deadline, "still listed: {listed}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(events(&s.app, "kind=share.end").await?.len(), 2);
    assert_eq!(events(&s.app, "kind=share.join").await?.len(), 2);
    Ok(())
}

async fn a_template_can_forbid_sharing(app: TestApp) -> anyhow::Result<()> {
    app.admin
        .create_template(
            json!({"name": "private", "image": "streamspace/desktop:local",
                                "desktop": {"sharing": false}}),
        )
        .await?;
    let (agent_id, secret) = enroll(&app.admin, "a").await?;
    let mut agent = FakeAgent::connect(&app.url, &agent_id, &secret).await?;
    let (_, alice) = user(&app, "alice", "user").await?;
    user(&app, "bob", "user").await?;
    let session = agent
        .run_session(&alice, json!({"template": "private"}))
        .await?;
    let path = shares_path(&session);
    for body in [json!({"username": "bob"}), json!({"link": true})] {
        let refused = alice
            .refused(Method::POST, &path, body, StatusCode::FORBIDDEN)
            .await?;
        ensure!(
            refused["error"]
                .as_str()
                .is_some_and(|e| e.contains("desktop.sharing")),
            "{refused}"
        );
    }
    let listed = alice
        .expect(Method::GET, &path, None, StatusCode::OK)
        .await?;
    assert_eq!(listed["sharing_allowed"], false);
    assert!(
        events(&app, "kind=share.").await?.is_empty(),
        "nothing was shared"
    );
    Ok(())
}

on_both_engines!(
    a_guest_does_not_wake_a_hibernated_session,
    a_template_can_forbid_sharing,
    an_invited_user_sees_the_session_and_nobody_else_does,
    a_link_lets_signed_in_users_in_until_it_expires,
    bad_share_requests_say_which_field,
    a_view_only_guests_input_never_reaches_the_vnc_server,
    a_guest_with_control_types_into_the_session,
    ending_a_share_closes_its_viewer_within_a_second,
);

/// A guest does not wake a hibernated session (waking counts against the
/// owner's quota): their viewer is refused and the session stays asleep.
async fn a_guest_does_not_wake_a_hibernated_session(app: TestApp) -> anyhow::Result<()> {
    let s = setup(app).await?;
    share(&s, json!({"username": "bob"})).await?;
    run_sql(
        &s.app,
        "UPDATE sessions SET state = 'hibernated', phase = 'Hibernated'",
    )
    .await?;
    let token = s.bob.token.clone().unwrap_or_default();
    let refused = VncSocket::connect(&s.app.url, &s.session, &token, &[]).await;
    let refused = refused.err().context("the guest's viewer is refused")?;
    assert_eq!(refused.status, 409, "{}", refused.error);
    ensure!(refused.error.contains("owner"), "{}", refused.error);
    let seen = s.bob.session(&s.session).await?;
    assert_eq!(
        (seen["state"].as_str(), seen["phase"].as_str()),
        (Some("hibernated"), Some("Hibernated"))
    );
    Ok(())
}

/// A share ended through another replica (nothing said on this replica's
/// bus) still closes the guest's viewer here within a second: each guest
/// viewer re-checks its share in the shared database.
#[tokio::test]
async fn a_share_ended_on_another_replica_closes_the_viewer_within_a_second() -> anyhow::Result<()>
{
    let app = crate::spawn_app(crate::Engine::Postgres).await;
    let other = crate::spawn_replica(&app).await;
    let mut s = setup(app).await?;
    let invite = share(&s, json!({"username": "bob"})).await?;
    let bob = s.bob.clone();
    let (mut bobs, _server) = view(&mut s, &bob).await?;
    let mut alice_elsewhere = Api::new(&other.url);
    alice_elsewhere.token = s.alice.token.clone();
    let path = format!(
        "{}/{}",
        shares_path(&s.session),
        invite["id"].as_str().context("id")?
    );
    alice_elsewhere
        .expect(Method::DELETE, &path, None, StatusCode::NO_CONTENT)
        .await?;
    let took = closes_within(&mut bobs, WITHIN).await?;
    println!("ended on another replica: bob's viewer closed {took:?} later");
    Ok(())
}
