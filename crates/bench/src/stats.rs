//! Summaries of repeated measurements: medians and tail percentiles.

use serde::Serialize;
use std::time::Duration;

/// A sorted set of samples (milliseconds, MB/s, KiB…: the caller's unit).
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub n: usize,
    pub min: f64,
    pub median: f64,
    pub p99: f64,
    pub max: f64,
    pub mean: f64,
}

impl Summary {
    /// `None` when there are no samples.
    pub fn of(samples: &[f64]) -> Option<Self> {
        if samples.is_empty() {
            return None;
        }
        let mut sorted = samples.to_vec();
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len();
        Some(Self {
            n,
            min: sorted[0],
            median: percentile(&sorted, 50.0),
            p99: percentile(&sorted, 99.0),
            max: sorted[n - 1],
            mean: sorted.iter().sum::<f64>() / n as f64,
        })
    }

    pub fn of_durations_ms(samples: &[Duration]) -> Option<Self> {
        let ms: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1e3).collect();
        Self::of(&ms)
    }
}

/// Nearest-rank percentile of sorted samples.
fn percentile(sorted: &[f64], pct: f64) -> f64 {
    let rank = ((pct / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let samples: Vec<f64> = (1..=100).map(f64::from).collect();
        let s = Summary::of(&samples).expect("samples");
        assert_eq!(s.median, 50.0);
        assert_eq!(s.p99, 99.0);
        assert_eq!(s.max, 100.0);
        let one = Summary::of(&[7.0]).expect("one");
        assert_eq!((one.median, one.p99), (7.0, 7.0));
        assert!(Summary::of(&[]).is_none());
    }
}
