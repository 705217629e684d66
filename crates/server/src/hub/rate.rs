//! How fast one agent may send: every message can mean a database write and
//! an audit record, so a compromised agent must not be able to flood the
//! store. Messages are charged by the work they make (an inventory by its
//! length), not merely counted. A token bucket: a burst (an inventory and the replies to replayed
//! commands after a reconnect), then a steady rate far above a healthy
//! agent's (a heartbeat every few seconds, a handful of messages per command).

use tokio::time::Instant;

/// Messages an agent may send at once.
pub const BURST: f64 = 2000.0;
/// Messages per second an agent may send for as long as it likes.
pub const PER_SECOND: f64 = 200.0;

pub struct MessageRate {
    tokens: f64,
    last: Instant,
}

impl MessageRate {
    pub fn new(now: Instant) -> Self {
        MessageRate {
            tokens: BURST,
            last: now,
        }
    }

    /// Whether a message worth `cost` messages is within the rate.
    pub fn allow(&mut self, now: Instant, cost: f64) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * PER_SECOND).min(BURST);
        if self.tokens >= cost {
            self.tokens -= cost;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_burst_then_the_steady_rate() {
        let start = Instant::now();
        let mut rate = MessageRate::new(start);
        let burst = (0..3000).take_while(|_| rate.allow(start, 1.0)).count();
        assert_eq!(burst, BURST as usize);
        assert!(!rate.allow(start, 1.0));
        let later = start + Duration::from_secs(1);
        let refilled = (0..3000).take_while(|_| rate.allow(later, 1.0)).count();
        assert_eq!(refilled, PER_SECOND as usize);
        let much_later = later + Duration::from_secs(60);
        assert!(
            rate.allow(much_later, BURST),
            "a full bucket pays a burst's worth"
        );
        assert!(!rate.allow(much_later, 1.0));
    }
}
