//! Metrics a plugin exports through the host's Prometheus endpoint: counters, gauges and
//! histograms, named `plugin_<plugin>_<name>` by the host so that two plugins cannot clash.
//!
//! ```no_run
//! # fn demo(ctx: plugin_api::Context) -> plugin_api::Result<()> {
//! let temperature = ctx.gauge("temperature_celsius", "Chamber temperature", &[("device", "c7")])?;
//! temperature.set(19.5);
//! let updates = ctx.counter("updates", "Simulation steps", &[])?;
//! updates.inc();
//! let latency = ctx.histogram("poll_seconds", "Time per poll", &[], &[0.01, 0.1, 1.0])?;
//! latency.observe(0.02);
//! # Ok(()) }
//! ```
//!
//! A name is 1 to 100 ASCII letters, digits and `_` (not starting with a digit or `__`, not
//! ending in `_total`, `_bucket`, `_sum`, `_count`, `_created` or `_info`); a label name
//! the same (and not `le` on a histogram), a label value at most 256 bytes without control
//! characters, at most 8 labels. Anything else is an `Invalid` error naming what is wrong, as
//! is a name registered again with another kind or other label names. Registering the same
//! series again returns it, so a reloaded plugin goes on counting. Updates are atomic adds in
//! the host: cheap enough for any path.

use std::sync::Arc;

use abi_stable::std_types::{RString, RVec};

use crate::{
    abi::{self, metric_kind, FfiMetric},
    Context, Error, Result,
};

/// A counter: only goes up.
#[derive(Clone)]
pub struct Counter(Arc<abi::HostMetricArc>);

impl Counter {
    pub fn inc(&self) {
        self.0.add(1.0);
    }

    /// Adds `value`; a negative or non-finite value is ignored.
    pub fn inc_by(&self, value: f64) {
        self.0.add(value);
    }
}

/// A gauge: a value that goes up and down.
#[derive(Clone)]
pub struct Gauge(Arc<abi::HostMetricArc>);

impl Gauge {
    pub fn set(&self, value: f64) {
        self.0.set(value);
    }

    pub fn add(&self, value: f64) {
        self.0.add(value);
    }
}

/// A histogram of observed values.
#[derive(Clone)]
pub struct Histogram(Arc<abi::HostMetricArc>);

impl Histogram {
    pub fn observe(&self, value: f64) {
        self.0.observe(value);
    }
}

impl<S> Context<S> {
    fn metric(
        &self,
        kind: u8,
        name: &str,
        help: &str,
        labels: &[(&str, &str)],
        buckets: &[f64],
    ) -> Result<abi::HostMetricArc> {
        let metric = FfiMetric {
            kind,
            name: name.into(),
            help: help.into(),
            label_names: labels.iter().map(|(n, _)| RString::from(*n)).collect(),
            label_values: labels.iter().map(|(_, v)| RString::from(*v)).collect(),
            buckets: RVec::from(buckets.to_vec()),
        };
        self.host()
            .metric(metric)
            .into_result()
            .map_err(Error::from_ffi)
    }

    /// Registers a counter (exported as `plugin_<plugin>_<name>_total`) with this series'
    /// labels. See the [module docs](crate::metrics) for the rules on names and labels.
    pub fn counter(&self, name: &str, help: &str, labels: &[(&str, &str)]) -> Result<Counter> {
        self.metric(metric_kind::COUNTER, name, help, labels, &[])
            .map(|m| Counter(Arc::new(m)))
    }

    /// Registers a gauge (`plugin_<plugin>_<name>`) with this series' labels.
    pub fn gauge(&self, name: &str, help: &str, labels: &[(&str, &str)]) -> Result<Gauge> {
        self.metric(metric_kind::GAUGE, name, help, labels, &[])
            .map(|m| Gauge(Arc::new(m)))
    }

    /// Registers a histogram (`plugin_<plugin>_<name>`) with this series' labels and bucket
    /// bounds (ascending; empty for the usual 5 ms to 10 s).
    pub fn histogram(
        &self,
        name: &str,
        help: &str,
        labels: &[(&str, &str)],
        buckets: &[f64],
    ) -> Result<Histogram> {
        self.metric(metric_kind::HISTOGRAM, name, help, labels, buckets)
            .map(|m| Histogram(Arc::new(m)))
    }
}
