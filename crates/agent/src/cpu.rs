//! CPU use from cumulative CPU time: platforms report nanoseconds a
//! session (or the host) has used so far; usage is its growth since the
//! previous heartbeat's sample, over the wall time between them.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, PoisonError};
use std::time::Instant;

/// Cumulative CPU nanoseconds at the last measurement, by key (a
/// container, a domain, the host).
#[derive(Default)]
pub struct CpuSamples(Mutex<HashMap<String, (u64, Instant)>>);

impl CpuSamples {
    /// Millicores used since the previous sample of `key` (0 on the first,
    /// and when the counter went back: a restarted container or restored VM).
    pub fn millicores(&self, key: &str, total_ns: u64, now: Instant) -> u64 {
        let mut samples = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let previous = samples.insert(key.to_owned(), (total_ns, now));
        match previous {
            Some((before, then)) if now > then && total_ns >= before => {
                let wall_ns = u64::try_from(now.duration_since(then).as_nanos())
                    .unwrap_or(u64::MAX)
                    .max(1);
                (total_ns - before).saturating_mul(1000) / wall_ns
            }
            _ => 0,
        }
    }

    /// Forgets every key not in `keys` (sessions that are gone).
    pub fn keep_only(&self, keys: &HashSet<String>) {
        let mut samples = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        samples.retain(|key, _| keys.contains(key));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn cpu_is_the_growth_of_cpu_time_over_wall_time() {
        let samples = CpuSamples::default();
        let t0 = Instant::now();
        assert_eq!(
            samples.millicores("c", 1_000_000_000, t0),
            0,
            "first sample"
        );
        // Half a second of CPU over one second of wall time: 500 millicores.
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(samples.millicores("c", 1_500_000_000, t1), 500);
        // A restarted container's (restored VM's) counter goes back: no
        // negative usage.
        let t2 = t1 + Duration::from_secs(1);
        assert_eq!(samples.millicores("c", 10, t2), 0);
        samples.keep_only(&HashSet::new());
        assert_eq!(samples.millicores("c", 20, t2 + Duration::from_secs(1)), 0);
    }
}
