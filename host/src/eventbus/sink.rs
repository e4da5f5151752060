//! Where a subscription's messages go: a plugin's handler (through the plugin bridge) or
//! `/_debug/subscribe`'s logger.

use bytes::Bytes;
use futures::future::BoxFuture;

use super::outcome::Delivered;
use super::subscription::Subscription;

/// What a subscription calls for each delivered message.
///
/// `topic` is the message's routing key (AMQP) or topic (MQTT); `payload` the raw body,
/// shared, not copied, between every subscription it matched. Decoding (JSON) is the sink's
/// job; its outcome says in a type whether the handler refused, failed or panicked, and the
/// delivery counts and logs from that (see [`super::delivery`]).
pub trait Sink: Send + Sync + 'static {
    /// `redelivery`: what the broker says of earlier deliveries of the message (a shared or
    /// durable subscription's redelivery); a plugin's sink shows it to the handler.
    fn deliver(
        &self,
        sub: &Subscription,
        topic: &str,
        payload: Bytes,
        redelivery: Redelivery,
    ) -> BoxFuture<'static, Delivered>;

    /// The plugin the messages go to, if a plugin's: shown in health and the metrics' `plugin`
    /// label. Read once, when the subscription is made.
    fn owner(&self) -> Option<&str> {
        None
    }
}

/// What the broker says of a message's earlier deliveries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Redelivery {
    /// Delivered before without an acknowledgement (AMQP `redelivered`, MQTT `dup`).
    pub redelivered: bool,
    /// How many times before, where the broker counts (a quorum queue's `x-delivery-count`).
    pub count: Option<u32>,
}

/// A sink that takes every message and does nothing, for tests of the subscriptions
/// themselves.
#[cfg(test)]
pub(crate) struct Nop;

#[cfg(test)]
impl Sink for Nop {
    fn deliver(
        &self,
        _: &Subscription,
        _: &str,
        _: Bytes,
        _: Redelivery,
    ) -> BoxFuture<'static, Delivered> {
        Box::pin(async { Ok(()) })
    }
}
