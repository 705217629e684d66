//! Load of the Docker host from `/proc`, read directly because the agent runs
//! on that host (the Engine API has no cheap host-wide CPU figure). When
//! `/proc` is unreadable (another OS, a remote `DOCKER_HOST`), figures are 0.
//! Also the start-up check of the sessions' process limits against the
//! kernel's `pid_max`.

use std::sync::{Mutex, PoisonError};
use std::time::Duration;
use streamspace_protocol::DEFAULT_PIDS_LIMIT;

/// Cumulative CPU time of the whole host, in clock ticks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuTimes {
    pub busy: u64,
    pub total: u64,
}

/// Parses the aggregate `cpu` line of `/proc/stat`.
pub fn parse_proc_stat(text: &str) -> Option<CpuTimes> {
    let line = text.lines().find(|l| l.starts_with("cpu "))?;
    let fields: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(str::parse)
        .collect::<Result<_, _>>()
        .ok()?;
    // user nice system idle iowait irq softirq steal; guest time is already
    // counted in user.
    let total: u64 = fields.iter().take(8).sum();
    let idle = fields.get(3)? + fields.get(4).copied().unwrap_or(0);
    Some(CpuTimes {
        busy: total.saturating_sub(idle),
        total,
    })
}

/// Percent of CPU busy between two samples.
pub fn cpu_percent(before: CpuTimes, after: CpuTimes) -> f64 {
    let total = after.total.saturating_sub(before.total);
    if total == 0 {
        return 0.0;
    }
    let busy = after.busy.saturating_sub(before.busy).min(total);
    busy as f64 * 100.0 / total as f64
}

/// `(used, total)` memory in bytes from `/proc/meminfo`; used is what is not
/// available to new processes (caches count as free).
pub fn parse_meminfo(text: &str) -> Option<(u64, u64)> {
    let kib = |key: &str| -> Option<u64> {
        let line = text.lines().find(|l| l.starts_with(key))?;
        line[key.len()..].split_whitespace().next()?.parse().ok()
    };
    let total = kib("MemTotal:")? * 1024;
    let available = kib("MemAvailable:")? * 1024;
    Some((total.saturating_sub(available), total))
}

/// Samples host CPU between successive heartbeats.
#[derive(Debug, Default)]
pub struct HostLoad {
    last_cpu: Mutex<Option<CpuTimes>>,
}

impl HostLoad {
    /// CPU busy percent since the previous call (over a short interval on the
    /// first call); 0 when `/proc/stat` is unreadable.
    pub async fn cpu_percent(&self) -> f64 {
        let Some(now) = read_cpu() else { return 0.0 };
        let previous = self
            .last_cpu
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .replace(now);
        let (before, after) = match previous {
            Some(before) if now.total > before.total => (before, now),
            _ => {
                tokio::time::sleep(Duration::from_millis(200)).await;
                let Some(after) = read_cpu() else { return 0.0 };
                *self.last_cpu.lock().unwrap_or_else(PoisonError::into_inner) = Some(after);
                (now, after)
            }
        };
        cpu_percent(before, after)
    }

    /// `(used, total)` host memory in bytes, `None` if unreadable.
    pub fn memory(&self) -> Option<(u64, u64)> {
        parse_meminfo(&std::fs::read_to_string("/proc/meminfo").ok()?)
    }
}

/// Processes and threads all sessions could have at once under the
/// default limit, when that is more than the kernel's `pid_max`: the pids
/// limit of each session then stops a fork bomb too late to keep the host
/// (and its other sessions) able to start processes.
pub fn pids_beyond_pid_max(max_sessions: u32, pid_max: u64) -> Option<u64> {
    let possible = u64::from(max_sessions) * u64::from(DEFAULT_PIDS_LIMIT);
    (possible > pid_max).then_some(possible)
}

/// Warns at start when [`pids_beyond_pid_max`] says so for this host.
pub fn warn_if_pids_exceed_pid_max(max_sessions: u32) {
    let pid_max = std::fs::read_to_string("/proc/sys/kernel/pid_max")
        .ok()
        .and_then(|text| text.trim().parse::<u64>().ok());
    let Some(pid_max) = pid_max else { return };
    if let Some(possible) = pids_beyond_pid_max(max_sessions, pid_max) {
        tracing::warn!(
            max_sessions,
            pids_limit = DEFAULT_PIDS_LIMIT,
            possible,
            pid_max,
            "sessions may together start more processes than this host's kernel.pid_max: \
             raise it (sysctl kernel.pid_max=4194304), lower --max-sessions, or give \
             templates a lower pids_limit"
        );
    }
}

fn read_cpu() -> Option<CpuTimes> {
    parse_proc_stat(&std::fs::read_to_string("/proc/stat").ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_aggregate_cpu_line() {
        let text = "cpu  100 5 50 800 20 3 2 0 0 0\ncpu0 1 2 3 4 5 6 7 8 9 10\n";
        let times = parse_proc_stat(text).expect("cpu line");
        assert_eq!(times.total, 980);
        assert_eq!(times.busy, 160);
        assert_eq!(parse_proc_stat("intr 1 2 3"), None);
        assert_eq!(parse_proc_stat("cpu  a b c"), None);
    }

    #[test]
    fn cpu_percent_between_samples() {
        let before = CpuTimes {
            busy: 100,
            total: 1000,
        };
        let after = CpuTimes {
            busy: 150,
            total: 1200,
        };
        assert!((cpu_percent(before, after) - 25.0).abs() < 1e-9);
        assert_eq!(cpu_percent(after, after), 0.0);
    }

    #[test]
    fn parses_meminfo() {
        let text = "MemTotal:       2048 kB\nMemFree:  100 kB\nMemAvailable:   1024 kB\n";
        assert_eq!(parse_meminfo(text), Some((1024 * 1024, 2048 * 1024)));
        assert_eq!(parse_meminfo("MemTotal: 5 kB\n"), None);
    }

    #[test]
    fn many_sessions_under_the_default_limit_can_outgrow_pid_max() {
        // 50 sessions × 2048 on a host with Linux's default pid_max.
        assert_eq!(pids_beyond_pid_max(50, 32_768), Some(102_400));
        assert_eq!(pids_beyond_pid_max(16, 32_768), None);
        assert_eq!(pids_beyond_pid_max(50, 4_194_304), None);
    }

    #[tokio::test]
    async fn reads_this_host() {
        let load = HostLoad::default();
        let percent = load.cpu_percent().await;
        assert!((0.0..=100.0).contains(&percent), "{percent}");
        if let Some((used, total)) = load.memory() {
            assert!(used <= total && total > 0);
        }
    }
}
