//! Metrics under the kit: every series the plugin registers, recorded for the test to read,
//! with the host's checks of names and labels.

use std::sync::{Arc, Mutex};

use abi_stable::{sabi_trait::TD_Opaque, std_types::RArc};

use crate::{
    abi::{error_code, metric_kind, FfiError, FfiMetric, HostMetric, HostMetricArc, HostMetric_TO},
    Plugin,
};

use super::{host::lock, TestHost};

const MAX_NAME: usize = 100;
const MAX_LABELS: usize = 8;
const MAX_LABEL_VALUE: usize = 256;

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

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    let first = matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_');
    first
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with("__")
        && name.len() <= MAX_NAME
}

/// The host's checks, in short; `Err` is the message of an `Invalid` error.
fn check(metric: &FfiMetric) -> Result<(), String> {
    let name = metric.name.as_str();
    let suffixes = ["_total", "_bucket", "_sum", "_count", "_created", "_info"];
    if !valid_name(name) || suffixes.iter().any(|s| name.ends_with(s)) {
        return Err(format!("invalid metric name {name:?}"));
    }
    if metric.kind > metric_kind::HISTOGRAM {
        return Err(format!("unknown metric kind {}", metric.kind));
    }
    let (names, values) = (&metric.label_names, &metric.label_values);
    if names.len() != values.len() || names.len() > MAX_LABELS {
        return Err(format!(
            "metric {name:?}: at most {MAX_LABELS} labels, names and values paired"
        ));
    }
    for (index, (label, value)) in names.iter().zip(values.iter()).enumerate() {
        let le = metric.kind == metric_kind::HISTOGRAM && label.as_str() == "le";
        if !valid_name(label) || le || names[..index].contains(label) {
            return Err(format!("invalid label name {label:?} of metric {name:?}"));
        }
        if value.len() > MAX_LABEL_VALUE || value.chars().any(char::is_control) {
            return Err(format!(
                "invalid value of label {label:?} of metric {name:?}"
            ));
        }
    }
    let buckets = &metric.buckets;
    if buckets.iter().any(|b| !b.is_finite()) || buckets.windows(2).any(|w| w[0] >= w[1]) {
        return Err(format!(
            "invalid buckets of metric {name:?}: finite bounds, ascending"
        ));
    }
    Ok(())
}

/// Every series the plugin registered.
#[derive(Default)]
pub(super) struct Metrics {
    series: Mutex<Vec<Arc<Series>>>,
}

impl Metrics {
    /// Registers a series, or finds it again (same name, kind and labels).
    pub fn register(&self, metric: &FfiMetric) -> Result<HostMetricArc, FfiError> {
        check(metric).map_err(|message| FfiError::new(error_code::INVALID, message))?;
        let labels: Vec<(String, String)> = metric
            .label_names
            .iter()
            .zip(metric.label_values.iter())
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
        let wanted: Vec<(&str, &str)> = labels
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        let names: Vec<&str> = wanted.iter().map(|(n, _)| *n).collect();
        let mut all = lock(&self.series);
        for series in all.iter().filter(|s| s.name == metric.name.as_str()) {
            if series.kind != metric.kind || series.label_names() != names {
                let name = &series.name;
                let message = format!(
                    "metric {name:?} is registered already with another kind or other labels"
                );
                return Err(FfiError::new(error_code::INVALID, message));
            }
            if series.has_labels(&wanted) {
                return Ok(handle(series));
            }
        }
        let series = Arc::new(Series {
            kind: metric.kind,
            name: metric.name.to_string(),
            labels,
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
