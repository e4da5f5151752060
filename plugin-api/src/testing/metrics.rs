//! Metrics under the kit: every series the plugin registers, recorded for the test to read,
//! checked by the host's own rules (`plugin_abi::metrics`).

use std::sync::{Arc, Mutex};

use abi_stable::{sabi_trait::TD_Opaque, std_types::RArc};

use crate::{
    abi::{error_code, metric_kind, FfiError, FfiMetric, HostMetric, HostMetricArc, HostMetric_TO},
    Plugin,
};

use super::{host::lock, TestHost};

use crate::abi::metrics::{self as rules, MetricSpec};

/// One series: a counter's or gauge's value, a histogram's observations.
struct Series {
    kind: u8,
    name: String,
    /// (name, value) in the order registered.
    labels: Vec<(String, String)>,
    value: Mutex<f64>,
    observed: Mutex<Vec<f64>>,
}

impl Series {
    fn has_labels(&self, labels: &[(&str, &str)]) -> bool {
        self.labels.len() == labels.len()
            && labels
                .iter()
                .all(|(n, v)| self.labels.iter().any(|(sn, sv)| sn == n && sv == v))
    }

    fn label_names(&self) -> Vec<&str> {
        self.labels.iter().map(|(n, _)| n.as_str()).collect()
    }
}

struct Handle(Arc<Series>);

impl HostMetric for Handle {
    fn add(&self, value: f64) {
        let series = &self.0;
        let counter = series.kind == metric_kind::COUNTER;
        if series.kind == metric_kind::HISTOGRAM
            || (counter && !(value.is_finite() && value >= 0.0))
        {
            return;
        }
        *lock(&series.value) += value;
    }

    fn set(&self, value: f64) {
        if self.0.kind == metric_kind::GAUGE {
            *lock(&self.0.value) = value;
        }
    }

    fn observe(&self, value: f64) {
        if self.0.kind == metric_kind::HISTOGRAM {
            lock(&self.0.observed).push(value);
        }
    }
}

/// The host's checks; `Err` is the message of an `Invalid` error.
fn check(metric: &FfiMetric, labels: &[(&str, &str)]) -> Result<(), String> {
    rules::check(&MetricSpec {
        kind: metric.kind,
        name: metric.name.as_str(),
        help: metric.help.as_str(),
        labels,
        buckets: &metric.buckets,
    })
}

/// Every series the plugin registered.
#[derive(Default)]
pub(super) struct Metrics {
    series: Mutex<Vec<Arc<Series>>>,
}

impl Metrics {
    /// Registers a series, or finds it again (same name, kind and labels).
    pub fn register(&self, plugin: &str, metric: &FfiMetric) -> Result<HostMetricArc, FfiError> {
        let invalid = |message| FfiError::new(error_code::INVALID, message);
        let pairs = metric.label_names.len().min(metric.label_values.len());
        if metric.label_names.len() != metric.label_values.len() {
            let name = metric.name.as_str();
            return Err(invalid(format!(
                "metric {name:?}: label names and values must pair up"
            )));
        }
        let wanted: Vec<(&str, &str)> = (0..pairs)
            .map(|i| {
                (
                    metric.label_names[i].as_str(),
                    metric.label_values[i].as_str(),
                )
            })
            .collect();
        check(metric, &wanted).map_err(invalid)?;
        let names: Vec<&str> = wanted.iter().map(|(n, _)| *n).collect();
        let mut all = lock(&self.series);
        let mut same_name = all
            .iter()
            .filter(|s| s.name == metric.name.as_str())
            .peekable();
        if same_name.peek().is_none() {
            let families = distinct_names(&all);
            if families >= rules::MAX_FAMILIES {
                let message = rules::too_many_families(plugin, &metric.name);
                return Err(invalid(message));
            }
        }
        let mut count = 0;
        for series in same_name {
            if series.kind != metric.kind || series.label_names() != names {
                let message = rules::clash(
                    &series.name,
                    (series.kind, &series.label_names()),
                    (metric.kind, &names),
                );
                return Err(invalid(message));
            }
            if series.has_labels(&wanted) {
                return Ok(handle(series));
            }
            count += 1;
        }
        if count >= rules::MAX_SERIES {
            return Err(invalid(rules::too_many_series(&metric.name)));
        }
        let series = Arc::new(Series {
            kind: metric.kind,
            name: metric.name.to_string(),
            labels: wanted
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            value: Mutex::new(0.0),
            observed: Mutex::default(),
        });
        all.push(Arc::clone(&series));
        Ok(handle(&series))
    }

    fn find(&self, name: &str, labels: &[(&str, &str)]) -> Option<Arc<Series>> {
        let all = lock(&self.series);
        all.iter()
            .find(|s| s.name == name && s.has_labels(labels))
            .cloned()
    }
}

/// How many metrics (distinct names) are registered.
fn distinct_names(all: &[Arc<Series>]) -> usize {
    let mut names: Vec<&str> = all.iter().map(|s| s.name.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    names.len()
}

fn handle(series: &Arc<Series>) -> HostMetricArc {
    HostMetric_TO::from_ptr(RArc::new(Handle(Arc::clone(series))), TD_Opaque)
}

impl<P: Plugin> TestHost<P> {
    /// The value of a counter or gauge series the plugin registered (name as the plugin
    /// gave it, labels in any order); `None` for a series it did not register or a
    /// histogram.
    ///
    /// ```
    /// # use plugin_api::{testing::TestHost, Context, Plugin, Result};
    /// #[derive(Default)]
    /// struct Measured;
    /// impl Plugin for Measured {
    ///     async fn startup(self: std::sync::Arc<Self>, ctx: &Context) -> Result<()> {
    ///         ctx.gauge("temperature_celsius", "Chamber", &[("device", "c7")])?.set(19.5);
    ///         ctx.counter("starts", "Starts", &[])?.inc();
    ///         ctx.histogram("poll_seconds", "Polls", &[], &[])?.observe(0.25);
    ///         Ok(())
    ///     }
    /// }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<()> {
    /// let host = TestHost::start(Measured).await?;
    /// assert_eq!(host.metric("temperature_celsius", &[("device", "c7")]), Some(19.5));
    /// assert_eq!(host.metric("starts", &[]), Some(1.0));
    /// assert_eq!(host.observations("poll_seconds", &[]), [0.25]);
    /// # Ok(()) }
    /// ```
    pub fn metric(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let series = self.state.metrics.find(name, labels)?;
        let value = *lock(&series.value);
        (series.kind != metric_kind::HISTOGRAM).then_some(value)
    }

    /// Every value observed by a histogram series, oldest first (empty when none).
    pub fn observations(&self, name: &str, labels: &[(&str, &str)]) -> Vec<f64> {
        match self.state.metrics.find(name, labels) {
            Some(series) => lock(&series.observed).clone(),
            None => Vec::new(),
        }
    }
}
