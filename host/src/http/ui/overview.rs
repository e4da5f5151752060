//! `GET /{name}/_service/overview`: everything the operator page shows, as one JSON
//! document (listed in the OpenAPI document with this very type), so that the page holds no
//! knowledge the API does not.
//!
//! Where each part comes from: the service, plugin and subscription states from the health
//! report ([`crate::http::health`]); the counts (delivered, failed, dropped, handler time,
//! task and repeater failures, a plugin's generation) from the process's Prometheus metrics,
//! read back at request time; rates and gauge plots from the window of the last 10 minutes
//! ([`crate::window`]); the last reloads from the reload log.

use std::{collections::HashMap, sync::Arc};

use axum::{
    http::{header, HeaderValue},
    response::{IntoResponse, Response},
    Json,
};
use schemars::JsonSchema;
use serde::Serialize;
use serde_json::Value;

use crate::{
    http::health::{self, BusKind, HealthReport, HealthSources, HealthStatus, PluginStateName},
    http::openapi::LazyDocument,
    reloads::LastReload,
    window::{
        self,
        prom_text::{Sample, Scrape},
        sampler::{self, keys},
    },
};

/// What the overview reads besides the health report.
pub struct OverviewSources {
    pub health: Arc<HealthSources>,
    /// Every plugin route, with where the API UI shows it.
    pub routes: RouteLinks,
    /// Each eventbus the options selected, with its broker list as the options give it (in
    /// order; credentials are dropped where shown).
    pub brokers: Vec<(BusKind, Vec<String>)>,
    /// Links to the service's other documents, relative to `/{name}/_service/`.
    pub links: Links,
}

/// `GET /_service/overview`: the service as the operator page shows it.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Overview {
    pub service: ServiceOverview,
    /// Every plugin of the serving generation, in load order.
    pub plugins: Vec<PluginOverview>,
    /// Subscriptions the host made itself (`/_debug/subscribe`).
    pub host_subscriptions: Vec<SubscriptionOverview>,
    /// The last reloads, newest first (at most 10).
    pub reloads: Vec<LastReload>,
    pub window: WindowOverview,
    pub links: Links,
}

/// The service as a whole.
#[derive(Debug, Serialize, JsonSchema)]
pub struct ServiceOverview {
    pub name: String,
    /// The host's version.
    pub version: String,
    /// Seconds since the process started.
    pub uptime_seconds: f64,
    /// `ok`, or `unhealthy` as `/_service/health` answers 503.
    pub status: HealthStatus,
    /// Why it is unhealthy, one line each.
    pub problems: Vec<String>,
    pub brokers: Vec<BrokerOverview>,
}

/// An eventbus's broker: the one in use, of the list the options give.
#[derive(Debug, Serialize, JsonSchema)]
pub struct BrokerOverview {
    pub bus: BusKind,
    /// The broker in use, read live from the health report (AMQP: the one connected to;
    /// MQTT: the one connected to, or tried next), without user or password; the first of
    /// `list` while AMQP has none.
    pub url: String,
    /// `connected`, `connecting`, `disabled` (nothing used it yet) or `closed`.
    pub state: String,
    /// Every broker of the list, in the order given, without user or password.
    pub list: Vec<String>,
}

/// One plugin.
#[derive(Debug, Serialize, JsonSchema)]
pub struct PluginOverview {
    pub name: String,
    pub version: String,
    /// The library's build id (see `/_service/health`).
    pub build: Option<String>,
    /// Which load of the plugins folder this plugin belongs to (1 at start, +1 per reload
    /// attempt), from `brewblox_plugin_state`.
    pub generation: Option<u64>,
    pub state: PluginStateName,
    pub error: Option<String>,
    /// Its running background tasks and repeaters.
    pub tasks: Vec<String>,
    /// Tasks that ended with an error or a panic, since the process started.
    pub task_failures: f64,
    /// Failed repeater runs, since the process started.
    pub repeater_failures: f64,
    pub routes: Vec<RouteLink>,
    pub subscriptions: Vec<SubscriptionOverview>,
}

/// One plugin route and where the API UI shows it.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct RouteLink {
    #[serde(skip)]
    pub plugin: String,
    /// Upper case, or `*` for any method.
    pub method: String,
    /// The full path, `/{name}/…`.
    pub path: String,
    /// The route's first tag in the OpenAPI document.
    pub tag: Option<String>,
    /// Its `operationId` there, if it has one.
    pub operation_id: Option<String>,
}

/// One subscription, with its counts since the process started.
#[derive(Debug, Serialize, JsonSchema)]
pub struct SubscriptionOverview {
    pub bus: BusKind,
    /// The AMQP exchange; empty for MQTT.
    pub exchange: String,
    /// The AMQP routing pattern, or the MQTT topic filter.
    pub routing: String,
    /// `pending`, `active`, `failed` or `cancelled`.
    pub state: String,
    pub error: Option<String>,
    /// Messages handed to the handler.
    pub delivered: f64,
    /// Messages whose handler failed or panicked.
    pub failed: f64,
    /// Messages dropped before the handler (not JSON, too large, queue full).
    pub dropped: f64,
    /// Total seconds the handler took.
    pub handler_seconds: f64,
}

/// The recent past: one time axis and the series sampled on it.
#[derive(Debug, Serialize, JsonSchema)]
pub struct WindowOverview {
    /// Seconds between samples.
    pub interval_seconds: f64,
    /// Samples kept at most.
    pub capacity: usize,
    /// Sample times, milliseconds since the Unix epoch, oldest first.
    pub times: Vec<u64>,
    /// Running totals (`http_requests`, `http_errors` (5xx), `messages` (delivered),
    /// `message_errors` (failed or dropped), `publishes`, `publish_errors`): a rate is the
    /// difference of two samples over their time difference.
    pub totals: Vec<SeriesOverview>,
    /// The plugins' gauges, keyed `name{label="value",…}` as in the metrics.
    pub gauges: Vec<SeriesOverview>,
}

/// One series: a value per sample time, null where it had none.
#[derive(Debug, Serialize, JsonSchema)]
pub struct SeriesOverview {
    pub key: String,
    pub values: Vec<Option<f64>>,
}

/// Where the service's other documents are, relative to `/{name}/_service/`.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct Links {
    /// The API UI (Swagger UI).
    pub api_doc: String,
    /// The OpenAPI document.
    pub openapi: String,
    /// The AsyncAPI document of the eventbus side.
    pub asyncapi: String,
    pub health: String,
    pub metrics: String,
}

impl Default for Links {
    fn default() -> Self {
        Links {
            api_doc: "../api/doc".into(),
            openapi: "../api/doc/swagger.json".into(),
            asyncapi: "../api/asyncapi.json".into(),
            health: "health".into(),
            metrics: "metrics".into(),
        }
    }
}

/// Every plugin route of a generation with where the API UI shows it, worked out at the first
/// overview from the OpenAPI document (which that builds, see [`LazyDocument`]).
pub struct RouteLinks {
    name: String,
    document: Arc<LazyDocument>,
    links: std::sync::OnceLock<Vec<RouteLink>>,
}

impl RouteLinks {
    /// The routes of `document`, of service `name`.
    pub fn new(name: &str, document: Arc<LazyDocument>) -> Self {
        RouteLinks {
            name: name.to_owned(),
            document,
            links: std::sync::OnceLock::new(),
        }
    }

    pub fn get(&self) -> &[RouteLink] {
        self.links.get_or_init(|| {
            let doc = self.document.get();
            self.document
                .routes()
                .iter()
                .map(|route| RouteLink::new(&self.name, route, doc))
                .collect()
        })
    }
}

impl RouteLink {
    /// The plugin route `route` of service `name`, with its tag and operation id from the
    /// OpenAPI document `doc` (a `*` route: its `get` operation).
    pub fn new(name: &str, route: &crate::plugins::routes::RouteEntry, doc: &Value) -> Self {
        let path = format!("/{name}{}", route.path);
        let method = match route.method.as_str() {
            "*" => "get".to_owned(),
            other => other.to_ascii_lowercase(),
        };
        let operation = &doc["paths"][path.replace("{*", "{")][method];
        RouteLink {
            plugin: route.plugin.clone(),
            method: route.method.clone(),
            path,
            tag: operation["tags"][0].as_str().map(str::to_owned),
            operation_id: operation["operationId"].as_str().map(str::to_owned),
        }
    }
}

/// `url` without its user and password (`mqtt://user@host:1883` → `mqtt://host:1883`).
pub fn without_credentials(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://{}", &rest[at + 1..]),
        None => url.to_owned(),
    }
}

/// The counts of the subscription series with these labels.
fn counts(scrape: &Scrape, bus: &str, exchange: &str, routing: &str, plugin: &str) -> [f64; 4] {
    let mine = |s: &Sample| {
        s.label("bus") == Some(bus)
            && s.label("exchange") == Some(exchange)
            && s.label("routing") == Some(routing)
            && s.label("plugin") == Some(plugin)
    };
    [
        scrape.sum("eventbus_messages_delivered_total", mine),
        scrape.sum("eventbus_messages_failed_total", mine),
        scrape.sum("eventbus_messages_dropped_total", mine),
        scrape.sum("eventbus_handler_duration_seconds_sum", mine),
    ]
}

/// Every subscription of the report, with its owner (`None`: the host).
fn subscriptions(
    report: &HealthReport,
    scrape: &Scrape,
) -> Vec<(Option<String>, SubscriptionOverview)> {
    let host = crate::metrics::http::HOST;
    let amqp = report.eventbus.subscriptions.iter().map(|s| {
        let plugin = s.plugin.as_deref().unwrap_or(host);
        let [delivered, failed, dropped, handler_seconds] =
            counts(scrape, "amqp", &s.exchange, &s.routing, plugin);
        let overview = SubscriptionOverview {
            bus: BusKind::Amqp,
            exchange: s.exchange.clone(),
            routing: s.routing.clone(),
            state: s.state.to_owned(),
            error: s.error.clone(),
            delivered,
            failed,
            dropped,
            handler_seconds,
        };
        (s.plugin.clone(), overview)
    });
    let mqtt = report
        .mqtt
        .iter()
        .flat_map(|m| m.all_subscriptions())
        .map(|s| {
            let plugin = s.plugin.as_deref().unwrap_or(host);
            let [delivered, failed, dropped, handler_seconds] =
                counts(scrape, "mqtt", "", &s.filter, plugin);
            let overview = SubscriptionOverview {
                bus: BusKind::Mqtt,
                exchange: String::new(),
                routing: s.filter.clone(),
                state: s.state.to_owned(),
                error: s.error.clone(),
                delivered,
                failed,
                dropped: dropped.max(s.dropped as f64),
                handler_seconds,
            };
            (s.plugin.clone(), overview)
        });
    amqp.chain(mqtt).collect()
}

/// The first value of `name` for `plugin`.
fn plugin_value(scrape: &Scrape, name: &str, plugin: &str) -> f64 {
    scrape.sum(name, |s| s.label("plugin") == Some(plugin))
}

/// The generation of the live `plugin` with this build (the newest, during a reload).
fn generation(scrape: &Scrape, plugin: &str) -> Option<u64> {
    scrape
        .samples
        .iter()
        .filter(|s| s.name == "brewblox_plugin_state" && s.label("plugin") == Some(plugin))
        .filter_map(|s| s.label("generation")?.parse().ok())
        .max()
}

/// The broker in use on `bus` and its connection's state, from the health report.
fn broker_in_use(report: &HealthReport, bus: BusKind) -> (Option<String>, String) {
    let text = |value: serde_json::Value| value.as_str().unwrap_or("").to_owned();
    match bus {
        BusKind::Amqp => (
            report.eventbus.broker.clone(),
            text(serde_json::to_value(report.eventbus.state).unwrap_or_default()),
        ),
        BusKind::Mqtt => report
            .mqtt
            .as_ref()
            .map(|m| {
                let state = serde_json::to_value(m.connection.state).unwrap_or_default();
                (Some(m.connection.broker.clone()), text(state))
            })
            .unwrap_or_default(),
    }
}

fn brokers(report: &HealthReport, lists: &[(BusKind, Vec<String>)]) -> Vec<BrokerOverview> {
    lists
        .iter()
        .map(|(bus, list)| {
            let (in_use, state) = broker_in_use(report, *bus);
            let url = in_use.or_else(|| list.first().cloned()).unwrap_or_default();
            BrokerOverview {
                bus: *bus,
                url: without_credentials(&url),
                state,
                list: list.iter().map(|url| without_credentials(url)).collect(),
            }
        })
        .collect()
}

fn window_overview() -> WindowOverview {
    window::global().read(|ring| {
        let series = |key: &str| SeriesOverview {
            key: key.trim_start_matches(keys::GAUGE).to_owned(),
            values: ring
                .values(key)
                .map(|values| values.map(|v| (!v.is_nan()).then_some(v)).collect())
                .unwrap_or_default(),
        };
        WindowOverview {
            interval_seconds: window::INTERVAL.as_secs_f64(),
            capacity: window::CAPACITY,
            times: ring.times().collect(),
            totals: keys::TOTALS.iter().map(|key| series(key)).collect(),
            gauges: ring
                .keys()
                .filter(|key| key.starts_with(keys::GAUGE))
                .map(series)
                .collect(),
        }
    })
}

/// Builds the overview from the sources and the metrics as they are now.
pub fn overview(sources: &OverviewSources, scrape: &Scrape) -> Overview {
    let report = health::report(&sources.health);
    let mut by_owner: HashMap<Option<String>, Vec<SubscriptionOverview>> = HashMap::new();
    for (owner, subscription) in subscriptions(&report, scrape) {
        by_owner.entry(owner).or_default().push(subscription);
    }
    let plugins: Vec<PluginOverview> = report
        .plugins
        .iter()
        .map(|p| PluginOverview {
            name: p.name.clone(),
            version: p.version.clone(),
            build: p.build.clone(),
            generation: generation(scrape, &p.name),
            state: p.state,
            error: p.error.clone(),
            tasks: p.tasks.clone(),
            task_failures: plugin_value(scrape, "brewblox_plugin_task_failures_total", &p.name),
            repeater_failures: plugin_value(
                scrape,
                "brewblox_plugin_repeater_failures_total",
                &p.name,
            ),
            routes: sources
                .routes
                .get()
                .iter()
                .filter(|r| r.plugin == p.name)
                .cloned()
                .collect(),
            subscriptions: by_owner.remove(&Some(p.name.clone())).unwrap_or_default(),
        })
        .collect();
    // The host's own (`/_debug/subscribe`: no owner) and any of
    // a plugin no longer listed.
    let mut host_subscriptions: Vec<SubscriptionOverview> =
        by_owner.remove(&None).unwrap_or_default();
    host_subscriptions.extend(by_owner.into_values().flatten());
    Overview {
        service: ServiceOverview {
            name: report.service.clone(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            uptime_seconds: window::global().uptime().as_secs_f64(),
            status: report.status,
            problems: report.problems.clone(),
            brokers: brokers(&report, &sources.brokers),
        },
        plugins,
        host_subscriptions,
        reloads: sources.health.reloads.recent(),
        window: window_overview(),
        links: sources.links.clone(),
    }
}

/// The handler: never cached, the page polls it.
pub async fn serve(sources: Arc<OverviewSources>) -> Response {
    let scrape = sampler::read_metrics(&sources.health.host.metrics);
    let mut response = Json(overview(&sources, &scrape)).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_their_credentials() {
        assert_eq!(without_credentials("mqtt://u:p@h:1883"), "mqtt://h:1883");
        assert_eq!(
            without_credentials("amqp://guest@h:5672/%2f"),
            "amqp://h:5672/%2f"
        );
        assert_eq!(without_credentials("ws://h:80/a@b"), "ws://h:80/a@b");
        assert_eq!(without_credentials("plain"), "plain");
    }
}
