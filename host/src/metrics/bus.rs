//! Eventbus metrics, for every bus the host speaks: each series carries a `bus` label
//! (`amqp`, and `mqtt` for an MQTT bus), so one set of families serves them all.
//!
//! - per connection (`connection`: `listener`, `publisher`, or the bus's own name for it):
//!   whether it is up, how often it came back, and which broker of its address list it
//!   uses (`eventbus_broker_info{broker}`: 1 in use, 0 used before);
//! - per subscription (`exchange` and `routing` — for MQTT the topic filter as `routing` and
//!   an empty `exchange` — and `plugin`, `host` for the host's own): messages delivered to
//!   the handler, failed (the handler returned an error or panicked), dropped before it (not
//!   JSON, empty, too large), and the handler's latency;
//! - publishes by outcome, and the time from sending to the broker's confirm;
//! - messages received and not yet acknowledged (being handled).
//!
//! A subscription's series are made when it first becomes active (or a message for it
//! arrives), never for one the broker never took. Its label values come from outside and are
//! bounded and escaped ([`super::label_value`]); at most [`MAX_SUBSCRIPTION_SERIES`] label
//! sets are kept per family, whatever callers do: later subscriptions share one set whose
//! `exchange`, `routing` and `plugin` are all [`OVERFLOW`].
//!
//! A bus records through [`BusMetrics::connection`], [`BusMetrics::subscription`] (resolve
//! once per subscription, then [`SubscriptionSeries`] is a few atomic adds per message),
//! [`BusMetrics::published`] and [`SubscriptionSeries::unacked`].

use std::{
    collections::HashSet,
    sync::{Arc, Mutex},
    time::Duration,
};

use crate::sync::Unpoisoned;

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};

/// The most subscription label sets kept (each has a few series in each family).
pub const MAX_SUBSCRIPTION_SERIES: usize = 1000;
/// The label values of the set every subscription past [`MAX_SUBSCRIPTION_SERIES`] shares.
pub const OVERFLOW: &str = "_overflow";

/// Handler and confirm latency buckets in seconds: 1 ms to 30 s.
const BUCKETS: [f64; 11] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0, 30.0,
];

fn histogram() -> Histogram {
    Histogram::new(BUCKETS)
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ConnectionLabels {
    pub bus: &'static str,
    pub connection: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BrokerLabels {
    pub bus: &'static str,
    pub connection: String,
    /// The broker's address as shown in health: never a password.
    pub broker: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SubscriptionLabels {
    pub bus: &'static str,
    pub exchange: String,
    pub routing: String,
    pub plugin: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DroppedLabels {
    pub bus: &'static str,
    pub exchange: String,
    pub routing: String,
    pub plugin: String,
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PublishLabels {
    pub bus: &'static str,
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BusLabel {
    pub bus: &'static str,
}

/// Why a message never reached its handler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dropped {
    /// The body is not JSON, or is empty.
    NotJson,
    /// The body is over the bus's message size limit.
    TooLarge,
    /// The subscription's queue was full (MQTT: a handler slower than the messages).
    QueueFull,
}

impl Dropped {
    fn label(self) -> &'static str {
        match self {
            Dropped::NotJson => "not_json",
            Dropped::TooLarge => "too_large",
            Dropped::QueueFull => "queue_full",
        }
    }
}

/// The eventbus families of the registry.
#[derive(Debug, Clone)]
pub struct BusMetrics {
    up: Family<ConnectionLabels, Gauge>,
    broker: Family<BrokerLabels, Gauge>,
    reconnects: Family<ConnectionLabels, Counter>,
    delivered: Family<SubscriptionLabels, Counter>,
    failed: Family<SubscriptionLabels, Counter>,
    dropped: Family<DroppedLabels, Counter>,
    handler_duration: Family<SubscriptionLabels, Histogram, fn() -> Histogram>,
    publishes: Family<PublishLabels, Counter>,
    confirm_duration: Family<BusLabel, Histogram, fn() -> Histogram>,
    unacked: Family<BusLabel, Gauge>,
    /// The subscription label sets made so far, up to [`MAX_SUBSCRIPTION_SERIES`].
    known: Arc<Mutex<HashSet<SubscriptionLabels>>>,
    /// Each bus's publish series, resolved at its first publish: a family lookup hashes its
    /// labels, a sixth of what the host adds to a publish.
    publish_series: Arc<Mutex<Vec<(&'static str, PublishSeries)>>>,
}

/// One bus's publish counters and confirm histogram; each made at its first use, as the
/// family would make it.
#[derive(Debug, Default)]
struct PublishSeries {
    ok: Option<Counter>,
    failed: Option<Counter>,
    confirmed: Option<Histogram>,
}

impl BusMetrics {
    /// Families registered nowhere: counted, exported by no endpoint. For a bus made
    /// outside the service (tests, tools), which still needs somewhere to count.
    pub fn detached() -> BusMetrics {
        BusMetrics::register(&mut Registry::default())
    }

    pub fn register(registry: &mut Registry) -> BusMetrics {
        let metrics = BusMetrics {
            up: Family::default(),
            broker: Family::default(),
            reconnects: Family::default(),
            delivered: Family::default(),
            failed: Family::default(),
            dropped: Family::default(),
            handler_duration: Family::new_with_constructor(histogram as fn() -> Histogram),
            publishes: Family::default(),
            confirm_duration: Family::new_with_constructor(histogram as fn() -> Histogram),
            unacked: Family::default(),
            known: Arc::default(),
            publish_series: Arc::default(),
        };
        registry.register(
            "eventbus_connection_up",
            "1 while the connection to the broker is up, 0 while it is down",
            metrics.up.clone(),
        );
        registry.register(
            "eventbus_broker_info",
            "1 for the broker of the address list a connection uses now, 0 for one it used before",
            metrics.broker.clone(),
        );
        registry.register(
            "eventbus_reconnects",
            "Times the connection came back after it was lost",
            metrics.reconnects.clone(),
        );
        registry.register(
            "eventbus_messages_delivered",
            "Messages handed to the subscription's handler",
            metrics.delivered.clone(),
        );
        registry.register(
            "eventbus_messages_failed",
            "Messages whose handler returned an error or panicked",
            metrics.failed.clone(),
        );
        registry.register(
            "eventbus_messages_dropped",
            "Messages dropped before the handler: not JSON or empty, or too large",
            metrics.dropped.clone(),
        );
        registry.register(
            "eventbus_handler_duration_seconds",
            "Time the subscription's handler took per message",
            metrics.handler_duration.clone(),
        );
        registry.register(
            "eventbus_publishes",
            "Publishes by outcome (ok: confirmed by the broker)",
            metrics.publishes.clone(),
        );
        registry.register(
            "eventbus_publish_confirm_seconds",
            "Time from sending a message to the broker's confirm",
            metrics.confirm_duration.clone(),
        );
        registry.register(
            "eventbus_unacked_messages",
            "Messages received from the broker and not yet acknowledged (being handled)",
            metrics.unacked.clone(),
        );
        metrics
    }

    /// Records that a connection came up (`reconnect`: after having been up before) or went
    /// down.
    pub fn connection(&self, bus: &'static str, connection: &str, up: bool, reconnect: bool) {
        let labels = ConnectionLabels {
            bus,
            connection: connection.to_owned(),
        };
        self.up.get_or_create(&labels).set(i64::from(up));
        let reconnects = self.reconnects.get_or_create(&labels);
        if up && reconnect {
            reconnects.inc();
        }
    }

    /// Records that `connection` now uses `broker` (`in_use`), or no longer does.
    pub fn broker(&self, bus: &'static str, connection: &str, broker: &str, in_use: bool) {
        let labels = BrokerLabels {
            bus,
            connection: connection.to_owned(),
            broker: broker.to_owned(),
        };
        self.broker.get_or_create(&labels).set(i64::from(in_use));
    }

    /// The series of one subscription, resolved once.
    pub fn subscription(
        &self,
        bus: &'static str,
        exchange: &str,
        routing: &str,
        plugin: Option<&str>,
    ) -> SubscriptionSeries {
        let labels = self.bounded(SubscriptionLabels {
            bus,
            exchange: super::label_value(exchange),
            routing: super::label_value(routing),
            plugin: super::label_value(plugin.unwrap_or(super::http::HOST)),
        });
        SubscriptionSeries {
            delivered: self.delivered.get_or_create_owned(&labels),
            failed: self.failed.get_or_create_owned(&labels),
            duration: self.handler_duration.get_or_create_owned(&labels),
            unacked: self.unacked.get_or_create_owned(&BusLabel { bus }),
            labels,
            metrics: self.clone(),
        }
    }

    /// `labels`, or the overflow set once [`MAX_SUBSCRIPTION_SERIES`] others exist.
    fn bounded(&self, labels: SubscriptionLabels) -> SubscriptionLabels {
        let mut known = self.known.locked();
        if known.contains(&labels) {
            return labels;
        }
        if known.len() < MAX_SUBSCRIPTION_SERIES {
            known.insert(labels.clone());
            return labels;
        }
        SubscriptionLabels {
            bus: labels.bus,
            exchange: OVERFLOW.into(),
            routing: OVERFLOW.into(),
            plugin: OVERFLOW.into(),
        }
    }

    /// Records a publish: `confirmed` is the time from sending to the confirm when it was ok.
    pub fn published(&self, bus: &'static str, ok: bool, confirmed: Option<Duration>) {
        let mut resolved = self.publish_series.locked();
        let index = match resolved.iter().position(|(b, _)| *b == bus) {
            Some(index) => index,
            None => {
                resolved.push((bus, PublishSeries::default()));
                resolved.len() - 1
            }
        };
        let series = &mut resolved[index].1;
        let (slot, outcome) = match ok {
            true => (&mut series.ok, "ok"),
            false => (&mut series.failed, "failed"),
        };
        slot.get_or_insert_with(|| {
            self.publishes
                .get_or_create_owned(&PublishLabels { bus, outcome })
        })
        .inc();
        if let Some(confirmed) = confirmed {
            series
                .confirmed
                .get_or_insert_with(|| self.confirm_duration.get_or_create_owned(&BusLabel { bus }))
                .observe(confirmed.as_secs_f64());
        }
    }
}

/// Decrements the unacked gauge when the message is settled. It borrows the gauge from the
/// subscription's series, which outlives the message: a clone would be two atomic counts
/// more per message.
pub struct Unacked<'a>(&'a Gauge);

impl Drop for Unacked<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// One subscription's series.
#[derive(Debug, Clone)]
pub struct SubscriptionSeries {
    labels: SubscriptionLabels,
    delivered: Counter,
    failed: Counter,
    duration: Histogram,
    /// The bus's unacked gauge, resolved once rather than looked up per message.
    unacked: Gauge,
    metrics: BusMetrics,
}

impl SubscriptionSeries {
    /// Counts a message of this subscription as unacknowledged until the guard is dropped.
    pub fn unacked(&self) -> Unacked<'_> {
        self.unacked.inc();
        Unacked(&self.unacked)
    }

    /// A message went to the handler, which took `took`; `ok`: it did not fail or panic.
    pub fn handled(&self, took: Duration, ok: bool) {
        self.delivered.inc();
        self.duration.observe(took.as_secs_f64());
        if !ok {
            self.failed.inc();
        }
    }

    pub fn dropped(&self, why: Dropped) {
        let labels = DroppedLabels {
            bus: self.labels.bus,
            exchange: self.labels.exchange.clone(),
            routing: self.labels.routing.clone(),
            plugin: self.labels.plugin.clone(),
            reason: why.label(),
        };
        self.metrics.dropped.get_or_create(&labels).inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscription_series_are_bounded_and_their_labels_escaped() {
        let metrics = BusMetrics::register(&mut Registry::default());
        let first = metrics.subscription("mqtt", "", "a\r\u{1b}", Some("p"));
        assert_eq!(first.labels.routing, "a\\r\\u{1b}");
        let long = metrics.subscription("mqtt", "", &"x".repeat(60_000), None);
        assert!(long.labels.routing.len() < 200);
        for n in 2..MAX_SUBSCRIPTION_SERIES {
            metrics.subscription("mqtt", "", &format!("f/{n}"), None);
        }
        let over = metrics.subscription("mqtt", "", "one/more", None);
        assert_eq!(
            (over.labels.routing.as_str(), over.labels.plugin.as_str()),
            (OVERFLOW, OVERFLOW)
        );
        // A label set made before the bound is still its own.
        let again = metrics.subscription("mqtt", "", "f/2", None);
        assert_eq!(again.labels.routing, "f/2");
        assert_eq!(metrics.known.locked().len(), MAX_SUBSCRIPTION_SERIES);
    }
}
