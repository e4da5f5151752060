//! Metrics plugins register through the SDK: counters, gauges and histograms named
//! `plugin_<plugin>_<name>` (the plugin's name with `-` and `.` as `_`), so two plugins
//! cannot clash, and checked: a bad name, label or bucket list is an `Invalid` error.
//!
//! Registering the same name, kind and labels again finds the same series, so a plugin
//! reloaded with the same metrics goes on counting. Bounded: at most [`MAX_FAMILIES`]
//! metrics per plugin and [`MAX_SERIES`] label sets per metric.

use std::{
    collections::BTreeMap,
    sync::{atomic::AtomicU64, Arc, Mutex},
};

use crate::sync::Unpoisoned;
use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric},
    metrics::{counter::Counter, gauge::Gauge, histogram::Histogram, MetricType},
};

use plugin_abi::metrics::{self as rules, MetricSpec};
pub use plugin_abi::metrics::{MAX_FAMILIES, MAX_SERIES};

/// Default histogram buckets: Prometheus's usual ones.
const DEFAULT_BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    /// The ABI's code for the kind, which the shared rules speak.
    fn code(self) -> u8 {
        match self {
            Kind::Counter => plugin_abi::metric_kind::COUNTER,
            Kind::Gauge => plugin_abi::metric_kind::GAUGE,
            Kind::Histogram => plugin_abi::metric_kind::HISTOGRAM,
        }
    }

    fn metric_type(self) -> MetricType {
        match self {
            Kind::Counter => MetricType::Counter,
            Kind::Gauge => MetricType::Gauge,
            Kind::Histogram => MetricType::Histogram,
        }
    }
}

/// One series' value, shared with the handle the plugin holds.
#[derive(Debug, Clone)]
pub enum Series {
    Counter(Counter<f64, AtomicU64>),
    Gauge(Gauge<f64, AtomicU64>),
    Histogram(Histogram),
}

impl Series {
    pub fn add(&self, value: f64) {
        match self {
            Series::Counter(c) if value.is_finite() && value >= 0.0 => {
                c.inc_by(value);
            }
            Series::Gauge(g) if value.is_finite() => {
                g.inc_by(value);
            }
            _ => {}
        }
    }

    pub fn set(&self, value: f64) {
        if let Series::Gauge(g) = self {
            g.set(value);
        }
    }

    pub fn observe(&self, value: f64) {
        if let Series::Histogram(h) = self {
            if !value.is_nan() {
                h.observe(value);
            }
        }
    }

    fn encode(&self, encoder: prometheus_client::encoding::MetricEncoder) -> std::fmt::Result {
        match self {
            Series::Counter(c) => c.encode(encoder),
            Series::Gauge(g) => g.encode(encoder),
            Series::Histogram(h) => h.encode(encoder),
        }
    }
}

/// What a plugin asks for.
#[derive(Debug, Clone)]
pub struct Spec<'a> {
    pub plugin: &'a str,
    pub kind: Kind,
    pub name: &'a str,
    pub help: &'a str,
    pub labels: Vec<(&'a str, &'a str)>,
    pub buckets: &'a [f64],
}

#[derive(Debug)]
struct Family {
    plugin: String,
    kind: Kind,
    help: String,
    label_names: Vec<String>,
    buckets: Vec<f64>,
    series: BTreeMap<Vec<String>, Series>,
}

/// Every plugin-registered metric; encoded at scrape time.
#[derive(Debug, Default, Clone)]
pub struct Registered {
    families: Arc<Mutex<BTreeMap<String, Family>>>,
}

/// `plugin_<plugin>_<name>`: the plugin's name in metric-name characters.
pub fn full_name(plugin: &str, name: &str) -> String {
    let plugin: String = plugin
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    format!("plugin_{plugin}_{name}")
}

/// Why a plugin's metric was refused; the plugin gets the message as an `Invalid` error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetricError {
    /// The metric's kind code is none the host knows.
    #[error("unknown metric kind {0}")]
    UnknownKind(u8),
    #[error("a metric's label names and values must pair up")]
    UnpairedLabels,
    /// A rule shared with the SDK's test host (`plugin_abi::metrics`), which words it: a
    /// name, label, help or bucket rule, a clash of kind or labels, too many series or
    /// families.
    #[error("{0}")]
    Rule(String),
    /// The metric's full name is another plugin's (the names differ only in characters
    /// other than letters and digits).
    #[error(
        "metric {full} belongs to plugin {owner} (plugin names that differ only in \
         characters other than letters and digits share metric names)"
    )]
    OtherPlugin { full: String, owner: String },
    #[error("metric {0} exists with other buckets")]
    OtherBuckets(String),
}

/// The shared rules (`plugin_abi::metrics`), which the SDK's test host applies too.
fn check(spec: &Spec) -> Result<(), MetricError> {
    rules::check(&MetricSpec {
        kind: spec.kind.code(),
        name: spec.name,
        help: spec.help,
        labels: &spec.labels,
        buckets: spec.buckets,
    })
    .map_err(MetricError::Rule)
}

impl Registered {
    /// The series `spec` names, made on first use.
    pub fn series(&self, spec: &Spec) -> Result<Series, MetricError> {
        check(spec)?;
        let full = full_name(spec.plugin, spec.name);
        let label_names: Vec<String> = spec.labels.iter().map(|(l, _)| l.to_string()).collect();
        let values: Vec<String> = spec.labels.iter().map(|(_, v)| v.to_string()).collect();
        let buckets: Vec<f64> = if spec.buckets.is_empty() {
            DEFAULT_BUCKETS.to_vec()
        } else {
            spec.buckets.to_vec()
        };
        let mut families = self.families.locked();
        if !families.contains_key(&full) {
            let owned = families
                .values()
                .filter(|f| f.plugin == spec.plugin)
                .count();
            if owned >= MAX_FAMILIES {
                return Err(MetricError::Rule(rules::too_many_families(
                    spec.plugin,
                    spec.name,
                )));
            }
        }
        let family = families.entry(full.clone()).or_insert_with(|| Family {
            plugin: spec.plugin.to_owned(),
            kind: spec.kind,
            help: spec.help.to_owned(),
            label_names: label_names.clone(),
            buckets: buckets.clone(),
            series: BTreeMap::new(),
        });
        if family.plugin != spec.plugin {
            return Err(MetricError::OtherPlugin {
                full,
                owner: family.plugin.clone(),
            });
        }
        if family.kind != spec.kind || family.label_names != label_names {
            let registered: Vec<&str> = family.label_names.iter().map(String::as_str).collect();
            let wanted: Vec<&str> = label_names.iter().map(String::as_str).collect();
            return Err(MetricError::Rule(rules::clash(
                spec.name,
                (family.kind.code(), &registered),
                (spec.kind.code(), &wanted),
            )));
        }
        if family.kind == Kind::Histogram && family.buckets != buckets {
            return Err(MetricError::OtherBuckets(full));
        }
        if let Some(series) = family.series.get(&values) {
            return Ok(series.clone());
        }
        if family.series.len() >= MAX_SERIES {
            return Err(MetricError::Rule(rules::too_many_series(spec.name)));
        }
        let series = match spec.kind {
            Kind::Counter => Series::Counter(Counter::default()),
            Kind::Gauge => Series::Gauge(Gauge::default()),
            Kind::Histogram => Series::Histogram(Histogram::new(buckets)),
        };
        family.series.insert(values, series.clone());
        Ok(series)
    }
}

impl Collector for Registered {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        let families = self.families.locked();
        for (name, family) in families.iter() {
            let mut metric =
                encoder.encode_descriptor(name, &family.help, None, family.kind.metric_type())?;
            for (values, series) in &family.series {
                let labels: Vec<(String, String)> = family
                    .label_names
                    .iter()
                    .cloned()
                    .zip(values.iter().cloned())
                    .collect();
                series.encode(metric.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec<'a>(name: &'a str, labels: Vec<(&'a str, &'a str)>) -> Spec<'a> {
        Spec {
            plugin: "device-plugin",
            kind: Kind::Gauge,
            name,
            help: "help",
            labels,
            buckets: &[],
        }
    }

    #[test]
    fn bad_names_and_labels_are_refused_with_the_reason() {
        let reg = Registered::default();
        for name in ["", "1x", "a-b", "a b", "__x", "x_total", &"x".repeat(101)] {
            let err = reg.series(&spec(name, vec![])).unwrap_err().to_string();
            assert!(err.contains("invalid metric name"), "{name}: {err}");
        }
        let err = reg.series(&spec("t", vec![("a-b", "1")])).unwrap_err();
        assert!(err.to_string().contains("invalid label name"), "{err}");
        let err = reg.series(&spec("t", vec![("a", "x\ny")])).unwrap_err();
        assert!(err.to_string().contains("invalid value of label"), "{err}");
        let err = reg
            .series(&spec("t", vec![("a", "1"), ("a", "2")]))
            .unwrap_err();
        assert!(err.to_string().contains("twice"), "{err}");
    }

    #[test]
    fn the_same_series_is_found_again_and_a_clash_is_refused() {
        let reg = Registered::default();
        let a = reg.series(&spec("temp", vec![("id", "1")])).unwrap();
        a.set(20.5);
        let again = reg.series(&spec("temp", vec![("id", "1")])).unwrap();
        again.add(1.0);
        let Series::Gauge(g) = a else { panic!() };
        assert_eq!(g.get(), 21.5);
        let err = reg
            .series(&Spec {
                kind: Kind::Counter,
                ..spec("temp", vec![("id", "1")])
            })
            .unwrap_err();
        assert!(err.to_string().contains("cannot also be"), "{err}");
        let err = reg.series(&spec("temp", vec![("other", "1")])).unwrap_err();
        assert!(err.to_string().contains("cannot also be"), "{err}");
        let other_plugin = reg
            .series(&Spec {
                plugin: "device.plugin",
                ..spec("temp", vec![("id", "1")])
            })
            .unwrap_err();
        assert!(
            matches!(&other_plugin, MetricError::OtherPlugin { owner, .. } if owner == "device-plugin"),
            "{other_plugin}"
        );
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &{
            let mut r = prometheus_client::registry::Registry::default();
            r.register_collector(Box::new(reg.clone()));
            r
        })
        .unwrap();
        assert!(
            out.contains("plugin_device_plugin_temp{id=\"1\"} 21.5"),
            "{out}"
        );
    }
}
