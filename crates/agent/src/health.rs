//! The platform's health, checked once per heartbeat interval within a
//! deadline and sent with every heartbeat. A hung engine never refuses
//! anything, it just does not answer: so a check that overruns the deadline
//! is itself the problem, and the control plane stops placing sessions here
//! until a check answers in time again.

use crate::platform::Platform;
use std::sync::Arc;
use std::time::Duration;
use streamspace_protocol::PlatformHealth;
use tokio::sync::watch;
use tokio::time::{Instant, sleep, timeout};
use tokio_util::sync::CancellationToken;

/// How long a platform has to answer its health check. Docker answers a
/// ping and `info` in milliseconds even when busy; two seconds is far past
/// that and short enough to notice a hang before the next heartbeat but one.
pub const DEADLINE: Duration = Duration::from_secs(2);

/// How often the pause between checks looks at the interval again.
const REREAD: Duration = Duration::from_millis(250);

/// One check: the platform's own verdict, or the deadline's.
pub async fn check(platform: &dyn Platform, deadline: Duration) -> PlatformHealth {
    match timeout(deadline, platform.health()).await {
        Ok(health) => health,
        Err(_) => PlatformHealth::degraded(format!(
            "the {} platform did not answer its health check within {deadline:?}",
            platform.name(),
        )),
    }
}

/// Checks the platform every `every()` (re-read after each check: the
/// control plane sets the heartbeat interval) until `shutdown`. `tx` holds
/// the latest result (`None` until the first check ends) and wakes its
/// watchers only when the problem changes, so a change can be reported at
/// once rather than at the next heartbeat.
pub async fn watch_platform(
    platform: Arc<dyn Platform>,
    every: impl Fn() -> Duration,
    tx: watch::Sender<Option<PlatformHealth>>,
    shutdown: CancellationToken,
) {
    loop {
        let started = Instant::now();
        let health = tokio::select! {
            health = check(platform.as_ref(), DEADLINE) => health,
            _ = shutdown.cancelled() => return,
        };
        publish(&tx, health);
        // Until `every()` has passed since the check began, re-read often:
        // the interval changes when the agent connects, and waiting out the
        // default first would leave a hang unnoticed for longer.
        while started.elapsed() < every() {
            tokio::select! {
                _ = sleep(REREAD.min(every())) => {}
                _ = shutdown.cancelled() => return,
            }
        }
    }
}

/// Keeps `health` as the latest; logs and notifies only a change.
fn publish(tx: &watch::Sender<Option<PlatformHealth>>, health: PlatformHealth) {
    tx.send_if_modified(|latest| {
        let changed = latest.as_ref().map(|h| &h.problem) != Some(&health.problem);
        if changed {
            match &health.problem {
                Some(problem) => tracing::warn!(%problem, "the platform is degraded"),
                None if latest.is_some() => tracing::info!("the platform is healthy again"),
                None => {}
            }
        }
        *latest = Some(health);
        changed
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::FakePlatform;
    use std::sync::atomic::Ordering;

    #[tokio::test]
    async fn a_platform_that_does_not_answer_in_time_is_degraded() {
        let platform = FakePlatform::default();
        assert_eq!(check(&platform, DEADLINE).await, PlatformHealth::healthy());
        platform.health_hangs.store(true, Ordering::SeqCst);
        let started = tokio::time::Instant::now();
        let health = check(&platform, Duration::from_millis(200)).await;
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "the deadline held"
        );
        assert_eq!(
            health.problem.as_deref(),
            Some("the fake platform did not answer its health check within 200ms")
        );
    }

    #[tokio::test]
    async fn watchers_wake_when_the_problem_changes_and_only_then() {
        let platform = Arc::new(FakePlatform::default());
        let (tx, mut rx) = watch::channel(None);
        let shutdown = CancellationToken::new();
        let every = || Duration::from_millis(50);
        let task = tokio::spawn(watch_platform(
            platform.clone(),
            every,
            tx,
            shutdown.clone(),
        ));
        let first = timeout(Duration::from_secs(5), rx.changed()).await;
        assert!(matches!(first, Ok(Ok(()))), "the first result is news");
        assert_eq!(*rx.borrow_and_update(), Some(PlatformHealth::healthy()));
        // Several healthy checks later, nobody was woken for them.
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(
            !rx.has_changed().expect("open"),
            "the same health is no news"
        );
        platform.health_hangs.store(true, Ordering::SeqCst);
        // The checks now take DEADLINE each before they report.
        let degraded = timeout(DEADLINE * 3, rx.changed()).await;
        assert!(matches!(degraded, Ok(Ok(()))), "a hang is news");
        let problem = rx.borrow_and_update().clone().and_then(|h| h.problem);
        assert!(problem.is_some_and(|p| p.contains("did not answer")));
        platform.health_hangs.store(false, Ordering::SeqCst);
        let back = timeout(DEADLINE * 3, rx.changed()).await;
        assert!(matches!(back, Ok(Ok(()))), "recovery is news");
        assert_eq!(*rx.borrow(), Some(PlatformHealth::healthy()));
        shutdown.cancel();
        task.await.expect("the watcher ends on shutdown");
    }
}
