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
//!  "reload": {"succeeded": 0, "failed": 1,
//!             "last": null | {"time": "…", "ok": false, "error": null | "…"}}}
//! ```
//! A failed reload does not make the service unhealthy: the plugins from before it serve.
//! Unhealthy (503): a plugin failed, the eventbus is in use but not connected, or a
//! subscription was refused by the broker. `disabled` means nothing has used the bus.

use std::sync::Arc;

use axum::{
    http::StatusCode,
    response::{IntoResponse, Response},
    Json,
};
use serde::Serialize;

use crate::{
    bus::{BusHealth, BusState},
    plugins::context::{HostServices, PluginState, PluginStatus},
    service::reloads::{ReloadLog, ReloadReport},
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

/// The body of `/_service/health`.
#[derive(Debug, Serialize)]
pub struct HealthReport {
    pub status: &'static str,
    pub service: String,
    pub problems: Vec<String>,
    pub plugins: Vec<PluginHealth>,
    pub features: Vec<FeatureHealth>,
    pub eventbus: BusHealth,
    pub reload: ReloadReport,
}

#[derive(Debug, Serialize)]
pub struct PluginHealth {
    pub name: String,
    pub version: String,
    pub build: Option<String>,
    pub state: &'static str,
    pub error: Option<String>,
    pub tasks: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct FeatureHealth {
    pub name: String,
    pub plugin: String,
}

fn plugin_health(plugin: &PluginState, build: Option<String>) -> PluginHealth {
    let (state, error) = match plugin.status() {
        PluginStatus::Loaded => ("loaded", None),
        PluginStatus::Running => ("running", None),
        PluginStatus::Failed(err) => ("failed", Some(err)),
        PluginStatus::Stopping => ("stopping", None),
        PluginStatus::Stopped => ("stopped", None),
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
    let problems = problems(&plugins, &eventbus);
    HealthReport {
        status: if problems.is_empty() {
            "ok"
        } else {
            "unhealthy"
        },
        service: sources.name.clone(),
        problems,
        plugins,
        features,
        eventbus,
        reload: sources.reloads.report(),
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
