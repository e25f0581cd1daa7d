//! CPU and memory of a process from /proc: utime + stime of all its threads (`stat`, 10 ms ticks),
//! the same from each live thread's `schedstat` (nanoseconds), and VmRSS.

use std::collections::BTreeMap;
use std::fs;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};

/// utime + stime of a process (all its threads, live and exited), in seconds.
pub fn cpu_seconds(pid: u32) -> Result<f64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    // The command name is in parentheses and may hold spaces: fields count from after it.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .ok_or_else(|| anyhow!("bad /proc/{pid}/stat"))?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 and 15 of stat(5); `rest` starts at field 3.
    let ticks: u64 = f[11].parse::<u64>()? + f[12].parse::<u64>()?;
    // SAFETY: sysconf has no memory effects.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Ok(ticks as f64 / hz)
}

/// utime + stime of the live threads of a process, in seconds, summed by thread name (`comm`).
pub fn cpu_seconds_by_thread(pid: u32) -> Result<BTreeMap<String, f64>> {
    // SAFETY: sysconf has no memory effects.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let mut by_name = BTreeMap::new();
    for task in fs::read_dir(format!("/proc/{pid}/task"))? {
        let Ok(stat) = fs::read_to_string(task?.path().join("stat")) else {
            continue; // the thread ended
        };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let name = stat[open + 1..close].to_string();
        let f: Vec<&str> = stat[close + 1..].split_whitespace().collect();
        let ticks = f.get(11).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
            + f.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        *by_name.entry(name).or_insert(0.0) += ticks as f64 / hz;
    }
    Ok(by_name)
}

/// Time on a CPU of the process's threads alive now, in seconds, from each
/// `/proc/PID/task/TID/schedstat` (nanoseconds: finer than the 10 ms ticks of `stat`).
pub fn cpu_seconds_fine(pid: u32) -> Result<f64> {
    let mut total = 0u64;
    for task in fs::read_dir(format!("/proc/{pid}/task"))? {
        let path = task?.path().join("schedstat");
        if let Ok(text) = fs::read_to_string(&path) {
            total += text
                .split_whitespace()
                .next()
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
        }
    }
    Ok(total as f64 / 1e9)
}

/// VmRSS in MiB.
pub fn rss_mib(pid: u32) -> Result<f64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| anyhow!("no VmRSS for {pid}"))?;
    Ok(kb / 1024.0)
}

/// CPU over a window and RSS at its end.
#[derive(Clone, Debug)]
pub struct Usage {
    /// % of one core, from `stat`.
    pub cpu_percent: f64,
    /// The same from `schedstat` (threads alive at both ends of the window).
    pub cpu_fine_percent: f64,
    pub rss_mib: f64,
    /// % of one core by thread name (threads alive at both ends of the window), largest first.
    pub by_thread: Vec<(String, f64)>,
}

/// Samples process `pid` over `window`, calling `meanwhile` every 250 ms (to keep reading a
/// child's output so that it never blocks on a full pipe).
pub fn measure(pid: u32, window: Duration, mut meanwhile: impl FnMut()) -> Result<Usage> {
    let threads0 = cpu_seconds_by_thread(pid)?;
    let (c0, f0, t0) = (cpu_seconds(pid)?, cpu_seconds_fine(pid)?, Instant::now());
    let end = t0 + window;
    while Instant::now() < end {
        thread::sleep(
            Duration::from_millis(250).min(end.saturating_duration_since(Instant::now())),
        );
        meanwhile();
    }
    let (c1, f1, t1) = (cpu_seconds(pid)?, cpu_seconds_fine(pid)?, Instant::now());
    let threads1 = cpu_seconds_by_thread(pid)?;
    let secs = (t1 - t0).as_secs_f64();
    let mut by_thread: Vec<(String, f64)> = threads1
        .into_iter()
        .filter_map(|(name, s1)| {
            let s0 = threads0.get(&name)?;
            Some((name, 100.0 * (s1 - s0).max(0.0) / secs))
        })
        .collect();
    by_thread.sort_by(|a, b| b.1.total_cmp(&a.1));
    Ok(Usage {
        cpu_percent: 100.0 * (c1 - c0) / secs,
        cpu_fine_percent: 100.0 * (f1 - f0) / secs,
        rss_mib: rss_mib(pid)?,
        by_thread,
    })
}
