//! The rules every host applies to a metric a plugin registers, written once so that the real
//! host and the SDK's test host refuse the same metrics with the same words.
//!
//! Names follow Prometheus's data model (ASCII letters, digits and `_`, not starting with a
//! digit; `__` is reserved for Prometheus itself). The suffixes the exposition format appends
//! (`_total`, `_bucket`, …) are refused in a plugin's name, so that a counter named
//! `starts` is exposed as `starts_total` and never as `starts_total_total`. Every length and
//! count is bounded: a plugin cannot make a scrape grow without end.

use crate::metric_kind;

/// The most bytes a metric or label name has.
pub const MAX_NAME: usize = 100;
/// The most labels one metric has.
pub const MAX_LABELS: usize = 8;
/// The most bytes one label value has.
pub const MAX_LABEL_VALUE: usize = 256;
/// The most bytes of a metric's help text.
pub const MAX_HELP: usize = 1024;
/// The most bucket bounds a histogram has.
pub const MAX_BUCKETS: usize = 64;
/// The most metrics (families) one plugin registers.
pub const MAX_FAMILIES: usize = 100;
/// The most label sets (series) one metric has.
pub const MAX_SERIES: usize = 1000;

/// The suffixes the exposition format adds where they belong.
const RESERVED_SUFFIXES: [&str; 6] = ["_total", "_bucket", "_sum", "_count", "_created", "_info"];

/// What a plugin asks for, borrowed from wherever it arrived.
#[derive(Debug, Clone, Copy)]
pub struct MetricSpec<'a> {
    /// One of [`metric_kind`].
    pub kind: u8,
    pub name: &'a str,
    pub help: &'a str,
    /// (name, value) pairs, in the plugin's order.
    pub labels: &'a [(&'a str, &'a str)],
    /// A histogram's bounds; empty: the host's default.
    pub buckets: &'a [f64],
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with("__")
        && name.len() <= MAX_NAME
}

/// Checks a metric as every host does; `Err` is the message of an `Invalid` error.
///
/// ```
/// use plugin_abi::{metric_kind, metrics::{check, MetricSpec}};
/// let spec = |name| MetricSpec { kind: metric_kind::COUNTER, name, help: "", labels: &[], buckets: &[] };
/// assert!(check(&spec("starts")).is_ok());
/// assert!(check(&spec("starts_total")).unwrap_err().contains("suffix _total"));
/// assert!(check(&spec("1x")).unwrap_err().contains("invalid metric name"));
/// ```
pub fn check(spec: &MetricSpec) -> Result<(), String> {
    let name = spec.name;
    if !valid_name(name) {
        return Err(format!(
            "invalid metric name {name:?}: 1 to {MAX_NAME} ASCII letters, digits and '_', \
             not starting with a digit or '__'"
        ));
    }
    if let Some(suffix) = RESERVED_SUFFIXES.iter().find(|s| name.ends_with(*s)) {
        return Err(format!(
            "invalid metric name {name:?}: the suffix {suffix} is added by the exposition \
             format where it belongs"
        ));
    }
    if spec.kind > metric_kind::HISTOGRAM {
        return Err(format!("unknown metric kind {} of {name:?}", spec.kind));
    }
    if spec.help.len() > MAX_HELP || spec.help.chars().any(char::is_control) {
        return Err(format!(
            "invalid help of metric {name:?}: at most {MAX_HELP} bytes, no control characters"
        ));
    }
    check_labels(spec)?;
    let buckets = spec.buckets;
    if buckets.len() > MAX_BUCKETS
        || buckets.iter().any(|b| !b.is_finite())
        || buckets.windows(2).any(|w| w[0] >= w[1])
    {
        return Err(format!(
            "invalid buckets of metric {name:?}: at most {MAX_BUCKETS} finite bounds, ascending"
        ));
    }
    Ok(())
}

fn check_labels(spec: &MetricSpec) -> Result<(), String> {
    let name = spec.name;
    if spec.labels.len() > MAX_LABELS {
        return Err(format!(
            "metric {name:?} has {} labels; at most {MAX_LABELS}",
            spec.labels.len()
        ));
    }
    for (index, (label, value)) in spec.labels.iter().enumerate() {
        let le = spec.kind == metric_kind::HISTOGRAM && *label == "le";
        if !valid_name(label) || le {
            return Err(format!(
                "invalid label name {label:?} of metric {name:?}: 1 to {MAX_NAME} ASCII \
                 letters, digits and '_', not starting with a digit or '__' (and not 'le' \
                 on a histogram)"
            ));
        }
        if spec.labels[..index].iter().any(|(l, _)| l == label) {
            return Err(format!("metric {name:?} names the label {label:?} twice"));
        }
        if value.len() > MAX_LABEL_VALUE || value.chars().any(char::is_control) {
            return Err(format!(
                "invalid value of label {label:?} of metric {name:?}: at most \
                 {MAX_LABEL_VALUE} bytes, no control characters"
            ));
        }
    }
    Ok(())
}

/// The name of a [`metric_kind`] value, for messages.
pub fn kind_name(kind: u8) -> &'static str {
    match kind {
        metric_kind::COUNTER => "counter",
        metric_kind::GAUGE => "gauge",
        metric_kind::HISTOGRAM => "histogram",
        _ => "unknown kind",
    }
}

/// The message for a metric registered again with another kind or other label names:
/// `(kind, label names)` as registered first, then as asked for now.
pub fn clash(name: &str, registered: (u8, &[&str]), wanted: (u8, &[&str])) -> String {
    format!(
        "metric {name:?} exists as a {} with labels {:?}; it cannot also be a {} with labels {:?}",
        kind_name(registered.0),
        registered.1,
        kind_name(wanted.0),
        wanted.1
    )
}

/// The message for one label set too many.
pub fn too_many_series(name: &str) -> String {
    format!("metric {name:?} has {MAX_SERIES} label sets already; this one is too many")
}

/// The message for one metric too many.
pub fn too_many_families(plugin: &str, name: &str) -> String {
    format!("plugin {plugin} has {MAX_FAMILIES} metrics already; {name:?} is one too many")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec<'a>(name: &'a str, labels: &'a [(&'a str, &'a str)]) -> MetricSpec<'a> {
        MetricSpec {
            kind: metric_kind::HISTOGRAM,
            name,
            help: "help",
            labels,
            buckets: &[],
        }
    }

    #[test]
    fn names_labels_help_and_buckets_are_bounded() {
        let long = "x".repeat(MAX_NAME + 1);
        for name in [
            "",
            "1x",
            "a-b",
            "a b",
            "__x",
            "x_total",
            "x_info",
            long.as_str(),
        ] {
            assert!(check(&spec(name, &[])).is_err(), "{name}");
        }
        assert!(check(&spec(&"x".repeat(MAX_NAME), &[])).is_ok());
        assert!(check(&spec("t", &[("le", "1")])).is_err());
        assert!(check(&spec("t", &[("a", "1"), ("a", "2")]))
            .unwrap_err()
            .contains("twice"));
        let value = "v".repeat(MAX_LABEL_VALUE + 1);
        assert!(check(&spec("t", &[("a", value.as_str())])).is_err());
        assert!(check(&spec("t", &[("a", "x\u{85}y")])).is_err());
        let help = "h".repeat(MAX_HELP + 1);
        assert!(check(&MetricSpec {
            help: &help,
            ..spec("t", &[])
        })
        .unwrap_err()
        .contains("help"));
        let buckets: Vec<f64> = (0..=MAX_BUCKETS).map(|b| b as f64).collect();
        assert!(check(&MetricSpec {
            buckets: &buckets,
            ..spec("t", &[])
        })
        .is_err());
        assert!(check(&MetricSpec {
            buckets: &[1.0, 1.0],
            ..spec("t", &[])
        })
        .is_err());
        assert!(check(&MetricSpec {
            kind: 9,
            ..spec("t", &[])
        })
        .is_err());
    }
}
