//! Web-app sessions on the real Docker engine, from the local web-app image
//! (`streamspace/webvnc:local`: noVNC and websockify over HTTP, plus test
//! endpoints): opened by path and by host through the ticket and cookie
//! flow, its page, its WebSocket, a 50 MB upload and download, cookies kept
//! apart, other users and foreign origins refused, logout and hibernation.

use crate::{RUNNING_LIMIT, bin};
use futures::{SinkExt, StreamExt};
use reqwest::{Method, StatusCode};
use serde_json::json;
use std::time::Duration;
use streamspace_testkit::apps::{AppBrowser, AppMode};
use streamspace_testkit::docker::{self, Cleanup};
use streamspace_testkit::process::Options;
use streamspace_testkit::{AgentProcess, Api, ControlPlane, Mode};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const WEBVNC: &str = "streamspace/webvnc:local";
const WEB_PORT: u16 = 6080;
const DOMAIN: &str = "apps.localhost";

fn web_template() -> serde_json::Value {
    json!({
        "name": "web-desktop",
        "image": WEBVNC,
        "ports": [
            {"name": "web", "port": WEB_PORT, "protocol": "http", "path": "/"},
            {"name": "vnc", "port": 5901, "protocol": "vnc"}
        ],
        "resources": {"cpu": "1", "memory": "512Mi"},
        "platforms": ["docker"]
    })
}

/// Bytes that are not all alike, so a shuffled or truncated transfer shows.
fn payload(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

#[tokio::test]
async fn web_apps_work_by_path_and_by_host_for_their_owner_only() -> anyhow::Result<()> {
    if let Err(err) = docker::require_image(WEBVNC) {
        panic!("{err:#}");
    }
    let options = Options {
        args: vec!["--apps-domain".into(), DOMAIN.into()],
        ..Options::default()
    };
    let cp = ControlPlane::start_with(bin(), Mode::Server, None, options).await?;
    let admin = Api::admin(&cp.url).await?;
    let token = admin.enrollment_token().await?;
    let agent = AgentProcess::start(bin(), &cp.url, &token, "apps-agent").await?;
    let agent_id = admin
        .wait_for_agent("apps-agent", Duration::from_secs(30))
        .await
        .map_err(|e| anyhow::anyhow!("{e:#}\nagent log:\n{}", agent.process.log()))?;
    let _cleanup = Cleanup(vec![agent_id]);
    admin.create_template(web_template()).await?;
    admin.create_user("alice", "alice-password-1").await?;
    admin.create_user("bob", "bob-password-12").await?;
    let alice = Api::login(&cp.url, "alice", "alice-password-1").await?;
    let bob = Api::login(&cp.url, "bob", "bob-password-12").await?;
    let alice_token = alice.token.clone().unwrap_or_default();

    let session = alice
        .create_session(json!({"template": "web-desktop"}))
        .await?;
    let id = session["id"].as_str().unwrap_or_default().to_owned();
    alice.wait_for_phase(&id, "Running", RUNNING_LIMIT).await?;

    let app = AppBrowser::open(&cp.url, &alice_token, &id, WEB_PORT, AppMode::Path, None).await?;
    assert_eq!(app.root.path(), format!("/apps/{id}/{WEB_PORT}/"));
    let page = app.page("/").await?;
    assert!(page.contains("vnc.html"), "the app's index: {page}");
    assert!(app.page("vnc.html").await?.contains("noVNC"));

    // The app sees its own cookies, never the control plane's login nor its grant.
    let login = format!("streamspace_token={alice_token}");
    let echoed = app
        .request(Method::GET, "cookie", &format!("mine=1; {login}"))
        .send()
        .await?
        .text()
        .await?;
    assert!(echoed.contains("mine=1"), "{echoed}");
    assert!(
        !echoed.contains("streamspace_token") && !echoed.contains("ssc_"),
        "{echoed}"
    );

    // 50 MB up and back, intact.
    let sent = payload(50 << 20);
    let put = app
        .request(Method::PUT, "files/big.bin", "")
        .body(sent.clone())
        .timeout(Duration::from_secs(120))
        .send()
        .await?;
    assert!(put.status().is_success(), "upload: {}", put.status());
    let got = app.request(Method::GET, "files/big.bin", "").send().await?;
    assert_eq!(got.status(), StatusCode::OK);
    let got = got.bytes().await?;
    assert!(
        got.len() == sent.len() && got[..] == sent[..],
        "download differs ({} bytes)",
        got.len()
    );

    // The app's WebSocket carries its VNC stream; only from the app's own origin.
    let websocket = |origin: &str| {
        let url = format!("{}websockify", app.root).replace("http://", "ws://");
        let mut request = url.into_client_request().expect("a request");
        let headers = request.headers_mut();
        headers.insert("cookie", app.cookie.parse().expect("header"));
        headers.insert("origin", origin.parse().expect("header"));
        headers.insert("sec-websocket-protocol", "binary".parse().expect("header"));
        tokio_tungstenite::connect_async(request)
    };
    let own_origin = cp.url.origin().ascii_serialization();
    let (mut ws, _) = websocket(&own_origin).await?;
    let banner = tokio::time::timeout(Duration::from_secs(10), ws.next()).await?;
    match banner {
        Some(Ok(Message::Binary(bytes))) => assert!(bytes.starts_with(b"RFB "), "{bytes:?}"),
        other => panic!("no RFB banner over the app's WebSocket: {other:?}"),
    }
    ws.send(Message::Binary(b"RFB 003.008\n".to_vec().into()))
        .await?;
    ws.close(None).await.ok();
    let foreign = websocket("http://evil.example").await;
    assert!(
        foreign.is_err(),
        "a foreign origin's WebSocket was accepted"
    );

    // Bob can neither open Alice's app nor use the main login on it.
    let bob_token = bob.token.clone().unwrap_or_default();
    let refused = AppBrowser::open(&cp.url, &bob_token, &id, WEB_PORT, AppMode::Path, None).await;
    assert!(refused.is_err(), "bob opened alice's app");
    let plain = reqwest::Client::new();
    let answer = plain
        .get(cp.url.join(&format!("/apps/{id}/{WEB_PORT}/cookie"))?)
        .header("cookie", format!("streamspace_token={alice_token}"))
        .send()
        .await?;
    assert_eq!(
        answer.status(),
        StatusCode::UNAUTHORIZED,
        "the main login opened the app"
    );

    // By host: an origin of its own. Admins may open it there, not by path.
    let admin_token = admin.token.clone().unwrap_or_default();
    let by_host = AppBrowser::open(
        &cp.url,
        &admin_token,
        &id,
        WEB_PORT,
        AppMode::Subdomain,
        Some(DOMAIN),
    )
    .await?;
    assert_eq!(
        by_host.root.host_str(),
        Some(format!("{id}--{WEB_PORT}.{DOMAIN}").as_str())
    );
    assert!(by_host.page("/").await?.contains("vnc.html"));
    let admin_by_path =
        AppBrowser::open(&cp.url, &admin_token, &id, WEB_PORT, AppMode::Path, None).await;
    assert!(admin_by_path.is_err(), "path mode is for the owner");

    // A hibernated web app wakes when it is opened.
    alice.set_state(&id, "hibernated").await?;
    alice
        .wait_for_phase(&id, "Hibernated", RUNNING_LIMIT)
        .await?;
    assert!(
        app.page("/").await?.contains("vnc.html"),
        "woken by the request"
    );
    assert_eq!(alice.session(&id).await?["phase"], "Running");

    // Logging out ends the app's cookie too.
    alice
        .expect(
            Method::POST,
            "/api/v1/auth/logout",
            None,
            StatusCode::NO_CONTENT,
        )
        .await?;
    let after = app.request(Method::GET, "cookie", "").send().await?;
    assert_eq!(after.status(), StatusCode::UNAUTHORIZED);
    admin
        .expect(
            Method::DELETE,
            &format!("/api/v1/sessions/{id}"),
            None,
            StatusCode::OK,
        )
        .await?;
    Ok(())
}
