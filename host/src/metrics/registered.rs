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

pub const MAX_FAMILIES: usize = 100;
pub const MAX_SERIES: usize = 1000;
const MAX_NAME: usize = 100;
const MAX_LABELS: usize = 8;
const MAX_LABEL_VALUE: usize = 256;
const MAX_HELP: usize = 1024;
const MAX_BUCKETS: usize = 64;

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

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// `plugin_<plugin>_<name>`: the plugin's name in metric-name characters.
pub fn full_name(plugin: &str, name: &str) -> String {
    let plugin: String = plugin
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    format!("plugin_{plugin}_{name}")
}

fn check(spec: &Spec) -> Result<(), String> {
    let name = spec.name;
    if name.is_empty() || name.len() > MAX_NAME || !valid_name(name) || name.starts_with("__") {
        return Err(format!(
            "invalid metric name {name:?}: 1 to {MAX_NAME} ASCII letters, digits and '_', \
             not starting with a digit or '__'"
        ));
    }
    for suffix in ["_total", "_bucket", "_sum", "_count", "_created", "_info"] {
        if name.ends_with(suffix) {
            return Err(format!(
                "invalid metric name {name:?}: the suffix {suffix} is added by the exposition \
                 format where it belongs"
            ));
        }
    }
    if spec.help.len() > MAX_HELP || spec.help.chars().any(char::is_control) {
        return Err(format!(
            "invalid help of metric {name:?}: at most {MAX_HELP} bytes, no control characters"
        ));
    }
    if spec.labels.len() > MAX_LABELS {
        return Err(format!(
            "metric {name:?} has {} labels; at most {MAX_LABELS}",
            spec.labels.len()
        ));
    }
    for (label, value) in &spec.labels {
        if label.is_empty()
            || label.len() > MAX_NAME
            || !valid_name(label)
            || label.starts_with("__")
            || (spec.kind == Kind::Histogram && *label == "le")
        {
            return Err(format!(
                "invalid label name {label:?} of metric {name:?}: 1 to {MAX_NAME} ASCII \
                 letters, digits and '_', not starting with a digit or '__' (and not 'le' \
                 on a histogram)"
            ));
        }
        if value.len() > MAX_LABEL_VALUE || value.chars().any(char::is_control) {
            return Err(format!(
                "invalid value of label {label:?} of metric {name:?}: at most \
                 {MAX_LABEL_VALUE} bytes, no control characters"
            ));
        }
    }
    let names: Vec<&str> = spec.labels.iter().map(|(l, _)| *l).collect();
    if (1..names.len()).any(|i| names[..i].contains(&names[i])) {
        return Err(format!("metric {name:?} names a label twice"));
    }
    if spec.buckets.len() > MAX_BUCKETS
        || spec.buckets.iter().any(|b| !b.is_finite())
        || spec.buckets.windows(2).any(|w| w[0] >= w[1])
    {
        return Err(format!(
            "invalid buckets of metric {name:?}: at most {MAX_BUCKETS} finite bounds, ascending"
        ));
    }
    Ok(())
}

impl Registered {
    /// The series `spec` names, made on first use. `Err` is the message of an `Invalid`
    /// error.
    pub fn series(&self, spec: &Spec) -> Result<Series, String> {
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
                return Err(format!(
                    "plugin {} has {MAX_FAMILIES} metrics already; {full} is one too many",
                    spec.plugin
                ));
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
            return Err(format!(
                "metric {full} belongs to plugin {} (plugin names that differ only in \
                 characters other than letters and digits share metric names)",
                family.plugin
            ));
        }
        if family.kind != spec.kind || family.label_names != label_names {
            return Err(format!(
                "metric {full} exists as a {:?} with labels {:?}; it cannot also be a {:?} \
                 with labels {:?}",
                family.kind, family.label_names, spec.kind, label_names
            ));
        }
        if family.kind == Kind::Histogram && family.buckets != buckets {
            return Err(format!("metric {full} exists with other buckets"));
        }
        if let Some(series) = family.series.get(&values) {
            return Ok(series.clone());
        }
        if family.series.len() >= MAX_SERIES {
            return Err(format!(
                "metric {full} has {MAX_SERIES} label sets already; this one is too many"
            ));
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
            let err = reg.series(&spec(name, vec![])).unwrap_err();
            assert!(err.contains("invalid metric name"), "{name}: {err}");
        }
        let err = reg.series(&spec("t", vec![("a-b", "1")])).unwrap_err();
        assert!(err.contains("invalid label name"), "{err}");
        let err = reg.series(&spec("t", vec![("a", "x\ny")])).unwrap_err();
        assert!(err.contains("invalid value of label"), "{err}");
        let err = reg
            .series(&spec("t", vec![("a", "1"), ("a", "2")]))
            .unwrap_err();
        assert!(err.contains("twice"), "{err}");
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
        assert!(err.contains("cannot also be"), "{err}");
        let err = reg.series(&spec("temp", vec![("other", "1")])).unwrap_err();
        assert!(err.contains("cannot also be"), "{err}");
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
