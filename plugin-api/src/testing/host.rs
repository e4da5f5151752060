//! The kit's side of `HostContext`: what the plugin asks of its host, answered in-process
//! with the real host's rules and wording where a test may see them.

use std::{
    collections::BTreeMap,
    sync::{Mutex, MutexGuard, PoisonError},
};

use abi_stable::std_types::{RResult, RString, RVec};
use async_ffi::FfiFuture;
use serde_json::{Map, Value};

use crate::abi::{
    error_code, FeatureArc, Feature_TO, FfiError, FfiMetric, FfiMqttPublish, FfiPublish,
    FfiSubscribe, HostContext, HostMetricArc, HostSubscriptionArc, MessageHandlerBox,
    RouteHandlerBox, TaskHandleBox,
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
    pub features: Features,
    pub tasks: Tasks,
    pub bus: Bus,
    pub metrics: Metrics,
    /// What the plugin declared it publishes.
    pub publications: Mutex<Vec<crate::abi::asyncapi::Publication>>,
}

impl State {
    pub fn new(plugin: &str, config: &Map<String, Value>, runtime: tokio::runtime::Handle) -> Self {
        let flag = |key: &str| config.get(key).and_then(Value::as_bool).unwrap_or(false);
        State {
            plugin: plugin.to_owned(),
            service: config
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            config_json: Value::Object(config.clone()).to_string(),
            runtime,
            routes: Mutex::default(),
            features: Features::default(),
            tasks: Tasks::default(),
            bus: Bus::new(flag("amqp"), flag("mqtt")),
            metrics: Metrics::default(),
            publications: Mutex::default(),
        }
    }

    pub fn routes(&self) -> MutexGuard<'_, RouteTable> {
        lock(&self.routes)
    }

    /// Drops every handler object of the plugin (routes, subscriptions, features).
    pub fn release(&self) {
        *self.routes() = RouteTable::default();
        lock(&self.bus.subs).clear();
        lock(&self.features.map).clear();
    }
}

/// Named features, with the host's add/get semantics and wording.
#[derive(Default)]
pub(super) struct Features {
    map: Mutex<BTreeMap<String, (String, FeatureArc)>>,
}

impl Features {
    pub fn add(
        &self,
        owner: &str,
        name: &str,
        exist_ok: bool,
        feature: FeatureArc,
    ) -> Result<bool, FfiError> {
        if name.is_empty() {
            return Err(no_identifier());
        }
        let mut map = lock(&self.map);
        if let Some((existing, _)) = map.get(name) {
            if exist_ok {
                return Ok(false);
            }
            return Err(FfiError::new(
                error_code::CONFLICT,
                format!("Feature \"{name}\" already registered (by plugin {existing})"),
            ));
        }
        map.insert(name.to_owned(), (owner.to_owned(), feature));
        Ok(true)
    }

    pub fn get(&self, name: &str) -> Result<FeatureArc, FfiError> {
        if name.is_empty() {
            return Err(no_identifier());
        }
        lock(&self.map)
            .get(name)
            .map(|(_, feature)| Feature_TO::from_sabi(feature.obj.shallow_clone()))
            .ok_or_else(|| {
                FfiError::new(
                    error_code::NOT_FOUND,
                    format!("No feature found for \"{name}\""),
                )
            })
    }

    pub fn names(&self) -> Vec<String> {
        lock(&self.map).keys().cloned().collect()
    }
}

fn no_identifier() -> FfiError {
    FfiError::new(error_code::INVALID, "No feature identifier provided")
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

    fn feature_names(&self) -> RVec<RString> {
        self.0
            .features
            .names()
            .into_iter()
            .map(RString::from)
            .collect()
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
        self.0.metrics.register(&metric).into()
    }

    fn mqtt_publish(&self, message: FfiMqttPublish) -> FfiFuture<RResult<(), FfiError>> {
        let result = self.0.bus.mqtt_publish(message);
        FfiFuture::new(async move { result.into() })
    }

    fn mqtt_subscribe(
        &self,
        filter: RString,
        qos: u8,
        handler: MessageHandlerBox,
    ) -> RResult<HostSubscriptionArc, FfiError> {
        self.0.bus.mqtt_subscribe(&filter, qos, handler).into()
    }

    fn mqtt_set_will(&self, will: FfiMqttPublish) -> RResult<(), FfiError> {
        self.0.bus.set_will(will).into()
    }

    fn declare_publish(&self, declaration_json: RString) -> RResult<(), FfiError> {
        crate::abi::asyncapi::declare(&mut lock(&self.0.publications), &declaration_json).into()
    }
}
