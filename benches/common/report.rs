//! Summaries for the benches' tables: median and range, and a line about the machine.

use std::fs;
use std::thread;

/// Median, minimum and maximum of some samples.
#[derive(Clone, Copy, Debug)]
pub struct Stats {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub n: usize,
}

/// `None` for no samples.
pub fn stats(values: &[f64]) -> Option<Stats> {
    if values.is_empty() {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let median = if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    };
    Some(Stats {
        median,
        min: v[0],
        max: v[n - 1],
        n,
    })
}

/// `median ms (min–max)`, or `–` for no samples.
pub fn cell(s: &Option<Stats>) -> String {
    match s {
        Some(s) => format!("{:.2} ms ({:.2}–{:.2})", s.median, s.min, s.max),
        None => "–".to_string(),
    }
}

/// `d / b` to two places, or `–` when either is missing or `b` is not positive.
pub fn ratio(d: Option<f64>, b: Option<f64>) -> String {
    match (d, b) {
        (Some(d), Some(b)) if b > 0.0 => format!("{:.2}", d / b),
        _ => "–".to_string(),
    }
}

/// `Machine: 2 CPUs (model), Linux x.y; load average before a b c, after d e f.` from two reads
/// of /proc/loadavg.
pub fn machine_line(load_before: &str, load_after: &str) -> String {
    let three = |s: &str| s.split_whitespace().take(3).collect::<Vec<_>>().join(" ");
    format!(
        "Machine: {}; load average before {}, after {}.",
        machine(),
        three(load_before),
        three(load_after)
    )
}

/// `2 CPUs (model), Linux x.y`.
pub fn machine() -> String {
    let cpu_name = fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, m)| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let nproc = thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!("{nproc} CPUs ({cpu_name}), Linux {}", kernel.trim())
}

/// The 1, 5 and 15 minute load averages.
pub fn load_average() -> String {
    fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}
