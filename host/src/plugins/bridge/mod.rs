//! Connects plugins' publish/subscribe calls to the host's eventbuses, once for both: a
//! plugin's handler is wrapped in a [`Sink`] of the eventbus core, and a subscription is
//! handed to the plugin as a `HostSubscription` object. The buses never see plugin types.
//!
//! - this module: what both transports share (the subscriptions a generation made, the sink
//!   around a plugin handler, the subscription as a plugin holds it, the error code a plugin
//!   sees);
//! - [`amqp`]: [`BusBridge`], the AMQP calls (exchange types, confirmed publishes);
//! - [`mqtt`]: [`MqttBridge`], the MQTT calls and the wills plugins declare;
//! - `in_runtime`: polling a host future from a plugin's thread.

pub mod amqp;
mod in_runtime;
pub mod mqtt;

use std::{
    sync::{Arc, Mutex, OnceLock},
    time::Duration,
};

use abi_stable::{
    sabi_trait::TD_Opaque,
    std_types::{RArc, RResult, RString, RVec},
};
use bytes::Bytes;
use futures::future::BoxFuture;
use plugin_abi::FfiFuture;
use plugin_abi::{
    error_code, FfiError, FfiMessage, HostSubscription, HostSubscriptionArc, HostSubscription_TO,
    MessageHandlerBox,
};
use tokio::runtime::Handle;

pub use amqp::{BusBridge, AMQP_NOT_IN_USE};
pub(crate) use in_runtime::{mark_host_runtime_thread, InRuntime};
pub use mqtt::{MqttBridge, MQTT_NOT_IN_USE};

use crate::eventbus::{
    Delivery, ErrorKind, EventbusError, Redelivery, Sink, Subscription, SubscriptionState,
};
use crate::sync::Unpoisoned;

/// The error code a plugin sees for an eventbus error, from its kind. A nack is
/// `UNAVAILABLE`: the broker could not take the message now (a queue without its quorum, a
/// full queue that rejects publishes), which trying again later can cure (the SDK's `Retry`
/// does); a refusal (an exchange of another type) is `REJECTED`, which it cannot.
pub fn ffi_error(err: &impl EventbusError) -> FfiError {
    let code = match err.kind() {
        ErrorKind::Timeout => error_code::TIMEOUT,
        ErrorKind::Unavailable | ErrorKind::Nacked => error_code::UNAVAILABLE,
        ErrorKind::Refused => error_code::REJECTED,
        ErrorKind::Invalid | ErrorKind::TooLarge => error_code::INVALID,
        ErrorKind::Cancelled | ErrorKind::Other => error_code::OTHER,
    };
    FfiError::new(code, err.to_string())
}

/// What the common part of the bridge needs of a bus: the runtime it runs on and the wait
/// until a subscription is bound.
pub(crate) trait Binder: Send + Sync + 'static {
    fn runtime(&self) -> Option<Handle>;
    fn ready(&self, sub: Subscription) -> BoxFuture<'static, Result<(), FfiError>>;
}

/// The subscriptions one generation of plugins made on one bus: a reload waits until the
/// new generation's are bound before it swaps, and cancels the old generation's after.
#[derive(Default)]
pub struct Made(Mutex<Vec<Subscription>>);

impl Made {
    fn record(&self, sub: &Subscription) {
        self.0.locked().push(sub.clone());
    }

    /// The subscriptions made and not cancelled.
    fn live(&self) -> Vec<Subscription> {
        let mut made = self.0.locked();
        made.retain(|sub| !sub.is_cancelled());
        made.clone()
    }

    /// Waits (at most `timeout`) until every live subscription is bound or refused; `false`
    /// on timeout.
    pub async fn wait_bound(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        for sub in self.live() {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let settled = sub
                .wait_state(left, |state| !matches!(state, SubscriptionState::Pending))
                .await;
            if settled.is_none() {
                return false;
            }
        }
        true
    }

    /// Cancels every subscription made and waits (at most `timeout`) for their in-flight
    /// handlers to return. `drain`: each first hands its handler what its queue holds (a
    /// generation retiring at a hot swap, see [`Subscription::retire`]).
    pub async fn cancel_all(&self, timeout: Duration, drain: bool) {
        let subs = self.live();
        for sub in &subs {
            match drain {
                true => sub.retire(),
                false => sub.cancel(),
            }
        }
        let finished = futures::future::join_all(subs.iter().map(Subscription::idle));
        if tokio::time::timeout(timeout, finished).await.is_err() {
            tracing::warn!(
                "Event bus handlers still running {:.1} s after their subscriptions were cancelled; going on",
                timeout.as_secs_f64()
            );
        }
    }
}

/// A subscription as the plugin that made it holds it.
pub(crate) fn host_subscription(
    plugin: &Arc<str>,
    bus: &Arc<dyn Binder>,
    sub: Subscription,
) -> HostSubscriptionArc {
    HostSubscription_TO::from_ptr(
        RArc::new(PluginSubscription {
            plugin: plugin.clone(),
            bus: bus.clone(),
            sub,
        }),
        TD_Opaque,
    )
}

/// Delivers a subscription's messages to a plugin handler.
pub(crate) struct PluginSink {
    plugin: Arc<str>,
    bus: Arc<dyn Binder>,
    handler: MessageHandlerBox,
    /// The subscription as handed to the handler, made at the first message and shared by
    /// all after it (one allocation per subscription instead of two per message).
    handle: OnceLock<HostSubscriptionArc>,
}

impl PluginSink {
    pub(crate) fn shared(
        plugin: &Arc<str>,
        handler: MessageHandlerBox,
        bus: &Arc<dyn Binder>,
    ) -> Arc<dyn Sink> {
        Arc::new(PluginSink {
            plugin: plugin.clone(),
            bus: bus.clone(),
            handler,
            handle: OnceLock::new(),
        })
    }
}

impl Sink for PluginSink {
    fn deliver(
        &self,
        sub: &Subscription,
        topic: &str,
        payload: Bytes,
        redelivery: Redelivery,
    ) -> Delivery {
        let handle = self
            .handle
            .get_or_init(|| host_subscription(&self.plugin, &self.bus, sub.clone()));
        let message = FfiMessage {
            routing_key: topic.into(),
            body: RVec::from(Vec::from(payload)),
            redelivered: redelivery.redelivered,
            delivery_count: redelivery.count.into(),
        };
        let future = self.handler.on_message(
            HostSubscription_TO::from_sabi(handle.obj.shallow_clone()),
            message,
        );
        Delivery::Plugin {
            plugin: self.plugin.clone(),
            future,
        }
    }

    fn owner(&self) -> Option<&str> {
        Some(&self.plugin)
    }
}

/// A subscription as a plugin holds it.
struct PluginSubscription {
    plugin: Arc<str>,
    bus: Arc<dyn Binder>,
    sub: Subscription,
}

impl HostSubscription for PluginSubscription {
    /// The AMQP exchange; empty for MQTT.
    fn exchange(&self) -> RString {
        self.sub.exchange().into()
    }

    /// The AMQP routing key, or the MQTT topic filter.
    fn routing(&self) -> RString {
        self.sub.routing().into()
    }

    fn set_handler(&self, handler: MessageHandlerBox) {
        self.sub
            .set_sink(PluginSink::shared(&self.plugin, handler, &self.bus));
    }

    fn cancel(&self) {
        self.sub.cancel();
    }

    fn is_cancelled(&self) -> bool {
        self.sub.is_cancelled()
    }

    /// Polled in place with the host runtime entered (see [`InRuntime`]).
    fn ready(&self) -> FfiFuture<RResult<(), FfiError>> {
        let Some(runtime) = self.bus.runtime() else {
            let err = FfiError::new(error_code::UNAVAILABLE, "event bus has no runtime");
            return FfiFuture::new(async move { RResult::RErr(err) });
        };
        let ready = self.bus.ready(self.sub.clone());
        FfiFuture::new(InRuntime::new(runtime, async move { ready.await.into() }))
    }
}
