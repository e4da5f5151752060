//! Interfaces the host implements and hands to plugins.

use crate::FfiFuture;
use abi_stable::{
    sabi_trait,
    std_types::{RArc, RBox, ROption, RResult, RStr, RString},
};

use super::plugin::{FeatureArc, MessageHandlerBox, RouteHandlerBox};
use super::{
    FfiError, FfiHandover, FfiLogRecord, FfiMetric, FfiMqttPublish, FfiMqttSubscribe, FfiPublish,
    FfiSubscribe,
};

/// Where a plugin's log events go. Handed over once, before anything else runs.
#[sabi_trait]
pub trait HostLogger: Send + Sync {
    /// Whether an event at `level` for `target` would be recorded (cached per call site).
    fn enabled(&self, level: u8, target: RStr<'_>) -> bool;
    /// The most verbose level anything is recorded at.
    fn max_level(&self) -> u8;
    #[sabi(last_prefix_field)]
    fn log(&self, record: FfiLogRecord);
}
pub type HostLoggerBox = HostLogger_TO<'static, RBox<()>>;

/// A task the host runs for a plugin.
#[sabi_trait]
pub trait TaskHandle: Send + Sync {
    /// Cancel the task; a no-op if it finished.
    fn cancel(&self);
    #[sabi(last_prefix_field)]
    fn is_finished(&self) -> bool;
}
pub type TaskHandleBox = TaskHandle_TO<'static, RBox<()>>;

/// A live eventbus subscription, owned by the host.
#[sabi_trait]
pub trait HostSubscription: Send + Sync {
    /// The exchange; empty for an MQTT subscription.
    fn exchange(&self) -> RString;
    /// The routing key (pattern), or an MQTT subscription's topic filter.
    fn routing(&self) -> RString;
    /// Replace the handler; the next message goes to the new one.
    fn set_handler(&self, handler: MessageHandlerBox);
    /// Stop receiving; not restored after a reconnect. A plain subscription's queue goes
    /// away; a shared or durable one's stays, for the other consumers and the next start.
    fn cancel(&self);
    fn is_cancelled(&self) -> bool;
    /// Resolves once the subscription is bound (its queue receives what is published from
    /// then on), bounded by the host's publish timeout. Errors: `REJECTED` when the broker
    /// refused the declaration (e.g. an exchange of another type), `UNAVAILABLE` when the
    /// broker cannot be reached, `TIMEOUT`, `OTHER` after a cancel.
    #[sabi(last_prefix_field)]
    fn ready(&self) -> FfiFuture<RResult<(), FfiError>>;
}
pub type HostSubscriptionArc = HostSubscription_TO<'static, RArc<()>>;

/// Everything a plugin can ask of the host. One per plugin, shared by all its tasks.
#[sabi_trait]
pub trait HostContext: Send + Sync {
    /// The plugin's own name.
    fn plugin_name(&self) -> RString;
    /// Parsed configuration as a JSON object: the common options and every declared argument.
    fn config_json(&self) -> RString;
    /// Register a route. `path` is relative to the service prefix; `docs_json` is an OpenAPI
    /// operation fragment (may be empty).
    fn add_route(
        &self,
        method: RString,
        path: RString,
        docs_json: RString,
        handler: RouteHandlerBox,
    ) -> RResult<(), FfiError>;
    /// Run `task` on the host runtime until it ends or the plugin shuts down.
    fn spawn(&self, name: RString, task: FfiFuture<RResult<(), RString>>) -> TaskHandleBox;
    /// A repeater (a task the SDK runs in a loop, named `name`) failed one run and goes on
    /// after a back-off. The host counts it in its metrics; the SDK logs the error itself.
    fn repeater_failed(&self, name: RString);
    /// Register a named feature other plugins can look up.
    fn add_feature(
        &self,
        name: RString,
        exist_ok: bool,
        feature: FeatureArc,
    ) -> RResult<bool, FfiError>;
    /// Look up a named feature.
    fn get_feature(&self, name: RString) -> RResult<FeatureArc, FfiError>;
    /// Publish to the eventbus; resolves once the broker confirmed.
    fn publish(&self, message: FfiPublish) -> FfiFuture<RResult<(), FfiError>>;
    /// Subscribe to the eventbus. Never fails for broker reasons: the host retries. `INVALID`
    /// for names or sharing options the rules of [`crate::sharing`] refuse.
    fn subscribe(
        &self,
        subscription: FfiSubscribe,
        handler: MessageHandlerBox,
    ) -> RResult<HostSubscriptionArc, FfiError>;
    /// Register one series of a plugin metric, or find it again (same name, kind and labels:
    /// the same series, so a reloaded plugin goes on counting). `INVALID` for a bad name,
    /// label or bucket list, or a name already used with another kind or other label names.
    fn metric(&self, metric: FfiMetric) -> RResult<HostMetricArc, FfiError>;
    /// Publish on the MQTT eventbus; resolves once sent (QoS 0) or acknowledged (QoS 1).
    /// Errors: `UNAVAILABLE` (MQTT not in use, or the broker down: at once), `INVALID` (a
    /// topic, QoS or size the host refuses; nothing sent), `TIMEOUT`.
    fn mqtt_publish(&self, message: FfiMqttPublish) -> FfiFuture<RResult<(), FfiError>>;
    /// Subscribe to an MQTT topic filter. The handler gets the topic as `routing_key` and the
    /// raw payload as `body`; the subscription's `routing()` is the filter as subscribed (a
    /// shared one's `$share/<group>/<filter>`) and its `exchange()` is empty. Errors:
    /// `UNAVAILABLE` (MQTT not in use), `INVALID`.
    fn mqtt_subscribe(
        &self,
        subscription: FfiMqttSubscribe,
        handler: MessageHandlerBox,
    ) -> RResult<HostSubscriptionArc, FfiError>;
    /// This plugin's part of the service's MQTT will (`qos` is ignored): announced by the
    /// broker when the service dies, published by the host at a clean stop. An empty topic
    /// removes it. Each plugin has its own will on its own topic: `CONFLICT` when another
    /// plugin's will has that topic already.
    fn mqtt_set_will(&self, will: FfiMqttPublish) -> RResult<(), FfiError>;
    /// What the previous generation of this plugin handed over at a hot swap; `RNone` at the
    /// first start, when it handed nothing, or when it is asked a second time.
    fn handed_over(&self) -> ROption<FfiHandover>;
    /// What the plugin made of the handover (one of
    /// [`handover_outcome`](crate::handover_outcome)), for the log and the reload's health.
    fn handover_outcome(&self, outcome: u8, detail: RString);
    /// The generation's [`phase`](crate::phase) now.
    fn phase(&self) -> u8;
    /// Resolves with the phase once it is no longer `seen`.
    fn phase_changed(&self, seen: u8) -> FfiFuture<u8>;
    /// Declares what the plugin publishes, for the AsyncAPI document: a
    /// [`Publication`](crate::asyncapi::Publication) as JSON. `INVALID` when it breaks the
    /// rule of [`crate::asyncapi`] or the plugin declared too many.
    #[sabi(last_prefix_field)]
    fn declare_publish(&self, declaration_json: RString) -> RResult<(), FfiError>;
}
pub type HostContextArc = HostContext_TO<'static, RArc<()>>;

/// One series of a plugin metric, kept by the host. Calls that do not fit its kind are
/// ignored (the SDK's types never make them).
#[sabi_trait]
pub trait HostMetric: Send + Sync {
    /// Counter or gauge: add `value` (a counter ignores a negative or non-finite one).
    fn add(&self, value: f64);
    /// Gauge: set to `value`.
    fn set(&self, value: f64);
    /// Histogram: record `value`.
    #[sabi(last_prefix_field)]
    fn observe(&self, value: f64);
}
pub type HostMetricArc = HostMetric_TO<'static, RArc<()>>;
