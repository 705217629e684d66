//! Counters from /proc: a process's resident memory and CPU time, its
//! descendants (websockify forks one child per connection), and the machine.

use anyhow::Context;
use serde_json::{Value, json};
use std::time::Duration;

/// Linux reports CPU time in USER_HZ ticks, 100 per second on every
/// architecture we run on.
const TICKS_PER_SECOND: f64 = 100.0;

fn status_kib(pid: u32, field: &str) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("process {pid} is gone"))?;
    kib_field(&status, field).with_context(|| format!("no {field} for process {pid}"))
}

fn kib_field(text: &str, field: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

/// Resident set size (VmRSS) in KiB.
pub fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    status_kib(pid, "VmRSS")
}

/// Proportional set size in KiB: shared pages divided among their users,
/// the fair measure for forked children.
pub fn pss_kib(pid: u32) -> anyhow::Result<u64> {
    let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
        .with_context(|| format!("process {pid} is gone"))?;
    kib_field(&rollup, "Pss").with_context(|| format!("no Pss for process {pid}"))
}

/// `pid` and all its descendants.
pub fn tree(pid: u32) -> Vec<u32> {
    let mut all = vec![pid];
    let mut i = 0;
    while i < all.len() {
        let p = all[i];
        if let Ok(tasks) = std::fs::read_dir(format!("/proc/{p}/task")) {
            for task in tasks.flatten() {
                let children =
                    std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
                all.extend(
                    children
                        .split_whitespace()
                        .filter_map(|c| c.parse::<u32>().ok()),
                );
            }
        }
        i += 1;
    }
    all
}

/// Summed RSS and PSS (KiB) of a process tree; processes that exit while
/// being read are skipped.
pub fn tree_memory_kib(pid: u32) -> (u64, u64) {
    tree(pid).into_iter().fold((0, 0), |(rss, pss), p| {
        (rss + rss_kib(p).unwrap_or(0), pss + pss_kib(p).unwrap_or(0))
    })
}

/// User plus system CPU time the process has used.
pub fn cpu_time(pid: u32) -> anyhow::Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("process {pid} is gone"))?;
    // The command name is in parentheses and may contain spaces.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state(0) ... utime(11) stime(12).
    let ticks = |i: usize| -> u64 { fields.get(i).and_then(|v| v.parse().ok()).unwrap_or(0) };
    Ok(Duration::from_secs_f64(
        (ticks(11) + ticks(12)) as f64 / TICKS_PER_SECOND,
    ))
}

/// CPU time of several processes together.
pub fn cpu_time_of(pids: &[u32]) -> Duration {
    pids.iter().filter_map(|p| cpu_time(*p).ok()).sum()
}

/// Context switches (voluntary and not) of every thread of the processes:
/// each one is a thread that ran out of data or of its time slice.
pub fn context_switches(pids: &[u32]) -> u64 {
    let mut total = 0;
    for pid in pids {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
            continue;
        };
        for task in tasks.flatten() {
            let status = std::fs::read_to_string(task.path().join("status")).unwrap_or_default();
            total += kib_field(&status, "voluntary_ctxt_switches").unwrap_or(0)
                + kib_field(&status, "nonvoluntary_ctxt_switches").unwrap_or(0);
        }
    }
    total
}

/// CPU time all cores spent busy since boot (everything but idle and
/// iowait), from /proc/stat.
pub fn machine_busy() -> Duration {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let ticks: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is in user).
    let busy: u64 = ticks
        .iter()
        .take(8)
        .enumerate()
        .filter(|(i, _)| *i != 3 && *i != 4)
        .map(|(_, t)| t)
        .sum();
    Duration::from_secs_f64(busy as f64 / TICKS_PER_SECOND)
}

/// The `docker-proxy` process that serves a published host port.
pub fn docker_proxy(host_port: u16) -> Option<u32> {
    let port = host_port.to_string();
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .find_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
            let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
            let is_proxy = args.first()?.ends_with(b"docker-proxy");
            let serves = args
                .windows(2)
                .any(|w| w[0] == b"-host-port" && w[1] == port.as_bytes());
            (is_proxy && serves).then_some(pid)
        })
}

/// Kernel memory held by TCP sockets (all of them), in KiB: socket buffers
/// are not in any process's RSS.
pub fn tcp_kernel_kib() -> u64 {
    let sockstat = std::fs::read_to_string("/proc/net/sockstat").unwrap_or_default();
    let pages: u64 = sockstat
        .lines()
        .find_map(|l| l.strip_prefix("TCP:"))
        .and_then(|l| {
            let fields: Vec<&str> = l.split_whitespace().collect();
            fields
                .windows(2)
                .find(|w| w[0] == "mem")?
                .get(1)?
                .parse()
                .ok()
        })
        .unwrap_or(0);
    pages * 4
}

/// The open file limit of this process.
pub fn open_files_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// What the results were measured on.
pub fn machine() -> Value {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let cpuinfo = read("/proc/cpuinfo");
    let cpu_model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned())
        .unwrap_or_default();
    let nproc = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem_kib = kib_field(&read("/proc/meminfo"), "MemTotal").unwrap_or(0);
    let docker = std::process::Command::new("docker")
        .args(["version", "--format", "{{.Server.Version}}"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    json!({
        "nproc": nproc,
        "cpu_model": cpu_model,
        "memory_gib": (mem_kib as f64 / 1048576.0 * 10.0).round() / 10.0,
        "kernel": read("/proc/sys/kernel/osrelease").trim(),
        "docker_server": docker,
        "loadavg_at_start": read("/proc/loadavg").trim(),
        "open_files_limit": open_files_limit(),
    })
}

/// Load average now, for run conditions.
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let me = std::process::id();
        assert!(rss_kib(me).expect("rss") > 0);
        assert!(pss_kib(me).expect("pss") > 0);
        assert!(tree(me).contains(&me));
        assert!(cpu_time(me).is_ok());
        assert_eq!(kib_field("VmRSS:\t  1234 kB\n", "VmRSS"), Some(1234));
    }
}
