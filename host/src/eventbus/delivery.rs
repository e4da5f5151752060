//! How a message reaches its handler, for every transport: `handle` takes one message into
//! the subscription's sink and `consume` hands a bounded queue's messages to it in order.
//!
//! One message's trip: counted as unacknowledged until settled; the sink is called with a
//! panic in it (or in its future) contained; the outcome is counted (delivered with the
//! handler's time, failed, or dropped when the handler refused the payload) and a failure
//! logged in the transport's words; then the transport settles the message with the broker
//! (`Settle`), after the handler, where it has acknowledgements.

use std::future::Future;
use std::time::Instant;

use bytes::Bytes;
use plugin_abi::panics;

use super::outcome::{Delivered, DeliveryError};
use super::queue::QueueReceiver;
use super::sink::Redelivery;
use super::subscription::{Subscription, Transport};
use crate::metrics::bus::Dropped;

/// How a transport settles a message with the broker once its handler returned: AMQP acks
/// it; a transport whose client acknowledged on receipt has nothing to do (`()`).
pub(crate) trait Settle: Send {
    fn settle(self, sub: &Subscription, outcome: &Delivered) -> impl Future<Output = ()> + Send;
}

impl Settle for () {
    async fn settle(self, _: &Subscription, _: &Delivered) {}
}

/// Hands one message to `sub`'s sink, then settles it (see the module's doc).
pub(crate) async fn handle(
    sub: &Subscription,
    topic: &str,
    payload: Bytes,
    redelivery: Redelivery,
    settle: impl Settle,
) {
    let metrics = sub.metrics();
    let _unacked = metrics.unacked();
    let sink = sub.sink();
    let started = Instant::now();
    // A panic is described on one line, with its location, and logged once: below.
    let panicked = |report| Err(DeliveryError::Panicked(format!("handler {report}")));
    let outcome = match panics::catch(|| sink.deliver(sub, topic, payload, redelivery)) {
        // Its polls contain a panic of the handler's future themselves.
        Ok(delivery) => delivery.await,
        Err(report) => panicked(report),
    };
    match &outcome {
        Err(err) if err.is_refusal() => metrics.dropped(Dropped::NotJson),
        _ => metrics.handled(started.elapsed(), outcome.is_ok()),
    }
    if let Err(err) = &outcome {
        log_failure(sub, topic, err);
    }
    settle.settle(sub, &outcome).await;
}

/// `Exception relaying message in <sub>: <err>`, the original's words; MQTT adds the topic
/// (its subscription names only the filter).
fn log_failure(sub: &Subscription, topic: &str, err: &DeliveryError) {
    match sub.transport() {
        Transport::Amqp => tracing::error!("Exception relaying message in {sub}: {err}"),
        Transport::Mqtt => tracing::error!(
            target: "brewblox_host::mqtt",
            "Exception relaying message in {sub} (topic '{}'): {err}",
            topic.escape_debug()
        ),
    }
}

/// One message waiting in a subscription's queue, with how its transport settles it once
/// handled (`S`: `()` where the client acknowledged on receipt). The payload is shared
/// between every subscription the message matched, and so is the topic when more than one
/// did.
pub(crate) struct Queued<S = ()> {
    pub topic: Topic,
    pub payload: Bytes,
    /// The broker sent it before (MQTT `dup`).
    pub redelivered: bool,
    pub settle: S,
}

/// A queued message's topic: the one the client received, when one subscription took the
/// message (most often), or a copy shared by every subscription that did.
pub(crate) enum Topic {
    Own(String),
    Shared(std::sync::Arc<str>),
}

impl std::ops::Deref for Topic {
    type Target = str;

    fn deref(&self) -> &str {
        match self {
            Topic::Own(topic) => topic,
            Topic::Shared(topic) => topic,
        }
    }
}

/// Hands the queued messages to `sub`'s sink one at a time, in order, until the queue closes
/// or the subscription is cancelled: the consumer of a transport whose broker pushes
/// without flow control (MQTT), whose queue bounds what the host holds. A message left in
/// the queue at a cancel is dropped unsettled.
pub(crate) async fn consume<S: Settle>(sub: Subscription, mut queue: QueueReceiver<Queued<S>>) {
    let _serving = sub.serve().await;
    while let Some(message) = queue.recv().await {
        if sub.is_cancelled() {
            break;
        }
        let redelivery = Redelivery {
            redelivered: message.redelivered,
            count: None,
        };
        handle(
            &sub,
            &message.topic,
            message.payload,
            redelivery,
            message.settle,
        )
        .await;
    }
}
