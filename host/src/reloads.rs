//! What the health report says about reloads: how many succeeded and failed, and the last
//! one (a failed reload stays visible until the next good one). Each is also counted in the
//! metrics (`brewblox_reloads_total`).

use std::{
    fmt,
    sync::{Arc, Mutex},
};

use crate::metrics::Metrics;
use crate::plugins::handover::HandoverReport;
use crate::sync::Unpoisoned;
use serde::Serialize;

/// The outcome of the last reload.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, schemars::JsonSchema)]
pub struct LastReload {
    /// Local time, RFC 3339.
    pub time: String,
    pub ok: bool,
    /// Why it failed; the old plugins kept serving.
    pub error: Option<String>,
    /// What became of each state handed from the old plugins to the new ones (plugins that
    /// handed nothing over are not listed).
    pub handovers: Vec<HandoverReport>,
}

/// Reloads since the process started.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq, schemars::JsonSchema)]
pub struct ReloadReport {
    pub succeeded: u64,
    pub failed: u64,
    pub last: Option<LastReload>,
    /// With `--watch`: a changed file that is not a complete plugin yet (truncated, still
    /// being copied), and why; no reload is made until the next change. Cleared by the next
    /// reload.
    pub waiting: Option<String>,
}

/// Reloads the operator page lists, newest first.
pub const RECENT: usize = 10;

/// Shared between the service loop, which records, and every generation's health route.
#[derive(Debug)]
pub struct ReloadLog {
    /// Where each reload is counted.
    metrics: Arc<Metrics>,
    report: Mutex<ReloadReport>,
    /// The last [`RECENT`] reloads, newest first.
    recent: Mutex<std::collections::VecDeque<LastReload>>,
}

impl ReloadLog {
    /// An empty log that counts reloads in `metrics`.
    pub fn new(metrics: Arc<Metrics>) -> Self {
        ReloadLog {
            metrics,
            report: Mutex::default(),
            recent: Mutex::default(),
        }
    }

    /// Records a reload: its handovers, or why it failed (as health shows it).
    pub fn record<E: fmt::Display>(&self, outcome: Result<Vec<HandoverReport>, E>) {
        self.metrics.plugins.reloaded(outcome.is_ok());
        let mut report = self.report.locked();
        report.waiting = None;
        match &outcome {
            Ok(_) => report.succeeded += 1,
            Err(_) => report.failed += 1,
        }
        let (error, handovers) = match outcome {
            Ok(handovers) => (None, handovers),
            Err(err) => (Some(err.to_string()), Vec::new()),
        };
        let last = LastReload {
            time: now_rfc3339(),
            ok: error.is_none(),
            error,
            handovers,
        };
        report.last = Some(last.clone());
        drop(report);
        let mut recent = self.recent.locked();
        recent.push_front(last);
        recent.truncate(RECENT);
    }

    /// The last [`RECENT`] reloads, newest first.
    pub fn recent(&self) -> Vec<LastReload> {
        self.recent.locked().iter().cloned().collect()
    }

    /// A folder change that is not ready to reload, for health.
    pub fn waiting(&self, why: String) {
        self.report.locked().waiting = Some(why);
    }

    pub fn report(&self) -> ReloadReport {
        self.report.locked().clone()
    }
}

fn now_rfc3339() -> String {
    let now = time::OffsetDateTime::now_local().unwrap_or_else(|_| time::OffsetDateTime::now_utc());
    now.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_reload_stays_until_the_next_good_one() {
        let log = ReloadLog::new(Arc::new(Metrics::new()));
        assert_eq!(log.report(), ReloadReport::default());
        log.record(Err("libx.so: truncated"));
        let report = log.report();
        assert_eq!((report.succeeded, report.failed), (0, 1));
        let last = report.last.unwrap();
        assert!(!last.ok);
        assert_eq!(last.error.as_deref(), Some("libx.so: truncated"));
        log.record(Ok::<_, &str>(Vec::new()));
        let last = log.report().last.unwrap();
        assert!(last.ok && last.error.is_none());
        let recent = log.recent();
        assert_eq!(recent.len(), 2);
        assert!(recent[0].ok && !recent[1].ok, "newest first");
        for _ in 0..RECENT {
            log.record(Ok::<_, &str>(Vec::new()));
        }
        assert_eq!(log.recent().len(), RECENT, "bounded");
    }

    #[test]
    fn reloads_are_counted_in_the_logs_registry_only() {
        let (ours, other) = (Arc::new(Metrics::new()), Metrics::new());
        let log = ReloadLog::new(Arc::clone(&ours));
        log.record(Err("refused"));
        let counted = "brewblox_reloads_total{outcome=\"refused\"} 1";
        let scrape = ours.encode(crate::metrics::Format::Prometheus);
        assert!(scrape.contains(counted), "{scrape}");
        let scrape = other.encode(crate::metrics::Format::Prometheus);
        assert!(
            scrape.contains("brewblox_reloads_total{outcome=\"refused\"} 0"),
            "{scrape}"
        );
    }
}
