//! `GET /metrics` is public: what a scrape costs the store is bounded.

use crate::fake_agent::{FakeAgent, enroll};
use crate::login_throttle::metric;
use crate::{Engine, spawn_app};
use serde_json::json;
use std::time::{Duration, Instant};
use streamspace_testkit::{Api, eventually};

/// Sessions in every phase, as one scrape reports them.
fn sessions(text: &str) -> u64 {
    text.lines()
        .filter(|line| line.starts_with("streamspace_sessions{"))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// Counting sessions reads every row the store keeps, terminated ones
/// included; anyone could make the server do it as often as they liked by
/// sending scrapes. A scrape within a second of the last count reuses it:
/// a session created in between is not in it yet, and is a second later.
#[tokio::test]
async fn scrapes_count_sessions_at_most_once_a_second() -> anyhow::Result<()> {
    let app = spawn_app(Engine::Sqlite).await;
    app.admin
        .create_template(json!({"name": "desktop", "image": "streamspace/desktop:local"}))
        .await?;
    let (id, secret) = enroll(&app.admin, "a").await?;
    let _agent = FakeAgent::connect(&app.url, &id, &secret).await?;
    let anyone = Api::new(&app.url);

    let counted = Instant::now();
    assert_eq!(sessions(&anyone.text("/metrics").await?), 0);
    app.admin
        .create_session(json!({"template": "desktop"}))
        .await?;
    let again = anyone.text("/metrics").await?;
    if counted.elapsed() < Duration::from_millis(900) {
        assert_eq!(sessions(&again), 0, "counted again within the second");
    }
    // Other gauges are read at every scrape.
    assert_eq!(metric(&again, "streamspace_agents_connected")?, 1);
    eventually(
        Duration::from_secs(5),
        "the session to be counted",
        || async { Ok((sessions(&anyone.text("/metrics").await?) == 1).then_some(())) },
    )
    .await?;
    Ok(())
}
