//! Reconnect delays: exponential with jitter, fast at first.
//!
//! The cap is low (1.5 s) on purpose: a refused connection costs the control
//! plane almost nothing, and it bounds how long after the control plane
//! returns an agent is back (the target is 2 s). Jitter spreads thousands of
//! agents so they do not all reconnect in the same instant.

use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Backoff {
    attempt: u32,
    first: Duration,
    cap: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new(Duration::from_millis(100), Duration::from_millis(1500))
    }
}

impl Backoff {
    pub fn new(first: Duration, cap: Duration) -> Self {
        Self {
            attempt: 0,
            first,
            cap,
        }
    }

    /// The delay before the next attempt: between half and all of
    /// `first × 2^attempt`, capped.
    pub fn next_delay(&mut self) -> Duration {
        let exp = self.first.saturating_mul(1 << self.attempt.min(16));
        self.attempt = self.attempt.saturating_add(1);
        let ceiling = exp.min(self.cap);
        ceiling.mul_f64(0.5 + 0.5 * random_unit())
    }

    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

/// A random number in [0, 1).
fn random_unit() -> f64 {
    let mut bytes = [0u8; 8];
    if getrandom::fill(&mut bytes).is_err() {
        return 0.5;
    }
    (u64::from_le_bytes(bytes) >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_then_caps_with_jitter() {
        let mut backoff = Backoff::default();
        let first = backoff.next_delay();
        assert!(first >= Duration::from_millis(50) && first <= Duration::from_millis(100));
        for _ in 0..20 {
            let d = backoff.next_delay();
            assert!(d <= Duration::from_millis(1500), "{d:?}");
        }
        let late = backoff.next_delay();
        assert!(late >= Duration::from_millis(750), "{late:?}");
        backoff.reset();
        assert!(backoff.next_delay() <= Duration::from_millis(100));
    }
}
