//! The MQTT calls of a plugin: publish, subscribe and its will. A generation's bridge also
//! records the wills its plugins declared, so that a reload can hand the broker the new
//! generation's before it swaps.

use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use abi_stable::std_types::RResult;
use futures::{future::BoxFuture, FutureExt};
use plugin_abi::FfiFuture;
use plugin_abi::{
    error_code, FfiError, FfiMqttPublish, FfiMqttSubscribe, HostSubscriptionArc, MessageHandlerBox,
};
use tokio::runtime::Handle;

use super::{ffi_error, host_subscription, Binder, InRuntime, Made, PluginSink};
use crate::eventbus::Subscription;
use crate::mqtt::{MqttBus, Will};
use crate::sync::Unpoisoned;

/// Why the MQTT eventbus refuses a call when the options did not select it.
pub const MQTT_NOT_IN_USE: &str =
    "the MQTT eventbus is not in use: start the service with --mqtt-* options";

/// The number of the next generation's bridge.
static GENERATIONS: AtomicU64 = AtomicU64::new(1);

/// A generation's view of the MQTT bus.
pub struct MqttBridge {
    bus: MqttBus,
    /// This generation's number: its durable subscriptions take over the earlier
    /// generations' (see `crate::mqtt::durable`).
    generation: u64,
    binder: Arc<dyn Binder>,
    made: Made,
    /// The wills this generation's plugins declared, by plugin, in declaration order.
    wills: Mutex<Vec<(String, Will)>>,
}

impl Binder for MqttBus {
    fn runtime(&self) -> Option<Handle> {
        Handle::try_current()
            .ok()
            .or_else(|| MqttBus::runtime(self))
    }

    fn ready(&self, sub: Subscription) -> BoxFuture<'static, Result<(), FfiError>> {
        let bus = self.clone();
        async move { bus.ready(&sub).await.map_err(|err| ffi_error(&err)) }.boxed()
    }
}

impl MqttBridge {
    pub fn new(bus: MqttBus) -> Self {
        MqttBridge {
            generation: GENERATIONS.fetch_add(1, Ordering::Relaxed),
            binder: Arc::new(bus.clone()),
            bus,
            made: Made::default(),
            wills: Mutex::new(Vec::new()),
        }
    }

    pub fn bus(&self) -> &MqttBus {
        &self.bus
    }

    /// Waits (at most `timeout`) until every live subscription is acknowledged or refused;
    /// `false` on timeout. Returns at once while the bus is not connected.
    pub async fn wait_bound(&self, timeout: Duration) -> bool {
        if !self.bus.is_connected() {
            return true;
        }
        self.made.wait_bound(timeout).await
    }

    /// Cancels every subscription this generation made: nothing more reaches its handlers;
    /// waits (at most `timeout`) for a message already in a handler. `drain` is for the
    /// transports with a broker-side queue; MQTT has none to hand over (a durable
    /// subscription was taken over by the next generation already, or is unsubscribed).
    pub async fn cancel_all(&self, timeout: Duration, drain: bool) {
        self.made.cancel_all(timeout, drain).await
    }

    /// The wills this generation's plugins declared: what the broker must hold for it.
    pub fn wills(&self) -> Vec<(String, Will)> {
        self.wills.locked().clone()
    }

    /// Sets (or with `None` removes) `plugin`'s will. A topic another plugin's will has is
    /// refused (`CONFLICT`): one will per topic, never a silent replacement.
    fn set_will(&self, plugin: &str, will: Option<Will>) -> Result<(), FfiError> {
        let mut wills = self.wills.locked();
        if let Some(will) = &will {
            if let Some((owner, _)) = wills
                .iter()
                .find(|(p, w)| p != plugin && w.topic == will.topic)
            {
                let message = format!(
                    "the MQTT will on '{}' is plugin {owner}'s; each plugin declares its own \
                     will on its own topic, e.g. '<state-topic>/<service>/{plugin}'",
                    will.topic.escape_debug()
                );
                tracing::error!("plugin {plugin}: {message}");
                return Err(FfiError::new(error_code::CONFLICT, message));
            }
        }
        let index = wills.iter().position(|(p, _)| p == plugin);
        match (index, will) {
            (Some(i), Some(will)) => {
                tracing::info!(
                    "plugin {plugin}: its MQTT will on '{}' replaces its will on '{}'",
                    will.topic.escape_debug(),
                    wills[i].1.topic.escape_debug()
                );
                wills[i].1 = will;
            }
            (None, Some(will)) => wills.push((plugin.to_owned(), will)),
            (Some(i), None) => {
                wills.remove(i);
            }
            (None, None) => {}
        }
        Ok(())
    }

    /// The plugin whose will is on `topic`, if it is not `plugin`: a retained message there
    /// from `plugin` would overwrite that plugin's state.
    fn will_owner(&self, plugin: &str, topic: &str) -> Option<String> {
        self.wills
            .locked()
            .iter()
            .find(|(p, w)| p != plugin && w.topic == topic)
            .map(|(p, _)| p.clone())
    }
}

/// Publishes for a plugin, polled in place with the host runtime entered (the plugin polls
/// from its own runtime, where the host's timers are out of reach), as AMQP publishes are: a
/// host task spawned per publish costs its allocation and two more schedulings (start, then
/// the wake of the plugin through its join handle), a sixth of a QoS 1 publish's
/// instructions (see BENCHMARKS.md, row 3e).
pub fn publish(
    bridge: Option<&MqttBridge>,
    plugin: &str,
    runtime: &Handle,
    message: FfiMqttPublish,
) -> FfiFuture<RResult<(), FfiError>> {
    if let Some(owner) = bridge
        .filter(|_| message.retain)
        .and_then(|b| b.will_owner(plugin, &message.topic))
    {
        let err = FfiError::new(
            error_code::INVALID,
            format!(
                "'{}' is plugin {owner}'s state topic (its will is there): a retained message \
                 from plugin {plugin} would overwrite that plugin's state; publish on a topic \
                 of your own, e.g. '<state-topic>/<service>/{plugin}'",
                message.topic.escape_debug()
            ),
        );
        return FfiFuture::new(async move { RResult::RErr(err) });
    }
    let bus = bridge.map(|b| b.bus.clone());
    let job = async move {
        let Some(bus) = bus else {
            return RResult::RErr(not_in_use());
        };
        let qos = match crate::mqtt::qos(message.qos) {
            Ok(qos) => qos,
            Err(err) => return RResult::RErr(ffi_error(&err)),
        };
        bus.publish(
            &message.topic,
            message.payload.into_vec(),
            qos,
            message.retain,
        )
        .await
        .map_err(|e| ffi_error(&e))
        .into()
    };
    FfiFuture::new(InRuntime::new(runtime.clone(), job))
}

/// Subscribes a plugin's handler to the filter of `request` (in a group: its
/// `$share/<group>/<filter>`; durable: on the persistent session, taking over the plugin's
/// subscription of an earlier generation; see [`plugin_abi::sharing::mqtt_plan`]).
pub fn subscribe(
    bridge: Option<&MqttBridge>,
    plugin: &str,
    request: FfiMqttSubscribe,
    handler: MessageHandlerBox,
) -> Result<HostSubscriptionArc, FfiError> {
    let bridge = bridge.ok_or_else(not_in_use)?;
    let qos = crate::mqtt::qos(request.qos).map_err(|e| ffi_error(&e))?;
    let plan = plugin_abi::sharing::mqtt_plan(&request.sharing, &request.filter)
        .map_err(|err| FfiError::new(error_code::INVALID, err))?;
    let plugin: Arc<str> = plugin.into();
    let sink = PluginSink::shared(&plugin, handler, &bridge.binder);
    let sub = match plan.durable {
        true => bridge
            .bus
            .subscribe_durable(&plan.filter, sink, bridge.generation),
        false => bridge.bus.subscribe(&plan.filter, qos, sink),
    }
    .map_err(|e| ffi_error(&e))?;
    bridge.made.record(&sub);
    Ok(host_subscription(&plugin, &bridge.binder, sub))
}

/// Sets (or, with an empty topic, removes) `plugin`'s will, after the bus's checks of its
/// topic and size. The broker is given it when the generation starts serving.
pub fn set_will(
    bridge: Option<&MqttBridge>,
    plugin: &str,
    will: FfiMqttPublish,
) -> Result<(), FfiError> {
    let bridge = bridge.ok_or_else(not_in_use)?;
    let will = (!will.topic.is_empty()).then(|| Will {
        topic: will.topic.into_string(),
        payload: will.payload.into_vec(),
        retain: will.retain,
    });
    if let Some(will) = &will {
        bridge.bus.check_will(will).map_err(|e| ffi_error(&e))?;
    }
    bridge.set_will(plugin, will)
}

fn not_in_use() -> FfiError {
    FfiError::new(error_code::UNAVAILABLE, MQTT_NOT_IN_USE)
}
