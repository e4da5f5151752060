//! The AMQP calls of a plugin: publish (exchange type, confirm) and subscribe.

use std::{sync::Arc, time::Duration};

use abi_stable::std_types::RResult;
use futures::{future::BoxFuture, FutureExt};
use plugin_abi::FfiFuture;
use plugin_abi::{
    error_code, sharing, FfiError, FfiPublish, FfiSubscribe, HostSubscriptionArc, MessageHandlerBox,
};
use tokio::runtime::Handle;

use super::{ffi_error, host_subscription, Binder, InRuntime, Made, PluginSink};
use crate::bus::{config::ParseExchangeKindError, EventBus, ExchangeKind};
use crate::eventbus::Subscription;

/// Why the AMQP eventbus refuses a call when the options selected only MQTT.
pub const AMQP_NOT_IN_USE: &str =
    "the AMQP eventbus is not in use: the service was started with --mqtt-* options only";

/// The AMQP eventbus as one generation of plugins reaches it, and the subscriptions the
/// generation made (cancelled when it stops).
pub struct BusBridge {
    bus: EventBus,
    /// The service's name: the group of a durable subscription made without one.
    service: String,
    binder: Arc<dyn Binder>,
    made: Made,
    /// False when the options selected only MQTT: the AMQP bus is never reached then.
    enabled: bool,
}

impl Binder for EventBus {
    fn runtime(&self) -> Option<Handle> {
        EventBus::runtime(self)
    }

    fn ready(&self, sub: Subscription) -> BoxFuture<'static, Result<(), FfiError>> {
        let bus = self.clone();
        async move { bus.ready(&sub).await.map_err(|err| ffi_error(&err)) }.boxed()
    }
}

impl BusBridge {
    pub fn new(bus: EventBus) -> Self {
        BusBridge {
            binder: Arc::new(bus.clone()),
            bus,
            service: String::new(),
            made: Made::default(),
            enabled: true,
        }
    }

    /// The service's name, for durable subscriptions made without a group.
    pub fn service(mut self, name: &str) -> Self {
        self.service = name.to_owned();
        self
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

    pub fn bus(&self) -> &EventBus {
        &self.bus
    }

    /// Waits (at most `timeout`) until every live subscription is bound or refused; `false`
    /// on timeout.
    pub async fn wait_bound(&self, timeout: Duration) -> bool {
        self.made.wait_bound(timeout).await
    }

    /// Cancels every subscription made through this bridge and waits (at most `timeout`)
    /// for their in-flight handlers; `drain`: each first hands its handler what its queue
    /// holds.
    pub async fn cancel_all(&self, timeout: Duration, drain: bool) {
        self.made.cancel_all(timeout, drain).await
    }

    /// Publishes with the host runtime entered around every poll (`InRuntime`: a plugin polls from its own runtime thread).
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
        let queue = sharing::amqp_plan(
            &request.sharing,
            &self.service,
            &request.exchange,
            &request.routing,
        )
        .map_err(|err| FfiError::new(error_code::INVALID, err))?;
        let plugin: Arc<str> = plugin.into();
        let sink = PluginSink::shared(&plugin, handler, &self.binder);
        let (exchange, routing) = (&request.exchange, &request.routing);
        let sub = match queue {
            Some(queue) => self
                .bus
                .subscribe_shared(exchange, routing, kind, queue, sink),
            None => self.bus.subscribe(exchange, routing, kind, sink),
        }
        .map_err(|err| ffi_error(&err))?;
        self.made.record(&sub);
        Ok(host_subscription(&plugin, &self.binder, sub))
    }
}

/// The error for an AMQP call when the options selected only MQTT.
fn not_in_use() -> FfiError {
    FfiError::new(error_code::UNAVAILABLE, AMQP_NOT_IN_USE)
}
