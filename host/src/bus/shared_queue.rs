//! The named queue of a shared or durable subscription ([`plugin_abi::sharing`]): declared
//! durable, neither exclusive nor auto-deleted, so that it outlives every consumer; consumed
//! by each instance of the group on a channel of its own with the subscription's prefetch,
//! each message acknowledged after its handler; and left — never deleted — when a consumer
//! is cancelled, retired at a reload, stopped or cut off: what it holds stays for the other
//! consumers and the next start.
//!
//! The broker redelivers a message whose consumer went without acknowledging it, flagged
//! `redelivered`, and a quorum queue counts the earlier deliveries in `x-delivery-count`:
//! both reach the handler ([`redelivery`]).

use lapin::message::Delivery;
use lapin::options::{BasicCancelOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::Channel;
use plugin_abi::sharing::AmqpQueue;
use tracing::debug;

use super::error::BusError;
use super::listener::{relay, Declared, DRAIN_IDLE, OP_TIMEOUT};
use crate::eventbus::{Redelivery, Subscription};

/// The arguments `queue` is declared with: its type, and the delivery limit and dead-letter
/// exchange if asked for.
fn arguments(queue: &AmqpQueue) -> FieldTable {
    let mut args = FieldTable::default();
    let kind = if queue.quorum { "quorum" } else { "classic" };
    args.insert("x-queue-type".into(), AMQPValue::LongString(kind.into()));
    if let Some(limit) = queue.delivery_limit {
        args.insert(
            "x-delivery-limit".into(),
            AMQPValue::LongLongInt(i64::from(limit)),
        );
    }
    if let Some(exchange) = &queue.dead_letter_exchange {
        args.insert(
            "x-dead-letter-exchange".into(),
            AMQPValue::LongString(exchange.as_str().into()),
        );
    }
    args
}

/// Declares `queue` on `channel` (idempotent: the instances of a group all declare it, with
/// the same arguments; other arguments are a 406 refusal).
pub(super) async fn declare(channel: &Channel, queue: &AmqpQueue) -> Result<(), BusError> {
    let options = QueueDeclareOptions {
        durable: true,
        exclusive: false,
        auto_delete: false,
        ..QueueDeclareOptions::default()
    };
    channel
        .queue_declare(&queue.name, options, arguments(queue))
        .await?;
    Ok(())
}

/// What the broker says of `delivery`'s earlier deliveries.
pub(super) fn redelivery(delivery: &Delivery) -> Redelivery {
    let count = delivery
        .properties
        .headers()
        .as_ref()
        .and_then(|headers| headers.inner().get("x-delivery-count"))
        .and_then(count_value);
    Redelivery {
        redelivered: delivery.redelivered,
        count,
    }
}

/// An AMQP integer as a count (brokers send `x-delivery-count` as a signed long).
fn count_value(value: &AMQPValue) -> Option<u32> {
    let wide = match *value {
        AMQPValue::ShortShortInt(n) => i64::from(n),
        AMQPValue::ShortShortUInt(n) => i64::from(n),
        AMQPValue::ShortInt(n) => i64::from(n),
        AMQPValue::ShortUInt(n) => i64::from(n),
        AMQPValue::LongInt(n) => i64::from(n),
        AMQPValue::LongUInt(n) => i64::from(n),
        AMQPValue::LongLongInt(n) => n,
        _ => return None,
    };
    u32::try_from(wide).ok()
}

/// Ends this consumer of a named queue, leaving the queue: the broker stops delivering to it
/// (`basic.cancel`); a retiring one (`drain`, a reload) first hands its handler what the
/// broker had delivered to it already — it is all in the consumer's buffer once the cancel
/// is confirmed, the channel being ordered — and a cancelled one leaves those to the broker,
/// which hands them to the group's other consumers when the channel closes.
pub(super) async fn leave(sub: &Subscription, declared: &mut Declared, drain: bool, limit: usize) {
    let tag = declared.consumer.tag();
    let cancel = declared
        .channel
        .basic_cancel(tag.as_str(), BasicCancelOptions::default());
    let cancelled = matches!(tokio::time::timeout(OP_TIMEOUT, cancel).await, Ok(Ok(())));
    let mut handled = 0u64;
    if drain && cancelled {
        use futures::StreamExt;
        while let Ok(Some(Ok(delivery))) =
            tokio::time::timeout(DRAIN_IDLE, declared.consumer.next()).await
        {
            relay(sub, delivery, limit).await;
            handled += 1;
        }
    }
    let close = declared
        .channel
        .close(200, "consumer left its shared queue");
    let _ = tokio::time::timeout(OP_TIMEOUT, close).await;
    debug!(
        "Event bus subscription {sub} left its queue {} (handled {handled} message(s) it held)",
        declared.queue
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_arguments_say_the_queue_type_and_the_limits_asked_for() {
        let mut queue = AmqpQueue {
            name: "g:e:r".into(),
            quorum: true,
            prefetch: None,
            delivery_limit: Some(3),
            dead_letter_exchange: Some("dead".into()),
        };
        let args = arguments(&queue);
        let get = |key: &str| args.inner().get(key).cloned();
        assert_eq!(
            get("x-queue-type"),
            Some(AMQPValue::LongString("quorum".into()))
        );
        assert_eq!(get("x-delivery-limit"), Some(AMQPValue::LongLongInt(3)));
        assert_eq!(
            get("x-dead-letter-exchange"),
            Some(AMQPValue::LongString("dead".into()))
        );
        queue.quorum = false;
        queue.delivery_limit = None;
        queue.dead_letter_exchange = None;
        let args = arguments(&queue);
        assert_eq!(args.inner().len(), 1);
        assert_eq!(
            args.inner().get("x-queue-type"),
            Some(&AMQPValue::LongString("classic".into()))
        );
    }

    #[test]
    fn a_delivery_count_is_read_from_any_integer() {
        assert_eq!(count_value(&AMQPValue::LongInt(2)), Some(2));
        assert_eq!(count_value(&AMQPValue::LongLongInt(7)), Some(7));
        assert_eq!(count_value(&AMQPValue::LongLongInt(-1)), None);
        assert_eq!(count_value(&AMQPValue::LongString("2".into())), None);
    }
}
