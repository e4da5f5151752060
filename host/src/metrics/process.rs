//! The usual `process_*` metrics, read from `/proc` at scrape time: resident memory, open
//! file descriptors, threads, start time, and uptime.

use std::time::{SystemTime, UNIX_EPOCH};

use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric},
    metrics::{gauge::ConstGauge, MetricType},
};

/// See the [module docs](self).
#[derive(Debug)]
pub struct ProcessCollector {
    /// Seconds since the Unix epoch when the process started.
    start_time: f64,
}

impl ProcessCollector {
    pub fn new() -> ProcessCollector {
        ProcessCollector {
            start_time: start_time().unwrap_or_else(now),
        }
    }
}

impl Default for ProcessCollector {
    fn default() -> Self {
        ProcessCollector::new()
    }
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// The process's start: its start in clock ticks after boot (`/proc/self/stat`, field 22)
/// plus the boot time (`btime` in `/proc/stat`).
fn start_time() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) is in parentheses and may hold spaces: count after it.
    let after_name = &stat[stat.rfind(')')? + 1..];
    let ticks: f64 = after_name.split_whitespace().nth(19)?.parse().ok()?;
    let boot: f64 = std::fs::read_to_string("/proc/stat")
        .ok()?
        .lines()
        .find_map(|line| line.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()?;
    // SAFETY: sysconf only reads a configuration value.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    (hz > 0).then(|| boot + ticks / hz as f64)
}

/// `VmRSS` (in bytes) and `Threads` from `/proc/self/status`.
fn status() -> (Option<f64>, Option<f64>) {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return (None, None);
    };
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse::<f64>().ok())
    };
    (field("VmRSS:").map(|kib| kib * 1024.0), field("Threads:"))
}

fn open_fds() -> Option<f64> {
    Some(std::fs::read_dir("/proc/self/fd").ok()?.count() as f64)
}

fn gauge(encoder: &mut DescriptorEncoder, name: &str, help: &str, value: f64) -> std::fmt::Result {
    let gauge = ConstGauge::new(value);
    let metric = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
    gauge.encode(metric)
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        let (rss, threads) = status();
        if let Some(rss) = rss {
            gauge(
                &mut encoder,
                "process_resident_memory_bytes",
                "Resident memory size in bytes.",
                rss,
            )?;
        }
        if let Some(fds) = open_fds() {
            // read_dir holds one descriptor of its own while counting.
            gauge(
                &mut encoder,
                "process_open_fds",
                "Number of open file descriptors.",
                (fds - 1.0).max(0.0),
            )?;
        }
        if let Some(threads) = threads {
            gauge(
                &mut encoder,
                "process_threads",
                "Number of OS threads in the process.",
                threads,
            )?;
        }
        gauge(
            &mut encoder,
            "process_start_time_seconds",
            "Start time of the process since the Unix epoch in seconds.",
            self.start_time,
        )?;
        gauge(
            &mut encoder,
            "process_uptime_seconds",
            "Seconds since the process started.",
            (now() - self.start_time).max(0.0),
        )
    }
}
