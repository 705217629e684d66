//! Guessing passwords is throttled per username and per client address,
//! answered 429 with `Retry-After`; a success resets the username, quiet
//! makes the throttle forget, unknown usernames are treated exactly like
//! known ones, and failed logins show in the metrics.

use crate::{Engine, TestApp, spawn_app_with};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::time::Duration;
use streamspace_server::auth::client_addr::parse_trusted_proxy;
use streamspace_server::auth::throttle::ThrottleLimits;
use streamspace_testkit::{ADMIN_PASSWORD, eventually};

/// Lockouts long enough that a loaded machine sends the next cheap
/// request within them, short enough for a test to wait one out.
const SHORT: Duration = Duration::from_secs(5);
/// Lockouts for tests that never wait for one to end: a real (argon2)
/// login may come between locking and the request that must find it locked.
const LONG: Duration = Duration::from_secs(300);

fn limits(user_failures: u32, address_failures: u32, lockout: Duration) -> ThrottleLimits {
    ThrottleLimits {
        user_failures,
        address_failures,
        first_lockout: lockout,
        max_lockout: lockout,
        forget_after: lockout + Duration::from_secs(1),
        max_entries: 1000,
    }
}

/// The app on SQLite with these throttle limits.
async fn app_with(throttle: ThrottleLimits) -> TestApp {
    spawn_app_with(Engine::Sqlite, |c| c.login_throttle = throttle, None).await
}

#[derive(Debug)]
struct Answer {
    status: StatusCode,
    retry_after: Option<u64>,
    error: String,
}

async fn login(app: &TestApp, username: &str, password: &str, from: Option<&str>) -> Answer {
    let mut request = reqwest::Client::new()
        .post(app.url.join("/api/v1/auth/login").expect("url"))
        .json(&json!({"username": username, "password": password}));
    if let Some(address) = from {
        request = request.header("x-forwarded-for", address);
    }
    let response = request.send().await.expect("the server answers");
    let status = response.status();
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let body: Value = response.json().await.unwrap_or_default();
    let error = body["error"].as_str().unwrap_or_default().to_owned();
    Answer {
        status,
        retry_after,
        error,
    }
}

async fn statuses(app: &TestApp, username: &str, n: usize) -> Vec<u16> {
    let mut out = Vec::new();
    for i in 0..n {
        let answer = login(app, username, &format!("wrong-{i}"), None).await;
        out.push(answer.status.as_u16());
    }
    out
}

#[tokio::test]
async fn guessing_one_password_is_throttled_then_forgotten() -> anyhow::Result<()> {
    let throttle = limits(3, 100, SHORT);
    let forget_after = throttle.forget_after;
    let app = app_with(throttle).await;
    app.admin.create_user("alice", "alice-password").await?;
    app.admin.create_user("bob", "bob-password").await?;

    // Three free failures; the fourth locks the name.
    assert_eq!(statuses(&app, "alice", 4).await, [401, 401, 401, 401]);
    let locked = login(&app, "alice", "alice-password", None).await;
    assert_eq!(locked.status, StatusCode::TOO_MANY_REQUESTS, "{locked:?}");
    let wait = locked.retry_after.unwrap_or_default();
    assert!((1..=SHORT.as_secs()).contains(&wait), "{locked:?}");
    assert_eq!(
        locked.error,
        format!("too many failed logins for this username: try again in {wait}s")
    );
    let metrics = app.admin.text("/metrics").await?;
    assert_eq!(
        metric(&metrics, "streamspace_login_lockouts{scope=\"user\"}")?,
        1
    );
    // Others are not locked out with alice.
    let bob = login(&app, "bob", "bob-password", None).await;
    assert_eq!(bob.status, StatusCode::OK, "{bob:?}");
    // A name that does not exist is answered exactly alike.
    assert_eq!(statuses(&app, "nobody", 5).await, [401, 401, 401, 401, 429]);
    let nobody_failed = tokio::time::Instant::now();

    // After the lockout the right password works, and resets the count.
    eventually(SHORT * 3, "alice's lockout to end", || async {
        let answer = login(&app, "alice", "alice-password", None).await;
        Ok((answer.status == StatusCode::OK).then_some(()))
    })
    .await?;
    assert_eq!(statuses(&app, "alice", 3).await, [401, 401, 401]);

    // Quiet for longer than forget_after: "nobody" starts afresh. (Still
    // remembered, the first failure after the lockout would lock again.)
    tokio::time::sleep_until(nobody_failed + forget_after + Duration::from_secs(1)).await;
    assert_eq!(statuses(&app, "nobody", 3).await, [401, 401, 401]);

    let metrics = app.admin.text("/metrics").await?;
    // Known and unknown names fail under one reason: the metrics are
    // public, and must not tell which usernames exist.
    assert!(
        !metrics.contains("unknown_user") && !metrics.contains("wrong_password"),
        "{metrics}"
    );
    let failures = |reason| format!("streamspace_login_failures_total{{reason=\"{reason}\"}}");
    assert_eq!(
        metric(&metrics, &failures("bad_credentials"))?,
        4 + 4 + 3 + 3
    );
    assert!(metric(&metrics, &failures("throttled"))? >= 2, "{metrics}");
    // The admin's login in spawn_app, bob's and alice's.
    assert_eq!(metric(&metrics, "streamspace_logins_total")?, 3);
    assert_eq!(
        metric(&metrics, "streamspace_login_lockouts{scope=\"user\"}")?,
        0
    );
    Ok(())
}

/// Names that break the username rule (public: lowercase slugs of up to
/// 63 characters) cannot exist. They get the same 401 at once, with no
/// password check, nothing counted against anyone, and nothing logged at
/// length: a 1 MiB name per request would otherwise fill the log disk.
#[tokio::test]
async fn names_that_cannot_exist_are_refused_without_counting() -> anyhow::Result<()> {
    let app = app_with(limits(3, 3, LONG)).await;
    // Long, though within the 16 KiB a login body may take.
    let huge = "n".repeat(10 * 1024);
    let too_long = "a".repeat(64);
    for name in ["Admin", "", "a_b", "-a", too_long.as_str(), huge.as_str()] {
        for _ in 0..3 {
            let answer = login(&app, name, "password1", None).await;
            assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{answer:?}");
            assert_eq!(answer.error, "wrong username or password");
        }
    }
    // Eighteen failures from one client with a budget of three: none was
    // counted, so the address is not locked out.
    let admin = login(&app, "admin", ADMIN_PASSWORD, None).await;
    assert_eq!(admin.status, StatusCode::OK, "{admin:?}");
    let metrics = app.admin.text("/metrics").await?;
    let bad = "streamspace_login_failures_total{reason=\"bad_credentials\"}";
    assert_eq!(metric(&metrics, bad)?, 18);
    Ok(())
}

#[tokio::test]
async fn each_client_address_is_throttled_apart_behind_a_trusted_proxy() -> anyhow::Result<()> {
    let app = spawn_app_with(
        Engine::Sqlite,
        |c| {
            c.login_throttle = limits(100, 3, LONG);
            c.trusted_proxies = vec![parse_trusted_proxy("127.0.0.1").expect("address")];
        },
        None,
    )
    .await;
    // Spraying one password at many names from one client…
    for user in ["u1", "u2", "u3", "u4"] {
        let answer = login(&app, user, "password1", Some("192.0.2.1")).await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{answer:?}");
    }
    let answer = login(&app, "u5", "password1", Some("192.0.2.1")).await;
    assert_eq!(answer.status, StatusCode::TOO_MANY_REQUESTS, "{answer:?}");
    assert!(answer.error.contains("from your address"), "{answer:?}");
    // …is stopped for that client only: the proxy (and everyone else
    // behind it) is not locked out.
    let other = login(&app, "admin", ADMIN_PASSWORD, Some("192.0.2.2")).await;
    assert_eq!(other.status, StatusCode::OK, "{other:?}");
    // A client cannot slip out by naming another address to the left of
    // the one our proxy wrote.
    let spoofed = login(&app, "u6", "password1", Some("198.51.100.7, 192.0.2.1")).await;
    assert_eq!(spoofed.status, StatusCode::TOO_MANY_REQUESTS, "{spoofed:?}");
    Ok(())
}

#[tokio::test]
async fn forwarded_for_from_an_untrusted_peer_is_ignored() -> anyhow::Result<()> {
    let app = app_with(limits(100, 3, LONG)).await;
    // Without --trusted-proxies, naming a new address each time does not
    // escape the count for the real peer.
    for n in 1..=4 {
        let from = format!("203.0.113.{n}");
        let answer = login(&app, &format!("u{n}"), "password1", Some(&from)).await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{answer:?}");
    }
    let answer = login(&app, "u5", "password1", Some("203.0.113.5")).await;
    assert_eq!(answer.status, StatusCode::TOO_MANY_REQUESTS, "{answer:?}");
    Ok(())
}

#[tokio::test]
async fn an_overlong_password_is_refused_without_hashing() -> anyhow::Result<()> {
    let app = spawn_app_with(Engine::Sqlite, |_| {}, None).await;
    let answer = login(&app, "admin", &"x".repeat(2000), None).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{answer:?}");
    assert!(answer.error.contains("1024 bytes"), "{answer:?}");
    Ok(())
}

/// The value of one series in Prometheus text; an error if it is absent.
pub fn metric(text: &str, series: &str) -> anyhow::Result<u64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series))
        .and_then(|rest| rest.trim().parse::<f64>().ok())
        .map(|v| v as u64)
        .ok_or_else(|| anyhow::anyhow!("no {series} in\n{text}"))
}
