//! `GET /{name}/_service/health`: the state of every part, 503 while a needed part is down.
//!
//! ```json
//! {"status": "ok" | "unhealthy",
//!  "service": "my_service",
//!  "problems": ["plugin device-plugin failed: …", "eventbus: connecting", …],
//!  "plugins": [{"name": "device-plugin", "version": "0.1.0", "build": "15a7…" | null,
//!               "state": "loaded" | "running" | "failed" | "stopping" | "stopped",
//!               "error": null | "…", "tasks": ["device-update", …]}],
//!  "features": [{"name": "device", "plugin": "device-plugin"}],
//!  "eventbus": {"state": "disabled" | "connecting" | "connected", "reconnects": 0,
//!               "last_error": null | "…", "listener": {…}, "publisher": {…},
//!               "subscriptions": [{"id": 1, "plugin": "history-plugin" | null, "exchange": "brewcast",
//!                                  "routing": "#", "exchange_type": "topic",
//!                                  "state": "pending" | "active" | "failed",
//!                                  "queue": "amq.gen-…" | null, "error": null | "…"}]},
//!  "buses": ["amqp", "mqtt"],
//!  "mqtt": null | {"state": "disabled" | "connecting" | "connected" | "closed",
//!           "broker": "mqtt://eventbus:1883", "reconnects": 0, "last_error": null | "…",
//!           "wills": [{"plugin": "device-plugin", "topic": "brewcast/state/my_service",
//!                      "held": true}],
//!           "subscriptions": [{"id": 1, "filter": "brewcast/#", "plugin": "history-plugin" | null,
//!                              "state": "pending" | "active" | "failed", "error": null | "…",
//!                              "dropped": 0, "qos": 0 | 1}]},
//!  "reload": {"succeeded": 0, "failed": 1, "waiting": null | "libx.so is not ready: …",
//!             "last": null | {"time": "…", "ok": false, "error": null | "…",
//!                             "handovers": [{"plugin": "history-plugin",
//!                                            "outcome": "accepted" | "refused" | "failed" | "unread",
//!                                            "detail": null | "…"}]}}}
//! ```
//! A failed reload does not make the service unhealthy: the plugins from before it serve.
//! Unhealthy (503): a plugin failed, the eventbus is in use but not connected, or a
//! subscription was refused by the broker; the MQTT eventbus, when the options selected it,
//! is not connected or refused a subscription. `disabled` means nothing has used the bus.
//! `buses` names the eventbuses the options selected. A will is `held` while the broker
//! holds it (its connection is acknowledged): what the broker would announce if the service
//! died now.

use std::sync::Arc;

use axum::{
    http::StatusCode,
    response::{IntoResponse, Response},
    Json,
};
use schemars::JsonSchema;
use serde::Serialize;

use crate::{
    bus::{BusHealth, BusState},
    mqtt::{MqttConnectionHealth, MqttHealth, MqttState},
    plugins::context::{HostServices, PluginState, PluginStatus},
    reloads::{ReloadLog, ReloadReport},
};

/// What the health report reads.
pub struct HealthSources {
    pub name: String,
    pub host: Arc<HostServices>,
    pub plugins: Vec<Arc<PluginState>>,
    /// Each plugin's build id, by plugin name.
    pub builds: Vec<(String, Option<String>)>,
    pub reloads: Arc<ReloadLog>,
}

/// `GET /_service/health`: the state of every part of the service.
#[derive(Debug, Serialize, JsonSchema)]
pub struct HealthReport {
    pub status: HealthStatus,
    /// The service name.
    pub service: String,
    /// Why the service is unhealthy, one line each; empty when it is not.
    pub problems: Vec<String>,
    pub plugins: Vec<PluginHealth>,
    pub features: Vec<FeatureHealth>,
    /// The eventbuses the options selected.
    pub buses: Vec<BusKind>,
    pub eventbus: BusHealth,
    /// Null when the service does not use MQTT.
    pub mqtt: Option<MqttHealth>,
    pub reload: ReloadReport,
}

/// The overall state: `unhealthy` (answered with 503) while a needed part is down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum HealthStatus {
    Ok,
    Unhealthy,
}

/// An eventbus the service uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum BusKind {
    Amqp,
    Mqtt,
}

/// One plugin.
#[derive(Debug, Serialize, JsonSchema)]
pub struct PluginHealth {
    pub name: String,
    /// The plugin crate's version.
    pub version: String,
    /// Which build of that version: the library's GNU build id in hex, or `sha256:<hex>` of
    /// its mapped bytes when it was linked without one.
    pub build: Option<String>,
    pub state: PluginStateName,
    /// Why the plugin failed, if it did.
    pub error: Option<String>,
    /// Names of its running background tasks.
    pub tasks: Vec<String>,
}

/// Where a plugin is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum PluginStateName {
    Loaded,
    Running,
    Failed,
    Stopping,
    Stopped,
}

/// One shared feature.
#[derive(Debug, Serialize, JsonSchema)]
pub struct FeatureHealth {
    pub name: String,
    /// The plugin that provides it.
    pub plugin: String,
}

fn plugin_health(plugin: &PluginState, build: Option<String>) -> PluginHealth {
    let (state, error) = match plugin.status() {
        PluginStatus::Loaded => (PluginStateName::Loaded, None),
        PluginStatus::Running => (PluginStateName::Running, None),
        PluginStatus::Failed(err) => (PluginStateName::Failed, Some(err)),
        PluginStatus::Stopping => (PluginStateName::Stopping, None),
        PluginStatus::Stopped => (PluginStateName::Stopped, None),
    };
    PluginHealth {
        name: plugin.name.clone(),
        version: plugin.version.clone(),
        build,
        state,
        error,
        tasks: plugin.tasks.running(),
    }
}

/// Why the service is unhealthy, one line each; empty when it is healthy.
fn problems(plugins: &[PluginHealth], bus: &BusHealth) -> Vec<String> {
    let mut problems: Vec<String> = plugins
        .iter()
        .filter_map(|p| {
            let err = p.error.as_deref()?;
            Some(format!("plugin {} failed: {err}", p.name))
        })
        .collect();
    if bus.state == BusState::Connecting {
        let reason = bus
            .last_error
            .as_deref()
            .map(|e| format!(" ({e})"))
            .unwrap_or_default();
        problems.push(format!("eventbus: connecting{reason}"));
    }
    problems.extend(
        bus.subscriptions
            .iter()
            .filter(|s| s.state == "failed")
            .map(|s| {
                format!(
                    "eventbus subscription <{} @ {}> failed: {}",
                    s.routing,
                    s.exchange,
                    s.error.as_deref().unwrap_or("")
                )
            }),
    );
    problems
}

pub fn report(sources: &HealthSources) -> HealthReport {
    let plugins: Vec<PluginHealth> = sources
        .plugins
        .iter()
        .map(|plugin| {
            let build = sources
                .builds
                .iter()
                .find(|(name, _)| *name == plugin.name)
                .and_then(|(_, build)| build.clone());
            plugin_health(plugin, build)
        })
        .collect();
    let features = sources
        .host
        .features
        .list()
        .into_iter()
        .map(|(name, plugin)| FeatureHealth { name, plugin })
        .collect();
    let eventbus = sources.host.bus.bus().health();
    let mqtt = sources
        .host
        .mqtt
        .as_ref()
        .map(|bridge| bridge.bus().health());
    let mut problems = problems(&plugins, &eventbus);
    if let Some(mqtt) = &mqtt {
        mqtt_problems(mqtt, &mut problems);
    }
    let mut buses = Vec::new();
    if sources.host.bus.is_enabled() {
        buses.push(BusKind::Amqp);
    }
    if mqtt.is_some() {
        buses.push(BusKind::Mqtt);
    }
    HealthReport {
        status: if problems.is_empty() {
            HealthStatus::Ok
        } else {
            HealthStatus::Unhealthy
        },
        service: sources.name.clone(),
        problems,
        plugins,
        features,
        buses,
        eventbus,
        mqtt,
        reload: sources.reloads.report(),
    }
}

/// An MQTT connection that is not up, and refused subscriptions.
fn mqtt_problems(health: &MqttHealth, problems: &mut Vec<String>) {
    connection_problems("mqtt", &health.connection, problems);
    if let Some(session) = &health.session {
        let label = format!("mqtt session {}", session.client_id);
        connection_problems(&label, &session.connection, problems);
    }
}

/// `<label>: <state> (<last error>)` for a connection that is not up, and a line for each
/// refused subscription on it.
fn connection_problems(label: &str, health: &MqttConnectionHealth, problems: &mut Vec<String>) {
    if health.state != MqttState::Connected {
        let state = serde_json::to_value(health.state).unwrap_or_default();
        problems.push(format!(
            "{label}: {}{}",
            state.as_str().unwrap_or("down"),
            health
                .last_error
                .as_deref()
                .map(|e| format!(" ({e})"))
                .unwrap_or_default()
        ));
    }
    for sub in &health.subscriptions {
        if let Some(error) = &sub.error {
            problems.push(format!(
                "mqtt subscription <{}> failed: {error}",
                sub.filter
            ));
        }
    }
}

pub async fn health(sources: Arc<HealthSources>) -> Response {
    let report = report(&sources);
    let status = if report.problems.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(report)).into_response()
}
