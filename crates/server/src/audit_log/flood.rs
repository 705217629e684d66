//! A bound on how fast people who proved nothing can grow the audit log.
//!
//! Every event by `anonymous` (a failed login, a refused agent
//! registration) is a row someone without an account made us write. The
//! login throttle already slows guessing per username and per address, but
//! an attacker with many addresses is slowed only by the password-check
//! bound, so each replica also admits anonymous events at a fixed rate,
//! with a burst: beyond it they are counted instead of written, and the
//! count is written as one `audit.suppressed` event once the rate allows
//! again. Events of logged-in users, agents and the system are never
//! dropped.

use super::{AuditEvent, Outcome};
use serde_json::json;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The actor of events by people who proved nothing.
pub const ANONYMOUS: &str = "anonymous";

/// Anonymous events written at once before the rate applies.
pub const BURST: u32 = 100;
/// Then one per this long, per replica: 14,400 a day at most, so even a
/// year-long flood at the longest retention stays a few million rows.
pub const EVERY: Duration = Duration::from_secs(6);

/// What to do with an anonymous event.
#[derive(Debug, PartialEq, Eq)]
pub enum Admit {
    /// Write it; first write that this many were dropped before it.
    Write { dropped_before: u64 },
    /// Over the rate: counted, not written.
    Drop,
}

/// A token bucket for anonymous events, one per replica.
#[derive(Debug)]
pub struct AnonymousBudget {
    inner: Mutex<Bucket>,
    burst: u32,
    every: Duration,
}

#[derive(Debug)]
struct Bucket {
    tokens: u32,
    refilled: Instant,
    dropped: u64,
}

impl Default for AnonymousBudget {
    fn default() -> Self {
        Self::new(BURST, EVERY)
    }
}

impl AnonymousBudget {
    pub fn new(burst: u32, every: Duration) -> Self {
        AnonymousBudget {
            inner: Mutex::new(Bucket {
                tokens: burst,
                refilled: Instant::now(),
                dropped: 0,
            }),
            burst,
            every,
        }
    }

    /// Takes a token if there is one.
    pub fn admit(&self) -> Admit {
        let mut bucket = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let earned = bucket.refilled.elapsed().as_nanos() / self.every.as_nanos().max(1);
        if earned > 0 {
            let earned = u32::try_from(earned).unwrap_or(u32::MAX);
            bucket.tokens = bucket.tokens.saturating_add(earned).min(self.burst);
            bucket.refilled += self.every * earned.min(self.burst);
            if bucket.tokens == self.burst {
                bucket.refilled = Instant::now();
            }
        }
        if bucket.tokens == 0 {
            bucket.dropped += 1;
            return Admit::Drop;
        }
        bucket.tokens -= 1;
        Admit::Write {
            dropped_before: std::mem::take(&mut bucket.dropped),
        }
    }
}

/// Whether `event` may be written now, and the `audit.suppressed` event to
/// write before it if anonymous events were dropped since the last one.
pub fn check(budget: &AnonymousBudget, event: &AuditEvent) -> (bool, Option<AuditEvent>) {
    if event.actor != ANONYMOUS {
        return (true, None);
    }
    match budget.admit() {
        Admit::Drop => (false, None),
        Admit::Write { dropped_before: 0 } => (true, None),
        Admit::Write { dropped_before } => (true, Some(suppressed(dropped_before))),
    }
}

fn suppressed(dropped: u64) -> AuditEvent {
    AuditEvent::new("system:audit", "audit.suppressed")
        .outcome(Outcome::Success)
        .detail(json!({
            "dropped": dropped,
            "why": format!(
                "more than {BURST} events by anonymous, then one per {} s, on this replica",
                EVERY.as_secs()
            ),
        }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_the_rate_and_the_dropped_are_counted() {
        let budget = AnonymousBudget::new(3, Duration::from_millis(100));
        for _ in 0..3 {
            assert_eq!(budget.admit(), Admit::Write { dropped_before: 0 });
        }
        assert_eq!(budget.admit(), Admit::Drop);
        assert_eq!(budget.admit(), Admit::Drop);
        std::thread::sleep(Duration::from_millis(120));
        assert_eq!(budget.admit(), Admit::Write { dropped_before: 2 });
        assert_eq!(budget.admit(), Admit::Drop, "one token per interval");
    }

    #[test]
    fn a_long_quiet_refills_no_more_than_the_burst() {
        let budget = AnonymousBudget::new(2, Duration::from_millis(10));
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(budget.admit(), Admit::Write { dropped_before: 0 });
        assert_eq!(budget.admit(), Admit::Write { dropped_before: 0 });
        assert_eq!(budget.admit(), Admit::Drop);
    }
}
