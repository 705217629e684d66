//! `streamspace up`: one process with an embedded agent and the seeded
//! desktop template; and who may reach whose session.

use crate::{RUNNING_LIMIT, assert_vnc_works, bin, require_desktop_image};
use reqwest::{Method, StatusCode};
use serde_json::json;
use std::time::Duration;
use streamspace_testkit::docker::Cleanup;
use streamspace_testkit::rfb::VncSocket;
use streamspace_testkit::{Api, ControlPlane, Mode};

#[tokio::test]
async fn up_runs_a_desktop_and_keeps_users_apart() -> anyhow::Result<()> {
    require_desktop_image();
    let cp = ControlPlane::start(bin(), Mode::Up, None).await?;
    let admin = Api::admin(&cp.url).await?;
    let agent_id = admin
        .wait_for_agent("local", Duration::from_secs(30))
        .await?;
    let _cleanup = Cleanup(vec![agent_id]);

    admin.create_user("alice", "alice-password").await?;
    admin.create_user("bob", "bob-password").await?;
    let alice = Api::login(&cp.url, "alice", "alice-password").await?;
    let bob = Api::login(&cp.url, "bob", "bob-password").await?;

    let session = alice.create_session(json!({"template": "desktop"})).await?;
    let id = session["id"].as_str().unwrap_or_default().to_owned();
    assert_eq!(session["user"], "alice");
    alice.wait_for_phase(&id, "Running", RUNNING_LIMIT).await?;
    assert_vnc_works(&alice, &id).await?;

    // Bob cannot see, change or watch Alice's session.
    let path = format!("/api/v1/sessions/{id}");
    for (method, path, body) in [
        (Method::GET, path.clone(), None),
        (
            Method::PUT,
            format!("{path}/state"),
            Some(json!({"state": "hibernated"})),
        ),
        (Method::DELETE, path.clone(), None),
    ] {
        let answer = bob.call(method.clone(), &path, body).await?;
        assert_eq!(
            answer.status,
            StatusCode::NOT_FOUND,
            "{method} {path}: {:?}",
            answer.body
        );
    }
    let listed = bob
        .expect(Method::GET, "/api/v1/sessions", None, StatusCode::OK)
        .await?;
    assert_eq!(listed, json!([]));
    let bob_token = bob.token.clone().unwrap_or_default();
    let refused = VncSocket::connect(&cp.url, &id, &bob_token, &[]).await;
    assert_eq!(refused.err().map(|r| r.status), Some(404));
    let all = bob
        .call(Method::GET, "/api/v1/sessions?all=true", None)
        .await?;
    assert_eq!(all.status, StatusCode::FORBIDDEN);
    let agents = bob.call(Method::GET, "/api/v1/agents", None).await?;
    assert_eq!(agents.status, StatusCode::FORBIDDEN);

    // A forged token fails, and so does a real login cookie sent by a page
    // from another origin (what a cross-site WebSocket would do).
    let refused = VncSocket::connect(&cp.url, &id, "sst_forged", &[]).await;
    assert_eq!(refused.err().map(|r| r.status), Some(401));
    let alice_token = alice.token.clone().unwrap_or_default();
    let cookie = format!("streamspace_token={alice_token}");
    let foreign = [
        ("cookie", cookie.as_str()),
        ("origin", "https://evil.example"),
    ];
    let refused = VncSocket::connect(&cp.url, &id, "", &foreign).await;
    assert_eq!(
        refused.err().map(|r| r.status),
        Some(403),
        "foreign origin refused"
    );
    let own_origin = cp.url.origin().ascii_serialization();
    let same_site = [("cookie", cookie.as_str()), ("origin", own_origin.as_str())];
    let mut vnc = VncSocket::connect(&cp.url, &id, "", &same_site)
        .await
        .map_err(|r| anyhow::anyhow!("own origin refused: {} {}", r.status, r.error))?;
    vnc.banner().await?;
    vnc.close().await;

    // The admin sees everyone's sessions and may open them.
    let all = admin
        .expect(
            Method::GET,
            "/api/v1/sessions?all=true",
            None,
            StatusCode::OK,
        )
        .await?;
    assert!(
        all.as_array()
            .is_some_and(|s| s.iter().any(|s| s["id"] == id.as_str()))
    );
    assert_vnc_works(&admin, &id).await?;

    // The tunnels show up in the Prometheus metrics.
    let metrics = Api::new(&cp.url).text("/metrics").await?;
    let value = |name: &str| -> f64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
            .unwrap_or(0.0)
    };
    assert!(
        value("streamspace_tunnels_opened_total ") >= 3.0,
        "{metrics}"
    );
    assert!(
        value("streamspace_tunnel_bytes_total{direction=\"to_viewer\"} ") > 0.0,
        "{metrics}"
    );
    // Plain TCP at both ends (no TLS here): the kernel moves the bytes.
    assert_eq!(
        value("streamspace_tunnels_zero_copy_total "),
        value("streamspace_tunnels_opened_total "),
        "{metrics}"
    );
    assert_eq!(value("streamspace_agents_connected "), 1.0, "{metrics}");

    alice
        .expect(Method::DELETE, &path, None, StatusCode::OK)
        .await?;
    alice
        .wait_for_phase(&id, "Terminated", RUNNING_LIMIT)
        .await?;
    Ok(())
}
