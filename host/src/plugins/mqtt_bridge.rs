//! Connects one generation's plugins to the host's [`MqttBus`], and records the
//! subscriptions they made, so that a reload can wait until the new generation's are
//! acknowledged before it swaps and cancel the old generation's after.

use std::{
    sync::{Arc, Mutex, OnceLock, Weak},
    time::Duration,
};

use abi_stable::{
    sabi_trait::TD_Opaque,
    std_types::{RArc, RResult, RString, RVec},
};
use async_ffi::FfiFuture;
use futures::{future::BoxFuture, FutureExt};
use plugin_abi::{
    error_code, FfiError, FfiMqttPublish, HostSubscription, HostSubscriptionArc,
    HostSubscription_TO, MessageHandlerBox,
};
use tokio::runtime::Handle;

use super::bus_bridge::InRuntime;
use crate::mqtt::{MqttBus, MqttError, MqttMessage, MqttSink, MqttSubscription, QoS, Will};
use crate::sync::Unpoisoned;

/// A generation's view of the MQTT bus.
pub struct MqttBridge {
    bus: MqttBus,
    made: Mutex<Vec<MqttSubscription>>,
    /// The wills this generation's plugins declared, by plugin, in declaration order.
    wills: Mutex<Vec<(String, Will)>>,
}

impl MqttBridge {
    pub fn new(bus: MqttBus) -> Self {
        MqttBridge {
            bus,
            made: Mutex::new(Vec::new()),
            wills: Mutex::new(Vec::new()),
        }
    }

    pub fn bus(&self) -> &MqttBus {
        &self.bus
    }

    fn live(&self) -> Vec<MqttSubscription> {
        let mut made = self.made.locked();
        made.retain(|sub| !sub.is_cancelled());
        made.clone()
    }

    /// Subscribes through the bus and records the subscription as this generation's.
    pub fn subscribe(
        &self,
        filter: &str,
        qos: QoS,
        sink: Arc<dyn MqttSink>,
    ) -> Result<MqttSubscription, MqttError> {
        let sub = self.bus.subscribe(filter, qos, sink)?;
        self.made.locked().push(sub.clone());
        Ok(sub)
    }

    /// Waits (at most `timeout`) until every live subscription is acknowledged or refused;
    /// `false` on timeout. Returns at once while the bus is not connected.
    pub async fn wait_bound(&self, timeout: Duration) -> bool {
        if !self.bus.is_connected() {
            return true;
        }
        let deadline = tokio::time::Instant::now() + timeout;
        for sub in self.live() {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if !sub.settled(left).await {
                return false;
            }
        }
        true
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

    /// Cancels every subscription this generation made: nothing more reaches its handlers
    /// (a message already in a handler finishes).
    pub fn cancel_all(&self) {
        for sub in self.live() {
            sub.cancel();
        }
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

/// Subscribes a plugin's handler to `filter`.
pub fn subscribe(
    bridge: Option<&MqttBridge>,
    plugin: &str,
    filter: &str,
    qos: u8,
    handler: MessageHandlerBox,
) -> Result<HostSubscriptionArc, FfiError> {
    let bridge = bridge.ok_or_else(not_in_use)?;
    let qos = crate::mqtt::qos(qos).map_err(|e| ffi_error(&e))?;
    let sink = Arc::new_cyclic(|me| PluginSink {
        me: me.clone(),
        plugin: plugin.to_owned(),
        handler: Mutex::new(Arc::new(handler)),
        handle: OnceLock::new(),
        bus: bridge.bus.clone(),
    });
    let sub = bridge
        .subscribe(filter, qos, sink.clone())
        .map_err(|e| ffi_error(&e))?;
    let handle = sink.handle(&sub);
    Ok(HostSubscription_TO::from_sabi(handle.obj.shallow_clone()))
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
    FfiError::new(
        error_code::UNAVAILABLE,
        "the MQTT eventbus is not in use: start the service with --mqtt-* options",
    )
}

/// The error code a plugin sees for an MQTT error.
pub fn ffi_error(err: &MqttError) -> FfiError {
    let code = match err {
        MqttError::Invalid(_) => error_code::INVALID,
        MqttError::Unavailable(_) | MqttError::ShuttingDown => error_code::UNAVAILABLE,
        MqttError::Rejected(_) => error_code::REJECTED,
        MqttError::Timeout => error_code::TIMEOUT,
        MqttError::Cancelled => error_code::OTHER,
    };
    FfiError::new(code, err.to_string())
}

/// Delivers a subscription's messages to a plugin handler, which can be replaced.
struct PluginSink {
    me: Weak<PluginSink>,
    plugin: String,
    handler: Mutex<Arc<MessageHandlerBox>>,
    /// The subscription as the plugin holds it, made once.
    handle: OnceLock<HostSubscriptionArc>,
    bus: MqttBus,
}

impl PluginSink {
    fn handle(&self, sub: &MqttSubscription) -> &HostSubscriptionArc {
        self.handle.get_or_init(|| {
            HostSubscription_TO::from_ptr(
                RArc::new(PluginSubscription {
                    sink: self.me.clone(),
                    sub: sub.clone(),
                    bus: self.bus.clone(),
                }),
                TD_Opaque,
            )
        })
    }
}

impl MqttSink for PluginSink {
    fn deliver(
        &self,
        sub: &MqttSubscription,
        message: MqttMessage,
    ) -> BoxFuture<'static, crate::delivery::Delivered> {
        let handler = self.handler.locked().clone();
        let handle = self.handle(sub);
        let delivery = handler.on_message(
            HostSubscription_TO::from_sabi(handle.obj.shallow_clone()),
            message.topic.into(),
            RVec::from(message.payload.to_vec()),
        );
        let plugin = self.plugin.clone();
        async move {
            let _keep = handler;
            super::bus_bridge::handled(plugin, delivery).await
        }
        .boxed()
    }

    fn owner(&self) -> Option<&str> {
        Some(&self.plugin)
    }
}

/// An MQTT subscription as a plugin holds it.
struct PluginSubscription {
    sink: Weak<PluginSink>,
    sub: MqttSubscription,
    bus: MqttBus,
}

impl HostSubscription for PluginSubscription {
    fn exchange(&self) -> RString {
        RString::new()
    }

    fn routing(&self) -> RString {
        self.sub.filter().into()
    }

    fn set_handler(&self, handler: MessageHandlerBox) {
        if let Some(sink) = self.sink.upgrade() {
            *sink.handler.locked() = Arc::new(handler);
        }
    }

    fn cancel(&self) {
        self.sub.cancel();
    }

    fn is_cancelled(&self) -> bool {
        self.sub.is_cancelled()
    }

    fn ready(&self) -> FfiFuture<RResult<(), FfiError>> {
        let (bus, sub) = (self.bus.clone(), self.sub.clone());
        let Ok(runtime) = Handle::try_current().or_else(|_| bus.runtime().ok_or(())) else {
            let err = FfiError::new(error_code::UNAVAILABLE, "MQTT bus has no runtime");
            return FfiFuture::new(async move { RResult::RErr(err) });
        };
        let task = runtime.spawn(async move { bus.ready(&sub).await.map_err(|e| ffi_error(&e)) });
        FfiFuture::new(async move {
            match task.await {
                Ok(result) => result.into(),
                Err(err) => RResult::RErr(FfiError::new(error_code::OTHER, err.to_string())),
            }
        })
    }
}
