//! The task that fills the window: every [`INTERVAL`](super::INTERVAL), the process's
//! metrics are read back ([`super::prom_text`]) and reduced to the series the page plots.

use std::sync::Arc;

use super::prom_text::{self, Sample, Scrape};
use crate::metrics::Metrics;

/// Keys of the host's own series: running totals, whose differences are the page's rates.
pub mod keys {
    /// HTTP requests answered.
    pub const HTTP_REQUESTS: &str = "http_requests";
    /// HTTP requests answered with a 5xx status.
    pub const HTTP_ERRORS: &str = "http_errors";
    /// Eventbus messages handed to a subscription's handler (every bus).
    pub const MESSAGES: &str = "messages";
    /// Messages whose handler failed, or dropped before it.
    pub const MESSAGE_ERRORS: &str = "message_errors";
    /// Messages published, confirmed or not.
    pub const PUBLISHES: &str = "publishes";
    /// Publishes that failed.
    pub const PUBLISH_ERRORS: &str = "publish_errors";
    /// Every total, in the order the page lists them.
    pub const TOTALS: [&str; 6] = [
        HTTP_REQUESTS,
        HTTP_ERRORS,
        MESSAGES,
        MESSAGE_ERRORS,
        PUBLISHES,
        PUBLISH_ERRORS,
    ];
    /// Prefix of a plugin gauge's key: `gauge:` + `name{label="value",…}`.
    pub const GAUGE: &str = "gauge:";
}

/// Starts the sampler of `metrics` (the service's registry, which every generation shares)
/// on the current runtime, once per process; later calls do nothing.
pub fn start(metrics: Arc<Metrics>) {
    static STARTED: std::sync::Once = std::sync::Once::new();
    STARTED.call_once(|| {
        let window = super::global();
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(super::INTERVAL);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                window.record(sample(&read_metrics(&metrics)));
            }
        });
    });
}

/// `metrics`, read back.
pub fn read_metrics(metrics: &Metrics) -> Scrape {
    prom_text::parse(&metrics.encode(crate::metrics::Format::Prometheus))
}

/// The series of one sample: the totals, and every plugin gauge.
pub fn sample(scrape: &Scrape) -> Vec<(String, f64)> {
    let any = |_: &Sample| true;
    let mut values = vec![
        (
            keys::HTTP_REQUESTS.to_owned(),
            scrape.sum("http_requests_total", any),
        ),
        (
            keys::HTTP_ERRORS.to_owned(),
            scrape.sum("http_requests_total", |s| s.label("status") == Some("5xx")),
        ),
        (
            keys::MESSAGES.to_owned(),
            scrape.sum("eventbus_messages_delivered_total", any),
        ),
        (
            keys::MESSAGE_ERRORS.to_owned(),
            scrape.sum("eventbus_messages_failed_total", any)
                + scrape.sum("eventbus_messages_dropped_total", any),
        ),
        (
            keys::PUBLISHES.to_owned(),
            scrape.sum("eventbus_publishes_total", any),
        ),
        (
            keys::PUBLISH_ERRORS.to_owned(),
            scrape.sum("eventbus_publishes_total", |s| {
                s.label("outcome") == Some("failed")
            }),
        ),
    ];
    values.extend(
        scrape
            .samples
            .iter()
            .filter(|s| s.name.starts_with("plugin_") && scrape.type_of(&s.name) == Some("gauge"))
            .map(|s| (format!("{}{}", keys::GAUGE, series_name(s)), s.value)),
    );
    values
}

/// `name{label="value",…}` as Prometheus writes a series (labels in the order given).
pub fn series_name(sample: &Sample) -> String {
    if sample.labels.is_empty() {
        return sample.name.clone();
    }
    let labels: Vec<String> = sample
        .labels
        .iter()
        .map(|(key, value)| format!("{key}={value:?}"))
        .collect();
    format!("{}{{{}}}", sample.name, labels.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_and_plugin_gauges() {
        let scrape = prom_text::parse(
            "# TYPE http_requests counter\n\
             http_requests_total{route=\"/a\",status=\"2xx\"} 5\n\
             http_requests_total{route=\"/a\",status=\"5xx\"} 2\n\
             # TYPE eventbus_messages_failed counter\n\
             eventbus_messages_failed_total{bus=\"mqtt\"} 1\n\
             # TYPE eventbus_messages_dropped counter\n\
             eventbus_messages_dropped_total{bus=\"amqp\"} 3\n\
             # TYPE plugin_dev_temp gauge\n\
             plugin_dev_temp{device=\"d1\"} 19.5\n\
             # TYPE plugin_dev_runs counter\n\
             plugin_dev_runs_total 4\n",
        );
        let values: std::collections::BTreeMap<String, f64> = sample(&scrape).into_iter().collect();
        assert_eq!(values[keys::HTTP_REQUESTS], 7.0);
        assert_eq!(values[keys::HTTP_ERRORS], 2.0);
        assert_eq!(values[keys::MESSAGES], 0.0);
        assert_eq!(values[keys::MESSAGE_ERRORS], 4.0);
        assert_eq!(values["gauge:plugin_dev_temp{device=\"d1\"}"], 19.5);
        assert_eq!(values.len(), keys::TOTALS.len() + 1, "{values:?}");
    }
}
