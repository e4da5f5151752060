//! The process's metrics, served in the Prometheus text format (or OpenMetrics) at
//! `/{name}/_service/metrics` and `/metrics`.
//!
//! One registry for the whole service: the service makes it once and hands it ([`Metrics`]
//! behind an `Arc`) to what records into it: the HTTP app, the plugins' context, the reload
//! log, the operator page's sampler. It outlives every generation of plugins, so counters do
//! not reset on a reload. What belongs to one generation (the state of its plugins) is read at
//! scrape time from the generations that are alive, so a stopped generation's series
//! disappear with it.

pub mod bus;
pub mod http;
pub mod plugins;
pub mod process;
pub mod registered;

use std::sync::Arc;

use prometheus_client::{
    encoding::{prometheus_text, text},
    registry::Registry,
};

use bus::BusMetrics;
use http::HttpMetrics;
use plugins::PluginMetrics;
use registered::Registered;

/// The longest label value taken from outside (a filter, a routing key, an exchange, a
/// plugin's name), in bytes; a longer one is cut at a character boundary and marked with `…`.
pub const MAX_LABEL_VALUE_BYTES: usize = 128;

/// A label value from outside, made safe for a scrape: at most [`MAX_LABEL_VALUE_BYTES`]
/// (cut with a `…` marker), every control character (CR, ESC, NEL, …) written as its Rust
/// escape (`\r`, `\u{1b}`, `\u{85}`) so that no scraper sees it raw. The exposition's own
/// escaping (`\`, `"`, newline) comes on top.
pub fn label_value(text: &str) -> String {
    let mut out = String::with_capacity(text.len().min(MAX_LABEL_VALUE_BYTES + 3));
    for c in text.chars() {
        let before = out.len();
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
        if out.len() > MAX_LABEL_VALUE_BYTES {
            out.truncate(before);
            out.push('…');
            break;
        }
    }
    out
}

/// The content type of an OpenMetrics answer.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Every metric of the process.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    pub http: HttpMetrics,
    pub bus: BusMetrics,
    pub plugins: PluginMetrics,
    /// What plugins registered through the SDK.
    pub registered: Registered,
}

/// The service's registry, made once where the service is built and handed to everything
/// that records: the eventbus connections, the HTTP app, the plugins' context, the reload
/// log. Nothing reaches a process-wide one, so two services in one process (the tests) keep
/// their counts apart.
pub fn service_registry() -> Arc<Metrics> {
    Arc::new(Metrics::new())
}

/// The two exposition formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Prometheus text format 0.0.4, the default.
    Prometheus,
    /// OpenMetrics 1.0, when the scraper's `Accept` names `application/openmetrics-text`.
    OpenMetrics,
}

impl Format {
    /// The format an `Accept` header asks for.
    pub fn from_accept(accept: Option<&str>) -> Format {
        match accept {
            Some(accept) if accept.contains("application/openmetrics-text") => Format::OpenMetrics,
            _ => Format::Prometheus,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Prometheus => prometheus_text::CONTENT_TYPE,
            Format::OpenMetrics => OPENMETRICS_CONTENT_TYPE,
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        let http = HttpMetrics::register(&mut registry);
        let bus = BusMetrics::register(&mut registry);
        let plugins = PluginMetrics::register(&mut registry);
        registry.register_collector(Box::new(process::ProcessCollector::new()));
        let registered = Registered::default();
        registry.register_collector(Box::new(registered.clone()));
        Metrics {
            registry,
            http,
            bus,
            plugins,
            registered,
        }
    }

    /// Every metric, in `format`.
    pub fn encode(&self, format: Format) -> String {
        let mut out = String::with_capacity(16 * 1024);
        // Writing to a String cannot fail; an encoder error would be a bug in a collector,
        // and then the part written so far is still served.
        let written = match format {
            Format::Prometheus => prometheus_text::encode(&mut out, &self.registry),
            Format::OpenMetrics => text::encode(&mut out, &self.registry),
        };
        if let Err(err) = written {
            tracing::error!("Encoding the metrics failed: {err}");
        }
        out
    }
}

#[cfg(test)]
mod label_tests {
    use super::*;

    #[test]
    fn label_values_from_outside_are_bounded_and_escaped() {
        assert_eq!(label_value("a/b"), "a/b");
        assert_eq!(label_value("a\rb\u{1b}c\u{85}"), "a\\rb\\u{1b}c\\u{85}");
        let long = label_value(&"é".repeat(200));
        assert!(
            long.len() <= MAX_LABEL_VALUE_BYTES + '…'.len_utf8(),
            "{}",
            long.len()
        );
        assert!(long.ends_with('…'));
        assert!(!label_value("x\ny").contains('\n'));
    }
}
