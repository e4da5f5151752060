//! HTTP metrics: requests by route template, method, status class and plugin; a latency
//! histogram per route; requests in flight; bodies refused as too large; handler panics.
//!
//! The label sets of every route are resolved when the app is built ([`RouteSeries`], kept
//! with the route in the app's route table, which finds it with the route), so a request
//! costs two clock reads and a few atomic adds: no label is hashed or allocated per request. Routes are labelled with their registered path (`/svc/{id}`),
//! never the raw URL, so the number of series stays bounded; a path no route matches is
//! labelled `unmatched`.

use std::sync::{Arc, OnceLock};

use axum::http::{Method, StatusCode};
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};

/// The `route` label of a request no route matched.
pub const UNMATCHED: &str = "unmatched";
/// The `plugin` label of the host's own routes.
pub const HOST: &str = "host";

/// Latency buckets in seconds: 100 µs to 10 s.
const BUCKETS: [f64; 12] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 0.5, 2.5, 10.0,
];

const METHODS: [&str; 8] = [
    "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "other",
];
const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub route: String,
    pub plugin: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub route: String,
    pub method: &'static str,
    pub status: &'static str,
    pub plugin: String,
}

fn histogram() -> Histogram {
    Histogram::new(BUCKETS)
}

/// The HTTP families of the registry.
#[derive(Debug, Clone)]
pub struct HttpMetrics {
    requests: Family<RequestLabels, Counter>,
    duration: Family<RouteLabels, Histogram, fn() -> Histogram>,
    in_flight: Gauge,
    too_large: Family<RouteLabels, Counter>,
    panics: Family<RouteLabels, Counter>,
}

impl HttpMetrics {
    pub fn register(registry: &mut Registry) -> HttpMetrics {
        let metrics = HttpMetrics {
            requests: Family::default(),
            duration: Family::new_with_constructor(histogram as fn() -> Histogram),
            in_flight: Gauge::default(),
            too_large: Family::default(),
            panics: Family::default(),
        };
        registry.register(
            "http_requests",
            "HTTP requests answered, by route template, method, status class and plugin",
            metrics.requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "Time from a request's arrival to its response's head, by route",
            metrics.duration.clone(),
        );
        registry.register(
            "http_requests_in_flight",
            "HTTP requests being served",
            metrics.in_flight.clone(),
        );
        registry.register(
            "http_request_bodies_too_large",
            "Requests refused with 413 because their body was over --max-body-size",
            metrics.too_large.clone(),
        );
        registry.register(
            "http_handler_panics",
            "Requests whose handler panicked (answered with a 500)",
            metrics.panics.clone(),
        );
        metrics
    }

    /// The series of one route, resolved once.
    pub fn route(&self, route: &str, plugin: &str) -> Arc<RouteSeries> {
        let labels = RouteLabels {
            route: route.to_owned(),
            plugin: plugin.to_owned(),
        };
        Arc::new(RouteSeries {
            duration: self.duration.get_or_create_owned(&labels),
            counters: Default::default(),
            labels,
            metrics: self.clone(),
        })
    }

    /// The panics counted for a route so far (for tests).
    #[cfg(test)]
    pub fn panics(&self, route: &str, plugin: &str) -> u64 {
        let labels = RouteLabels {
            route: route.to_owned(),
            plugin: plugin.to_owned(),
        };
        self.panics.get(&labels).map(|c| c.get()).unwrap_or(0)
    }

    /// Counts a request in flight until the guard is dropped.
    pub fn in_flight(&self) -> InFlight {
        self.in_flight.inc();
        InFlight(self.in_flight.clone())
    }
}

/// Decrements the in-flight gauge when the request is done (or its connection dropped).
pub struct InFlight(Gauge);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// One route's series: its latency histogram, and its request counters by method and
/// status class, each resolved at its first use.
#[derive(Debug)]
pub struct RouteSeries {
    labels: RouteLabels,
    duration: Histogram,
    counters: [[OnceLock<Counter>; CLASSES.len()]; METHODS.len()],
    metrics: HttpMetrics,
}

fn method_index(method: &Method) -> usize {
    match *method {
        Method::GET => 0,
        Method::HEAD => 1,
        Method::POST => 2,
        Method::PUT => 3,
        Method::PATCH => 4,
        Method::DELETE => 5,
        Method::OPTIONS => 6,
        _ => 7,
    }
}

/// What a response says about the request, for [`RouteSeries::record`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Answered,
    Panicked,
}

impl RouteSeries {
    /// Records one answered request.
    pub fn record(&self, method: &Method, status: StatusCode, seconds: f64, outcome: Outcome) {
        self.duration.observe(seconds);
        let (m, class) = (
            method_index(method),
            (status.as_u16() / 100).clamp(1, 5) as usize - 1,
        );
        self.counters[m][class]
            .get_or_init(|| {
                self.metrics.requests.get_or_create_owned(&RequestLabels {
                    route: self.labels.route.clone(),
                    method: METHODS[m],
                    status: CLASSES[class],
                    plugin: self.labels.plugin.clone(),
                })
            })
            .inc();
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            self.metrics.too_large.get_or_create(&self.labels).inc();
        }
        if outcome == Outcome::Panicked {
            self.metrics.panics.get_or_create(&self.labels).inc();
        }
    }
}
