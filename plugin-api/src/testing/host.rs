//! The kit's side of `HostContext`: what the plugin asks of its host, answered in-process
//! with the real host's rules and wording where a test may see them.

use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::abi::FfiFuture;
use abi_stable::std_types::{ROption, RResult, RString};

use crate::abi::{
    config::PluginConfig, features::FeatureRegistry, handover_outcome, phase, FeatureArc, FfiError,
    FfiHandover, FfiMetric, FfiMqttPublish, FfiMqttSubscribe, FfiPublish, FfiSubscribe,
    HostContext, HostMetricArc, HostSubscriptionArc, MessageHandlerBox, RouteHandlerBox,
    TaskHandleBox,
};

use super::{bus::Bus, metrics::Metrics, routes::RouteTable, tasks::Tasks};

/// Locks a mutex, ignoring poison: a test that panicked while holding one has failed
/// already, and the state behind these locks stays consistent at every step.
pub(super) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Everything the fake host keeps for its one plugin.
pub(super) struct State {
    pub plugin: String,
    pub service: String,
    pub config_json: String,
    pub runtime: tokio::runtime::Handle,
    routes: Mutex<RouteTable>,
    pub features: FeatureRegistry,
    pub tasks: Tasks,
    pub bus: Bus,
    pub metrics: Metrics,
    /// What the plugin declared it publishes.
    pub publications: Mutex<Vec<crate::abi::asyncapi::Publication>>,
    /// What the builder hands over, taken once.
    pub handed: Mutex<Option<FfiHandover>>,
    /// What the plugin made of it: (accepted, detail).
    pub handover_outcome: Mutex<Option<(bool, String)>>,
    pub phase: tokio::sync::watch::Sender<u8>,
}

impl State {
    pub fn new(plugin: &str, config: &PluginConfig, runtime: tokio::runtime::Handle) -> Self {
        let service = &config.service;
        State {
            plugin: plugin.to_owned(),
            service: service.name.clone(),
            config_json: serde_json::to_string(config).unwrap_or_default(),
            runtime,
            routes: Mutex::default(),
            features: FeatureRegistry::default(),
            tasks: Tasks::default(),
            bus: Bus::new(
                &service.name,
                service.amqp.is_some(),
                service.mqtt.is_some(),
            ),
            metrics: Metrics::default(),
            publications: Mutex::default(),
            handed: Mutex::default(),
            handover_outcome: Mutex::default(),
            phase: tokio::sync::watch::channel(phase::STARTING).0,
        }
    }

    pub fn routes(&self) -> MutexGuard<'_, RouteTable> {
        lock(&self.routes)
    }

    /// Drops every handler object of the plugin (routes, subscriptions, features).
    pub fn release(&self) {
        *self.routes() = RouteTable::default();
        lock(&self.bus.subs).clear();
        self.features.clear();
    }
}

/// The `HostContext` object the plugin's `Context` talks to.
pub(super) struct KitHost(pub std::sync::Arc<State>);

impl HostContext for KitHost {
    fn plugin_name(&self) -> RString {
        self.0.plugin.as_str().into()
    }

    fn config_json(&self) -> RString {
        self.0.config_json.as_str().into()
    }

    fn add_route(
        &self,
        method: RString,
        path: RString,
        _docs_json: RString,
        handler: RouteHandlerBox,
    ) -> RResult<(), FfiError> {
        let plugin = &self.0.plugin;
        self.0.routes().add(plugin, &method, &path, handler).into()
    }

    fn spawn(&self, name: RString, task: FfiFuture<RResult<(), RString>>) -> TaskHandleBox {
        self.0.tasks.spawn(&self.0.runtime, &name, task)
    }

    fn add_feature(
        &self,
        name: RString,
        exist_ok: bool,
        feature: FeatureArc,
    ) -> RResult<bool, FfiError> {
        self.0
            .features
            .add(&self.0.plugin, &name, exist_ok, feature)
            .into()
    }

    fn get_feature(&self, name: RString) -> RResult<FeatureArc, FfiError> {
        self.0.features.get(&name).into()
    }

    fn publish(&self, message: FfiPublish) -> FfiFuture<RResult<(), FfiError>> {
        let result = self.0.bus.publish(message);
        FfiFuture::new(async move { result.into() })
    }

    fn subscribe(
        &self,
        subscription: FfiSubscribe,
        handler: MessageHandlerBox,
    ) -> RResult<HostSubscriptionArc, FfiError> {
        self.0.bus.subscribe(subscription, handler).into()
    }

    /// Only the SDK's repeater loop calls this, and the kit steps repeaters itself.
    fn repeater_failed(&self, _name: RString) {}

    fn metric(&self, metric: FfiMetric) -> RResult<HostMetricArc, FfiError> {
        self.0.metrics.register(&self.0.plugin, &metric).into()
    }

    fn mqtt_publish(&self, message: FfiMqttPublish) -> FfiFuture<RResult<(), FfiError>> {
        let result = self.0.bus.mqtt_publish(message);
        FfiFuture::new(async move { result.into() })
    }

    fn mqtt_subscribe(
        &self,
        subscription: FfiMqttSubscribe,
        handler: MessageHandlerBox,
    ) -> RResult<HostSubscriptionArc, FfiError> {
        self.0.bus.mqtt_subscribe(subscription, handler).into()
    }

    fn mqtt_set_will(&self, will: FfiMqttPublish) -> RResult<(), FfiError> {
        self.0.bus.set_will(will).into()
    }

    fn declare_publish(&self, declaration_json: RString) -> RResult<(), FfiError> {
        crate::abi::asyncapi::declare(&mut lock(&self.0.publications), &declaration_json).into()
    }

    fn handed_over(&self) -> ROption<FfiHandover> {
        lock(&self.0.handed).take().into()
    }

    fn handover_outcome(&self, outcome: u8, detail: RString) {
        let accepted = outcome == handover_outcome::ACCEPTED;
        *lock(&self.0.handover_outcome) = Some((accepted, detail.into_string()));
    }

    fn phase(&self) -> u8 {
        *self.0.phase.borrow()
    }

    fn phase_changed(&self, seen: u8) -> FfiFuture<u8> {
        let mut rx = self.0.phase.subscribe();
        FfiFuture::new(async move {
            match rx.wait_for(|now| *now != seen).await {
                Ok(now) => *now,
                Err(_) => phase::STOPPED,
            }
        })
    }
}
