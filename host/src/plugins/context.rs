//! The host side of `HostContext`: what one plugin can ask of the host.

use std::sync::{Arc, Mutex};

use abi_stable::{
    sabi_trait::TD_Opaque,
    std_types::{ROption, RResult, RString},
};
use plugin_abi::FfiFuture;
use plugin_abi::{
    error_code, metric_kind, FeatureArc, FfiError, FfiHandover, FfiMetric, FfiMqttPublish,
    FfiMqttSubscribe, FfiPublish, FfiSubscribe, HostContext, HostMetric, HostMetricArc,
    HostMetric_TO, HostSubscriptionArc, MessageHandlerBox, RouteHandlerBox, TaskHandleBox,
};
use tokio::runtime::Handle;

use super::bridge::{self, BusBridge, MqttBridge};
use super::handover::GenerationLife;
use super::{routes::RouteTable, tasks::TaskSet};
use crate::metrics::{
    registered::{MetricError, Registered},
    Metrics,
};
use crate::sync::Unpoisoned;
use plugin_abi::features::FeatureRegistry;

/// Services shared by every plugin of the host.
pub struct HostServices {
    /// The host runtime. Plugin calls may arrive on a plugin's own runtime thread, where
    /// the host's tokio context is absent, so host work is always spawned through this.
    pub runtime: Handle,
    pub config_json: String,
    pub routes: Mutex<RouteTable>,
    pub features: FeatureRegistry,
    pub bus: BusBridge,
    /// The MQTT eventbus, when the options selected it.
    pub mqtt: Option<MqttBridge>,
    /// The generation's phase and the states handed to it.
    pub life: Arc<GenerationLife>,
    /// The service's metrics: plugin tasks, repeaters and registered metrics count here.
    pub metrics: Arc<Metrics>,
}

impl HostServices {
    /// Cancels the subscriptions the generation made on both buses and waits (at most
    /// `timeout`, for both at once) for their in-flight handlers; `drain`: see
    /// [`crate::eventbus::Subscription::retire`].
    pub async fn cancel_subscriptions(&self, timeout: std::time::Duration, drain: bool) {
        let mqtt = async {
            if let Some(mqtt) = &self.mqtt {
                mqtt.cancel_all(timeout, drain).await;
            }
        };
        tokio::join!(self.bus.cancel_all(timeout, drain), mqtt);
    }
}

/// Where a plugin is in its life, for logs and the health report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PluginStatus {
    Loaded,
    Running,
    Failed(String),
    Stopping,
    Stopped,
}

/// Per-plugin state the host keeps.
pub struct PluginState {
    pub name: String,
    pub version: String,
    pub tasks: TaskSet,
    pub status: Mutex<PluginStatus>,
    /// What the plugin declared it publishes, for the AsyncAPI document.
    pub publications: Mutex<Vec<plugin_abi::asyncapi::Publication>>,
}

impl crate::metrics::plugins::PluginView for PluginState {
    fn name(&self) -> &str {
        &self.name
    }

    fn version(&self) -> &str {
        &self.version
    }

    fn state_name(&self) -> &'static str {
        match self.status() {
            PluginStatus::Loaded => "loaded",
            PluginStatus::Running => "running",
            PluginStatus::Failed(_) => "failed",
            PluginStatus::Stopping => "stopping",
            PluginStatus::Stopped => "stopped",
        }
    }

    fn running_tasks(&self) -> usize {
        self.tasks.running().len()
    }
}

impl PluginState {
    pub fn new(name: &str, version: &str) -> Self {
        PluginState {
            name: name.to_owned(),
            version: version.to_owned(),
            tasks: TaskSet::default(),
            status: Mutex::new(PluginStatus::Loaded),
            publications: Mutex::default(),
        }
    }

    pub fn set_status(&self, status: PluginStatus) {
        *self.status.locked() = status;
    }

    pub fn status(&self) -> PluginStatus {
        self.status.locked().clone()
    }
}

/// The context object handed to one plugin.
pub struct PluginContext {
    pub host: Arc<HostServices>,
    pub plugin: Arc<PluginState>,
}

impl HostContext for PluginContext {
    fn plugin_name(&self) -> RString {
        self.plugin.name.as_str().into()
    }

    fn config_json(&self) -> RString {
        self.host.config_json.as_str().into()
    }

    fn add_route(
        &self,
        method: RString,
        path: RString,
        docs_json: RString,
        handler: RouteHandlerBox,
    ) -> RResult<(), FfiError> {
        let mut routes = self.host.routes.locked();
        let result = routes.add(&self.plugin.name, &method, &path, &docs_json, handler);
        if let Err(err) = &result {
            tracing::error!("plugin {}: {}", self.plugin.name, err.message);
        }
        result.into()
    }

    fn spawn(&self, name: RString, task: FfiFuture<RResult<(), RString>>) -> TaskHandleBox {
        self.plugin.tasks.spawn(
            &self.host.runtime,
            &self.host.metrics,
            &self.plugin.name,
            &name,
            task,
        )
    }

    fn repeater_failed(&self, name: RString) {
        tracing::debug!(
            "plugin {}: a run of repeater {name} failed",
            self.plugin.name
        );
        self.host.metrics.plugins.repeater_failed(&self.plugin.name);
    }

    fn add_feature(
        &self,
        name: RString,
        exist_ok: bool,
        feature: FeatureArc,
    ) -> RResult<bool, FfiError> {
        self.host
            .features
            .add(&self.plugin.name, &name, exist_ok, feature)
            .into()
    }

    fn get_feature(&self, name: RString) -> RResult<FeatureArc, FfiError> {
        self.host.features.get(&name).into()
    }

    fn publish(&self, message: FfiPublish) -> FfiFuture<RResult<(), FfiError>> {
        self.host.bus.publish(&self.host.runtime, message)
    }

    fn subscribe(
        &self,
        subscription: FfiSubscribe,
        handler: MessageHandlerBox,
    ) -> RResult<HostSubscriptionArc, FfiError> {
        self.host
            .bus
            .subscribe(&self.plugin.name, subscription, handler)
            .into()
    }

    fn metric(&self, metric: FfiMetric) -> RResult<HostMetricArc, FfiError> {
        plugin_metric(&self.host.metrics.registered, &self.plugin.name, &metric)
            .map_err(|err| {
                tracing::error!("plugin {}: {err}", self.plugin.name);
                FfiError::new(error_code::INVALID, err.to_string())
            })
            .into()
    }

    fn mqtt_publish(&self, message: FfiMqttPublish) -> FfiFuture<RResult<(), FfiError>> {
        bridge::mqtt::publish(
            self.host.mqtt.as_ref(),
            &self.plugin.name,
            &self.host.runtime,
            message,
        )
    }

    fn mqtt_subscribe(
        &self,
        subscription: FfiMqttSubscribe,
        handler: MessageHandlerBox,
    ) -> RResult<HostSubscriptionArc, FfiError> {
        bridge::mqtt::subscribe(
            self.host.mqtt.as_ref(),
            &self.plugin.name,
            subscription,
            handler,
        )
        .into()
    }

    fn mqtt_set_will(&self, will: FfiMqttPublish) -> RResult<(), FfiError> {
        bridge::mqtt::set_will(self.host.mqtt.as_ref(), &self.plugin.name, will).into()
    }

    fn handed_over(&self) -> ROption<FfiHandover> {
        self.host.life.take(&self.plugin.name).into()
    }

    fn handover_outcome(&self, outcome: u8, detail: RString) {
        let detail: String = detail.chars().take(MAX_DETAIL_CHARS).collect();
        self.host.life.report(
            &self.plugin.name,
            outcome,
            &detail.escape_debug().to_string(),
        );
    }

    fn phase(&self) -> u8 {
        self.host.life.phase()
    }

    fn phase_changed(&self, seen: u8) -> FfiFuture<u8> {
        FfiFuture::new(self.host.life.changed(seen))
    }

    fn declare_publish(&self, declaration_json: RString) -> RResult<(), FfiError> {
        let mut declared = self.plugin.publications.locked();
        let result = plugin_abi::asyncapi::declare(&mut declared, &declaration_json);
        if let Err(err) = &result {
            tracing::error!("plugin {}: {}", self.plugin.name, err.message);
        }
        result.into()
    }
}

/// How much of a plugin's reason for refusing a handover the log and health keep.
const MAX_DETAIL_CHARS: usize = 500;

/// Registers (or finds) a plugin metric's series and wraps it for the plugin.
fn plugin_metric(
    registered: &Registered,
    plugin: &str,
    metric: &FfiMetric,
) -> Result<HostMetricArc, MetricError> {
    use crate::metrics::registered::{Kind, Spec};
    let kind = match metric.kind {
        metric_kind::COUNTER => Kind::Counter,
        metric_kind::GAUGE => Kind::Gauge,
        metric_kind::HISTOGRAM => Kind::Histogram,
        other => return Err(MetricError::UnknownKind(other)),
    };
    if metric.label_names.len() != metric.label_values.len() {
        return Err(MetricError::UnpairedLabels);
    }
    let spec = Spec {
        plugin,
        kind,
        name: &metric.name,
        help: &metric.help,
        labels: metric
            .label_names
            .iter()
            .map(RString::as_str)
            .zip(metric.label_values.iter().map(RString::as_str))
            .collect(),
        buckets: &metric.buckets,
    };
    let series = registered.series(&spec)?;
    Ok(HostMetric_TO::from_ptr(
        abi_stable::std_types::RArc::new(MetricHandle(series)),
        TD_Opaque,
    ))
}

/// A plugin's handle on one series.
struct MetricHandle(crate::metrics::registered::Series);

impl HostMetric for MetricHandle {
    fn add(&self, value: f64) {
        self.0.add(value);
    }

    fn set(&self, value: f64) {
        self.0.set(value);
    }

    fn observe(&self, value: f64) {
        self.0.observe(value);
    }
}
