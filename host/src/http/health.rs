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
//!           "will": null | "brewcast/state/my_service",
//!           "subscriptions": [{"id": 1, "filter": "brewcast/#", "plugin": "history-plugin" | null,
//!                              "state": "pending" | "active" | "failed", "error": null | "…",
//!                              "dropped": 0}]},
//!  "reload": {"succeeded": 0, "failed": 1,
//!             "last": null | {"time": "…", "ok": false, "error": null | "…"}}}
//! ```
//! A failed reload does not make the service unhealthy: the plugins from before it serve.
//! Unhealthy (503): a plugin failed, the eventbus is in use but not connected, or a
//! subscription was refused by the broker; the MQTT eventbus, when the options selected it,
//! is not connected or refused a subscription. `disabled` means nothing has used the bus.
//! `buses` names the eventbuses the options selected.

use std::sync::Arc;

use axum::{
    http::StatusCode,
    response::{IntoResponse, Response},
    Json,
};
use serde_json::{json, Value};

use crate::{
    bus::BusState,
    mqtt::{MqttHealth, MqttState},
    plugins::context::{HostServices, PluginState, PluginStatus},
    service::reloads::ReloadLog,
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

pub fn report(sources: &HealthSources) -> (bool, Value) {
    let mut problems = Vec::new();
    let plugins: Vec<Value> = sources
        .plugins
        .iter()
        .map(|plugin| {
            let (state, error) = match plugin.status() {
                PluginStatus::Loaded => ("loaded", None),
                PluginStatus::Running => ("running", None),
                PluginStatus::Failed(err) => {
                    problems.push(format!("plugin {} failed: {err}", plugin.name));
                    ("failed", Some(err))
                }
                PluginStatus::Stopping => ("stopping", None),
                PluginStatus::Stopped => ("stopped", None),
            };
            let build = sources
                .builds
                .iter()
                .find(|(name, _)| *name == plugin.name)
                .and_then(|(_, build)| build.clone());
            json!({
                "name": plugin.name,
                "version": plugin.version,
                "build": build,
                "state": state,
                "error": error,
                "tasks": plugin.tasks.running(),
            })
        })
        .collect();
    let features: Vec<Value> = sources
        .host
        .features
        .list()
        .into_iter()
        .map(|(name, plugin)| json!({"name": name, "plugin": plugin}))
        .collect();

    let bridge = &sources.host.bus;
    let bus = bridge.bus().health();
    if bus.state == BusState::Connecting {
        problems.push(format!(
            "eventbus: connecting{}",
            bus.last_error
                .as_deref()
                .map(|e| format!(" ({e})"))
                .unwrap_or_default()
        ));
    }
    let mut eventbus = serde_json::to_value(&bus).unwrap_or(Value::Null);
    if let Some(subs) = eventbus
        .get_mut("subscriptions")
        .and_then(Value::as_array_mut)
    {
        for sub in subs {
            if sub["state"] == "failed" {
                problems.push(format!(
                    "eventbus subscription <{} @ {}> failed: {}",
                    sub["routing"].as_str().unwrap_or(""),
                    sub["exchange"].as_str().unwrap_or(""),
                    sub["error"].as_str().unwrap_or("")
                ));
            }
            let owner = sub["id"].as_u64().and_then(|id| bridge.owner(id));
            sub["plugin"] = owner.map_or(Value::Null, Value::String);
        }
    }
    let mqtt = sources.host.mqtt.as_ref().map(|bridge| {
        let health = bridge.bus().health();
        mqtt_problems(&health, &mut problems);
        serde_json::to_value(&health).unwrap_or(Value::Null)
    });
    let mut buses = Vec::new();
    if sources.host.bus.is_enabled() {
        buses.push("amqp");
    }
    if mqtt.is_some() {
        buses.push("mqtt");
    }
    let healthy = problems.is_empty();
    let body = json!({
        "status": if healthy { "ok" } else { "unhealthy" },
        "service": sources.name,
        "problems": problems,
        "plugins": plugins,
        "features": features,
        "buses": buses,
        "eventbus": eventbus,
        "mqtt": mqtt,
        "reload": sources.reloads.report(),
    });
    (healthy, body)
}

/// An MQTT connection that is not up, and refused subscriptions.
fn mqtt_problems(health: &MqttHealth, problems: &mut Vec<String>) {
    if health.state != MqttState::Connected {
        let state = serde_json::to_value(health.state).unwrap_or(Value::Null);
        problems.push(format!(
            "mqtt: {}{}",
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
    let (healthy, body) = report(&sources);
    let status = if healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}
