//! Where a subscription's messages go: a plugin's handler (through the plugin bridge) or
//! `/_debug/subscribe`'s logger.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use abi_stable::std_types::RResult;
use bytes::Bytes;
use futures::future::BoxFuture;
use plugin_abi::FfiFuture;
use plugin_abi::{panics, FfiFailure};

use super::outcome::{Delivered, DeliveryError};
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
    ) -> Delivery;

    /// The plugin the messages go to, if a plugin's: shown in health and the metrics' `plugin`
    /// label. Read once, when the subscription is made.
    fn owner(&self) -> Option<&str> {
        None
    }
}

/// A handler's answer to one message, to come: what [`Sink::deliver`] returns. Polling it
/// contains a panic in the handler's future (a `Panicked` outcome).
///
/// A plugin handler's future is already boxed, by the plugin, behind the ABI; it is held as
/// it came rather than boxed again, as is an answer known at once.
pub enum Delivery {
    /// A plugin handler's, answering for `plugin`.
    Plugin {
        plugin: Arc<str>,
        future: FfiFuture<RResult<(), FfiFailure>>,
    },
    /// An answer known when the message was handed over (`None` once taken).
    Ready(Option<Delivered>),
    /// Any other sink's.
    Boxed(BoxFuture<'static, Delivered>),
}

impl Future for Delivery {
    type Output = Delivered;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Delivered> {
        match self.get_mut() {
            Delivery::Plugin { plugin, future } => {
                match panics::catch(|| Pin::new(future).poll(cx)) {
                    Ok(Poll::Pending) => Poll::Pending,
                    Ok(Poll::Ready(RResult::ROk(()))) => Poll::Ready(Ok(())),
                    Ok(Poll::Ready(RResult::RErr(failure))) => {
                        Poll::Ready(Err(DeliveryError::from_plugin(plugin, failure)))
                    }
                    Err(report) => Poll::Ready(Err(DeliveryError::Panicked(format!(
                        "plugin {plugin}: handler {report}"
                    )))),
                }
            }
            Delivery::Ready(answer) => Poll::Ready(answer.take().unwrap_or(Ok(()))),
            Delivery::Boxed(future) => match panics::catch(|| future.as_mut().poll(cx)) {
                Ok(poll) => poll,
                Err(report) => {
                    Poll::Ready(Err(DeliveryError::Panicked(format!("handler {report}"))))
                }
            },
        }
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
    fn deliver(&self, _: &Subscription, _: &str, _: Bytes, _: Redelivery) -> Delivery {
        Delivery::Ready(Some(Ok(())))
    }
}
