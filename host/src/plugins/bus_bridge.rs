//! Connects plugins' publish/subscribe calls to the host's [`EventBus`].
//!
//! The bus never sees plugin types: a plugin's handler is wrapped in a [`MessageSink`], and
//! a bus subscription is handed to the plugin as a `HostSubscription` object.

use std::{
    future::Future,
    pin::Pin,
    sync::{Arc, Mutex, OnceLock},
    task::{Context, Poll, Wake, Waker},
    time::Duration,
};

use abi_stable::{
    sabi_trait::TD_Opaque,
    std_types::{RArc, RResult, RString, RVec},
};
use async_ffi::FfiFuture;
use futures::{future::BoxFuture, task::AtomicWaker, FutureExt};
use plugin_abi::{
    error_code, FfiError, FfiFailure, FfiPublish, FfiSubscribe, HostSubscription,
    HostSubscriptionArc, HostSubscription_TO, MessageHandlerBox,
};
use tokio::runtime::Handle;

use crate::bus::{
    config::ParseExchangeKindError, BusError, EventBus, ExchangeKind, MessageSink, Subscription,
    SubscriptionState,
};
use crate::delivery::{Delivered, DeliveryError};
use crate::sync::Unpoisoned;

/// The eventbus as one generation of plugins reaches it, and the subscriptions the
/// generation made (cancelled when it stops). Which plugin owns a subscription its sink knows.
pub struct BusBridge {
    bus: EventBus,
    made: Mutex<Vec<Subscription>>,
    /// False when the options selected only MQTT: the AMQP bus is never reached then.
    enabled: bool,
}

/// The error code a plugin sees for a bus error. A nack is `UNAVAILABLE`: the broker could
/// not take the message now (a queue without its quorum, a full queue that rejects
/// publishes), which trying again later can cure (the SDK's `Retry` does); a channel error
/// (an exchange of another type) is `REJECTED`, which it cannot.
pub fn ffi_error(err: &BusError) -> FfiError {
    let code = match err {
        BusError::Timeout => error_code::TIMEOUT,
        _ if err.is_unavailable() => error_code::UNAVAILABLE,
        BusError::Rejected(_) => error_code::UNAVAILABLE,
        BusError::Channel { .. } => error_code::REJECTED,
        BusError::InvalidConfig(_) | BusError::InvalidName { .. } | BusError::TooLarge { .. } => {
            error_code::INVALID
        }
        _ => error_code::OTHER,
    };
    FfiError::new(code, err.to_string())
}

impl BusBridge {
    pub fn new(bus: EventBus) -> Self {
        BusBridge {
            bus,
            made: Mutex::new(Vec::new()),
            enabled: true,
        }
    }

    /// A bridge whose publishes and subscriptions fail with `Unavailable` when `enabled`
    /// is false, without touching the bus.
    pub fn enabled(mut self, enabled: bool) -> Self {
        self.enabled = enabled;
        self
    }

    pub fn is_enabled(&self) -> bool {
        self.enabled
    }

    /// The subscriptions made through this bridge and not cancelled.
    fn live(&self) -> Vec<Subscription> {
        let mut made = self.made.locked();
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

    /// Cancels every subscription made through this bridge and waits (at most `timeout`)
    /// for their in-flight handlers to return. `drain`: each first hands its handler what
    /// its queue holds (a generation retiring at a hot swap, see [`Subscription::retire`]).
    pub async fn cancel_all(&self, timeout: Duration, drain: bool) {
        let subs = self.live();
        for sub in &subs {
            match drain {
                true => sub.retire(),
                false => sub.cancel(),
            }
        }
        let finished = async {
            for sub in &subs {
                // The consuming task holds this for its whole life.
                drop(sub.inner.order.lock().await);
            }
        };
        if tokio::time::timeout(timeout, finished).await.is_err() {
            tracing::warn!(
                "Event bus handlers still running {:.1} s after their subscriptions were cancelled; going on",
                timeout.as_secs_f64()
            );
        }
    }

    pub fn bus(&self) -> &EventBus {
        &self.bus
    }

    /// Publishes with the host runtime entered around every poll: the caller may be polling
    /// from a plugin's own runtime thread, where lapin's tokio reactor and the host's timers
    /// are out of reach otherwise. Polled in place rather than spawned: a spawn costs a task
    /// and a hop to another worker thread on every publish (see BENCHMARKS.md).
    pub fn publish(
        &self,
        runtime: &Handle,
        message: FfiPublish,
    ) -> FfiFuture<RResult<(), FfiError>> {
        let bus = self.bus.clone();
        let enabled = self.enabled;
        let job = async move {
            if !enabled {
                return RResult::RErr(not_in_use());
            }
            let kind: ExchangeKind = match message.exchange_type.parse() {
                Ok(kind) => kind,
                Err(err) => return RResult::RErr(FfiError::new(error_code::INVALID, err.0)),
            };
            bus.publish(
                &message.exchange,
                &message.routing,
                // Borrowed as it is: `into_vec` would copy (another library allocated it).
                &message.body,
                kind,
                message.declare_exchange,
            )
            .await
            .map_err(|err| ffi_error(&err))
            .into()
        };
        FfiFuture::new(InRuntime::new(runtime.clone(), job))
    }

    pub fn subscribe(
        &self,
        plugin: &str,
        request: FfiSubscribe,
        handler: MessageHandlerBox,
    ) -> Result<HostSubscriptionArc, FfiError> {
        if !self.enabled {
            return Err(not_in_use());
        }
        let kind: ExchangeKind = request
            .exchange_type
            .parse()
            .map_err(|err: ParseExchangeKindError| FfiError::new(error_code::INVALID, err.0))?;
        if request.exchange.is_empty() {
            return Err(FfiError::new(
                error_code::INVALID,
                "exchange name must not be empty",
            ));
        }
        let sink = PluginSink::shared(plugin, handler, &self.bus);
        let sub = self
            .bus
            .subscribe(&request.exchange, &request.routing, kind, sink)
            .map_err(|err| ffi_error(&err))?;
        self.made.locked().push(sub.clone());
        Ok(host_subscription(plugin, &self.bus, sub))
    }
}

/// The error for an AMQP call when the options selected only MQTT.
fn not_in_use() -> FfiError {
    FfiError::new(error_code::UNAVAILABLE, AMQP_NOT_IN_USE)
}

/// Why the AMQP eventbus refuses a call when the options selected only MQTT.
pub const AMQP_NOT_IN_USE: &str =
    "the AMQP eventbus is not in use: the service was started with --mqtt-* options only";

/// A host future polled (and dropped) with the host runtime entered, whatever thread polls it.
///
/// The inner future sees a waker of our own (an `Arc`, cheap to clone), which wakes the
/// caller's: the caller's is an FFI waker, and every clone of it (lapin clones one per pending
/// operation) allocates on both sides of the boundary. Here it is cloned at most once a poll.
pub(super) struct InRuntime<F: Future> {
    handle: Handle,
    fut: Option<Pin<Box<F>>>,
    bridge: Arc<WakerBridge>,
}

impl<F: Future> InRuntime<F> {
    pub(super) fn new(handle: Handle, fut: F) -> Self {
        InRuntime {
            handle,
            fut: Some(Box::pin(fut)),
            bridge: Arc::new(WakerBridge(AtomicWaker::new())),
        }
    }
}

struct WakerBridge(AtomicWaker);

impl Wake for WakerBridge {
    fn wake(self: Arc<Self>) {
        self.0.wake();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.wake();
    }
}

impl<F: Future> Future for InRuntime<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let _enter = self.handle.enter();
        self.bridge.0.register(cx.waker());
        let waker = Waker::from(Arc::clone(&self.bridge));
        let mut inner = Context::from_waker(&waker);
        match self.fut.as_mut() {
            Some(fut) => fut.as_mut().poll(&mut inner),
            None => Poll::Pending,
        }
    }
}

impl<F: Future> Drop for InRuntime<F> {
    fn drop(&mut self) {
        let _enter = self.handle.enter();
        self.fut = None;
    }
}

fn host_subscription(plugin: &str, bus: &EventBus, sub: Subscription) -> HostSubscriptionArc {
    HostSubscription_TO::from_ptr(
        RArc::new(PluginSubscription {
            plugin: plugin.to_owned(),
            bus: bus.clone(),
            sub,
        }),
        TD_Opaque,
    )
}

/// Delivers a subscription's messages to a plugin handler.
struct PluginSink {
    plugin: String,
    bus: EventBus,
    handler: MessageHandlerBox,
    /// The subscription as handed to the handler, made at the first message and shared by
    /// all after it (one allocation per subscription instead of two per message).
    handle: OnceLock<HostSubscriptionArc>,
}

impl PluginSink {
    fn shared(plugin: &str, handler: MessageHandlerBox, bus: &EventBus) -> Arc<dyn MessageSink> {
        Arc::new(PluginSink {
            plugin: plugin.to_owned(),
            bus: bus.clone(),
            handler,
            handle: OnceLock::new(),
        })
    }
}

impl MessageSink for PluginSink {
    fn deliver(
        &self,
        sub: &Subscription,
        routing_key: &str,
        body: Vec<u8>,
    ) -> BoxFuture<'static, Delivered> {
        let handle = self
            .handle
            .get_or_init(|| host_subscription(&self.plugin, &self.bus, sub.clone()));
        let delivery = self.handler.on_message(
            HostSubscription_TO::from_sabi(handle.obj.shallow_clone()),
            routing_key.into(),
            RVec::from(body),
        );
        handled(self.plugin.clone(), delivery).boxed()
    }

    fn owner(&self) -> Option<&str> {
        Some(&self.plugin)
    }
}

/// A plugin handler's answer to one message, a panic in it contained, errors naming the
/// plugin (both eventbuses deliver through this).
pub(crate) async fn handled(
    plugin: String,
    delivery: FfiFuture<RResult<(), FfiFailure>>,
) -> Delivered {
    match plugin_abi::panics::catch_future(delivery).await {
        Ok(RResult::ROk(())) => Ok(()),
        Ok(RResult::RErr(failure)) => Err(DeliveryError::from_plugin(&plugin, failure)),
        Err(report) => Err(DeliveryError::Panicked(format!(
            "plugin {plugin}: handler {report}"
        ))),
    }
}

/// A bus subscription as a plugin holds it.
struct PluginSubscription {
    plugin: String,
    bus: EventBus,
    sub: Subscription,
}

impl HostSubscription for PluginSubscription {
    fn exchange(&self) -> RString {
        self.sub.exchange().into()
    }

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

    fn ready(&self) -> FfiFuture<RResult<(), FfiError>> {
        let Some(runtime) = self.bus.runtime() else {
            let err = FfiError::new(error_code::UNAVAILABLE, "event bus has no runtime");
            return FfiFuture::new(async move { RResult::RErr(err) });
        };
        let (bus, sub) = (self.bus.clone(), self.sub.clone());
        let job = async move { bus.ready(&sub).await.map_err(|err| ffi_error(&err)).into() };
        FfiFuture::new(InRuntime::new(runtime, job))
    }
}
