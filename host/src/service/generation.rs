//! One generation of the service: a loaded plugin set, started, with the HTTP app built on
//! its routes. Boot starts the first; every reload starts the next beside the current one
//! and stops the old one only once the new one serves.

use plugin_abi::features::FeatureRegistry;
use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::routing::{get, post};
use plugin_abi::phase;

use crate::{
    bus::{BusState, EventBus},
    cli::Settings,
    http::{self, health::HealthSources, server::Served, AppSpec},
    mqtt::MqttBus,
    plugins::{
        bridge::{BusBridge, MqttBridge},
        context::HostServices,
        handover::{GenerationLife, HandoverReport},
        lifecycle::{self, HookError, RunningPlugin},
        loader::{shown, LoadedSet},
        routes::RouteTable,
    },
};

use crate::metrics::Metrics;
use crate::reloads::ReloadLog;
use crate::sync::Unpoisoned;

/// The names of a generation's own phases in its start-up log line ([`crate::phases`]),
/// after the loading phases.
const PHASE_CREATE: &str = "create";
const PHASE_STARTUP: &str = "startup hooks";
const PHASE_APP: &str = "app";

/// What lives as long as the service, shared by every generation: the reload log and the
/// service's metrics.
#[derive(Clone)]
pub struct Lasting {
    pub reloads: Arc<ReloadLog>,
    pub metrics: Arc<Metrics>,
}

/// A started plugin set and the app serving it.
pub struct Generation {
    pub settings: Settings,
    pub served: Arc<Served>,
    host: Arc<HostServices>,
    plugins: Vec<RunningPlugin>,
    /// Shows this generation's plugins in the metrics until it is dropped.
    _metrics: crate::metrics::plugins::Tracking,
    /// Keeps what the loaded libraries need for as long as they run.
    _loaded: LoadedSet,
}

impl Generation {
    /// Creates and starts every plugin of `loaded`, then builds the app. On a failure the
    /// plugins already started are stopped again and their subscriptions cancelled.
    /// `startup_timeout` bounds each plugin's `startup` (at a reload; none at the start).
    pub async fn start(
        settings: Settings,
        loaded: LoadedSet,
        bus: &EventBus,
        mqtt: Option<&MqttBus>,
        lasting: &Lasting,
        life: GenerationLife,
        startup_timeout: Option<Duration>,
    ) -> Result<Generation, HookError> {
        log_plugins(&loaded);
        let host = Arc::new(HostServices {
            runtime: tokio::runtime::Handle::current(),
            config_json: serde_json::to_string(&settings.config)
                .expect("a configuration of strings, numbers and JSON values serialises"),
            routes: Mutex::new(RouteTable::default()),
            features: FeatureRegistry::default(),
            bus: BusBridge::new(bus.clone())
                .enabled(settings.fleet.amqp)
                .service(&settings.name),
            mqtt: mqtt.map(|mqtt| MqttBridge::new(mqtt.clone())),
            life: Arc::new(life),
            metrics: Arc::clone(&lasting.metrics),
        });
        let mut phases = loaded.phases.clone();
        let plugins = phases.time(PHASE_CREATE, || {
            off_the_workers(|| lifecycle::create_all(&loaded.plugins, &host))
        })?;
        let metrics = lasting.metrics.plugins.track(
            plugins
                .iter()
                .zip(&loaded.plugins)
                .map(|(running, plugin)| {
                    let view: Arc<dyn crate::metrics::plugins::PluginView> =
                        Arc::clone(&running.state) as _;
                    (view, plugin.build_id.clone())
                })
                .collect(),
        );
        let hooks_started = Instant::now();
        let started =
            lifecycle::startup_all(&plugins, settings.hook_timeout, startup_timeout).await;
        phases.add(PHASE_STARTUP, hooks_started.elapsed());
        if let Err(err) = started {
            host.cancel_subscriptions(settings.hook_timeout, false)
                .await;
            host.life.set_phase(phase::STOPPED);
            return Err(err);
        }
        let app = phases.time(PHASE_APP, || {
            off_the_workers(|| build_app(&settings, &loaded, &host, &plugins, &lasting.reloads))
        });
        tracing::debug!(
            "{} plugin(s) loaded and started: {phases} ({})",
            plugins.len(),
            loaded.cache
        );
        Ok(Generation {
            served: Served::new(app),
            settings,
            host,
            plugins,
            _metrics: metrics,
            _loaded: loaded,
        })
    }

    /// Waits (at most `timeout`) until every subscription this generation made is bound to
    /// its queue or refused, so that swapping to it loses no message. Skipped while the bus
    /// is not connected: nothing is bound then, for the old generation either.
    pub async fn wait_subscriptions_bound(&self, timeout: Duration) {
        if let Some(mqtt) = &self.host.mqtt {
            if !mqtt.wait_bound(timeout).await {
                tracing::warn!(
                    "Reload: not every new MQTT subscription was acknowledged within {:.1} s; going on",
                    timeout.as_secs_f64()
                );
            }
        }
        if self.host.bus.bus().health().listener.state != BusState::Connected {
            return;
        }
        if !self.host.bus.wait_bound(timeout).await {
            tracing::warn!(
                "Reload: not every new subscription was bound within {:.1} s; going on",
                timeout.as_secs_f64()
            );
        }
    }

    /// Marks this generation as serving: the listener is bound and requests come to it.
    pub fn serving(&self) {
        self.host.life.set_phase(phase::SERVING);
    }

    /// Takes the state every plugin hands to its next generation; this generation is
    /// retiring from then on (until [`serving`](Self::serving) again, if the next one fails).
    pub async fn hand_over(&self) -> GenerationLife {
        self.host.life.set_phase(phase::RETIRING);
        let (states, failed) =
            lifecycle::handover_all(&self.plugins, self.settings.hook_timeout).await;
        GenerationLife::new(states, failed)
    }

    /// The MQTT wills this generation's plugins declared, by plugin.
    pub fn mqtt_wills(&self) -> Vec<(String, crate::mqtt::Will)> {
        self.host
            .mqtt
            .as_ref()
            .map(|mqtt| mqtt.wills())
            .unwrap_or_default()
    }

    /// What this generation's plugins made of the states handed to them.
    pub fn handover_reports(&self) -> Vec<HandoverReport> {
        self.host.life.reports()
    }

    /// `before_shutdown` on every plugin.
    pub async fn before_shutdown(&self) {
        lifecycle::before_shutdown_all(&self.plugins, self.settings.hook_timeout).await;
    }

    /// Cancels this generation's subscriptions (their in-flight handlers finish), then its
    /// tasks and `shutdown` hooks. The libraries stay mapped: abi_stable never unloads them.
    pub async fn stop(self) {
        let timeout = self.settings.hook_timeout;
        // A retiring generation's queues may hold messages the next one never got.
        self.host.cancel_subscriptions(timeout, true).await;
        lifecycle::shutdown_all(&self.plugins, timeout).await;
        self.host.life.set_phase(phase::STOPPED);
        drop_off_the_workers(self).await;
    }

    /// Only the plugins' shutdown, for the final stop (the bus is already shut down).
    pub async fn stop_plugins(self) {
        self.host.life.set_phase(phase::RETIRING);
        lifecycle::shutdown_all(&self.plugins, self.settings.hook_timeout).await;
        self.host.life.set_phase(phase::STOPPED);
    }
}

/// Runs synchronous work of milliseconds (the plugins' constructors, which start their
/// runtimes; building the router and the API documents) without holding up a runtime worker:
/// during a reload the running generation serves requests on the same workers, and a request
/// queued behind this work would wait for all of it.
fn off_the_workers<T>(work: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(work),
        _ => work(),
    }
}

/// Drops a stopped generation on a blocking thread, while the next one serves: its plugins'
/// destructors are plugin code, and freeing its app (the routes, the API documents) takes a
/// while; a request queued behind either on a worker would wait for it.
async fn drop_off_the_workers(generation: Generation) {
    if let Err(err) = tokio::task::spawn_blocking(move || drop(generation)).await {
        tracing::error!("Dropping the previous plugins failed: {err}");
    }
}

fn log_plugins(loaded: &LoadedSet) {
    for skipped in &loaded.skipped {
        tracing::warn!("Skipped {skipped}");
    }
    if let Some(unusable) = &loaded.cache.unusable {
        tracing::warn!("{unusable}; each start copies the plugins anew");
    }
    for plugin in &loaded.plugins {
        tracing::info!(
            "Loaded plugin {} {} (build {}) from {}",
            plugin.name,
            plugin.version,
            plugin.build_id.as_deref().unwrap_or("unknown"),
            shown(&plugin.file)
        );
    }
}

/// The HTTP app of a started generation: its plugin routes, the built-in routes and the
/// API documentation of both.
fn build_app(
    settings: &Settings,
    loaded: &LoadedSet,
    host: &Arc<HostServices>,
    plugins: &[RunningPlugin],
    reloads: &Arc<ReloadLog>,
) -> http::App {
    let plugin_routes = host.routes.locked().freeze();
    for route in &plugin_routes {
        tracing::debug!(
            "Endpoint [{}] /{}{} (plugin {})",
            route.method,
            settings.name,
            route.path,
            route.plugin
        );
    }
    for (name, owner) in host.features.list() {
        tracing::debug!("Feature [{name}] (plugin {owner})");
    }
    let health = Arc::new(HealthSources {
        name: settings.name.clone(),
        host: Arc::clone(host),
        plugins: plugins.iter().map(|p| Arc::clone(&p.state)).collect(),
        builds: loaded
            .plugins
            .iter()
            .map(|p| (p.name.clone(), p.build_id.clone()))
            .collect(),
        reloads: Arc::clone(reloads),
    });
    let health_for_page = Arc::clone(&health);
    let buses = http::debug::DebugBuses {
        amqp: host.bus.is_enabled().then(|| host.bus.bus().clone()),
        mqtt: host.mqtt.as_ref().map(|m| m.bus().clone()),
    };
    let (publish_bus, subscribe_bus) = (buses.clone(), buses);
    let mut extra = vec![
        (
            "/_service/health".to_owned(),
            get(move || http::health::health(Arc::clone(&health))),
        ),
        (
            "/_debug/publish".to_owned(),
            post(move |body| http::debug::publish(publish_bus.clone(), body)),
        ),
        (
            "/_debug/subscribe".to_owned(),
            post(move |body| http::debug::subscribe(subscribe_bus.clone(), body)),
        ),
    ];
    let plugin_versions: Vec<(String, String)> = loaded
        .plugins
        .iter()
        .map(|p| (p.name.clone(), p.version.clone()))
        .collect();
    // Routes are frozen: the API documentation is built once, at its first use.
    let api_doc = Arc::new(http::openapi::LazyDocument::new(
        &settings.name,
        plugin_versions,
        plugin_routes.clone(),
    ));
    extra.extend(http::swagger_ui::routes(
        &settings.name,
        Arc::clone(&api_doc),
    ));
    extra.extend(operator_page(settings, api_doc, health_for_page));
    http::app(AppSpec {
        name: settings.name.clone(),
        max_body_size: settings.max_body_size,
        body_timeouts: http::body_timeout::BodyTimeouts {
            total: settings.http_body_timeout,
            idle: settings.http_body_idle_timeout,
        },
        debug: settings.debug,
        plugin_routes,
        extra,
        metrics: Arc::clone(&host.metrics),
    })
}

/// The operator page's routes (`/_service/ui`, `/_service/overview`) and its sampler, and
/// the AsyncAPI document (`/api/asyncapi.json`) it shows.
fn operator_page(
    settings: &Settings,
    api_doc: Arc<http::openapi::LazyDocument>,
    health: Arc<HealthSources>,
) -> Vec<(String, axum::routing::MethodRouter)> {
    use http::{health::BusKind, ui::overview};
    crate::window::start(Arc::clone(&health.host.metrics));
    // Each bus's broker list: the overview shows the broker in use (read live from the
    // health report) and the list; the AsyncAPI document lists every broker as a server.
    let mut brokers = Vec::new();
    if settings.fleet.amqp {
        brokers.push((BusKind::Amqp, settings.bus_config().endpoints()));
    }
    if settings.fleet.mqtt {
        brokers.push((BusKind::Mqtt, settings.mqtt_config().endpoints()));
    }
    let servers = brokers
        .iter()
        .flat_map(|(bus, list)| list.iter().map(|url| (*bus, url.clone())))
        .collect();
    let routes = overview::RouteLinks::new(&settings.name, api_doc);
    let asyncapi = Arc::new(http::asyncapi::AsyncApiSources {
        health: Arc::clone(&health),
        servers,
        vhost: settings.eventbus_vhost.clone(),
    });
    let mut page = http::ui::routes(overview::OverviewSources {
        health,
        routes,
        brokers,
        links: overview::Links::default(),
    });
    page.push((
        "/api/asyncapi.json".to_owned(),
        get(move || http::asyncapi::serve(Arc::clone(&asyncapi))),
    ));
    page
}
