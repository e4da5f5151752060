//! The listener: one connection, one channel and one consumer task per subscription.
//!
//! A channel per subscription means a broker refusal (406 exchange type mismatch) closes only
//! that subscription's channel, and a task per subscription means a slow handler only delays
//! its own subscription. Within a task messages are handled one at a time, in order.
//!
//! A shared or durable subscription consumes a named queue instead (`super::shared_queue`),
//! which a cancel, a retirement or a stop leaves in place.
//!
//! Delivery ([`crate::eventbus::delivery`]): the message is acked *after* its handler
//! returned (success or error), so the
//! broker's unacked count — bounded by `prefetch` — also covers the message being handled and
//! memory stays bounded under a flood. Queues are exclusive and die with the connection, so
//! delivery is at-most-once overall: messages published while disconnected, and those
//! prefetched or in a handler when the connection drops, are lost (as in the original).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicGetOptions, BasicQosOptions,
    BasicRejectOptions, QueueBindOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::FieldTable;
use lapin::{Channel, Connection, Consumer};
use tokio::runtime::Handle;
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;
use tracing::{debug, error, info, warn};

use super::config::{declare_exchange_like_original, BusConfig};
use super::connection::{wait_true, Link, LinkStatus, Live};
use super::error::BusError;
use super::shared_queue;
use super::subscription::{amqp, Amqp};
use crate::eventbus::delivery::{self, Settle};
use crate::eventbus::{Delivered, Subscription, SubscriptionState};
use crate::metrics::bus::{BusMetrics, Dropped};
use crate::sync::Unpoisoned;

/// Longest pause between re-declaring a subscription the broker refused.
const MAX_DECLARE_BACKOFF: Duration = Duration::from_secs(30);
/// Bound for the small per-channel RPCs done while tearing down (cancel, delete, close, ack).
pub(super) const OP_TIMEOUT: Duration = Duration::from_secs(2);

pub(crate) struct Listener {
    pub(crate) link: Arc<Link>,
    cfg: Arc<BusConfig>,
    subs: Mutex<Vec<Subscription>>,
    changed: Notify,
    stopping: watch::Receiver<bool>,
    started: AtomicBool,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    reconciler: Mutex<Option<JoinHandle<()>>>,
}

impl Listener {
    pub fn new(
        cfg: Arc<BusConfig>,
        stopping: watch::Receiver<bool>,
        metrics: BusMetrics,
    ) -> Arc<Self> {
        Arc::new(Listener {
            link: Link::new("listener", cfg.clone(), metrics),
            cfg,
            subs: Mutex::new(Vec::new()),
            changed: Notify::new(),
            stopping,
            started: AtomicBool::new(false),
            tasks: Mutex::new(Vec::new()),
            reconciler: Mutex::new(None),
        })
    }

    /// Register a subscription; it is declared as soon as (or whenever) we are connected.
    pub fn add(self: &Arc<Self>, sub: Subscription, handle: Option<Handle>) {
        self.subs.locked().push(sub);
        self.changed.notify_one();
        self.start(handle);
    }

    /// Connect only once there is something to listen to (as the original).
    pub fn start(self: &Arc<Self>, handle: Option<Handle>) {
        if *self.stopping.borrow() || self.subs.locked().is_empty() {
            return;
        }
        let Some(handle) = handle else {
            debug!("No tokio runtime yet; event bus listener starts on the next call");
            return;
        };
        if self.started.swap(true, Ordering::SeqCst) {
            return;
        }
        self.link.start(&handle);
        let task = handle.spawn(self.clone().reconcile_loop());
        *self.reconciler.locked() = Some(task);
    }

    /// Live (not cancelled) subscriptions.
    pub fn subscriptions(&self) -> Vec<Subscription> {
        let mut subs = self.subs.locked();
        subs.retain(|s| !s.is_cancelled());
        subs.clone()
    }

    /// Stop consuming, let in-flight handlers finish (bounded by `deadline`), close.
    /// `stopping` must already be true.
    pub async fn shutdown(&self, deadline: Duration) {
        // The reconciler only starts tasks; stop it first so none start behind our back.
        if let Some(task) = self.reconciler.locked().take() {
            task.abort();
        }
        let tasks: Vec<JoinHandle<()>> = self.tasks.locked().drain(..).collect();
        let aborts: Vec<_> = tasks.iter().map(|t| t.abort_handle()).collect();
        if tokio::time::timeout(deadline, futures::future::join_all(tasks))
            .await
            .is_err()
        {
            warn!("Event bus handlers still running after {deadline:?}; abandoning them");
            aborts.iter().for_each(|a| a.abort());
        }
        self.link.close().await;
        for sub in self.subs.locked().iter() {
            sub.set_state(SubscriptionState::Pending);
        }
    }

    /// For each connection: start a task for every live subscription, and for every new one.
    async fn reconcile_loop(self: Arc<Self>) {
        let mut status = self.link.subscribe();
        let mut stopping = self.stopping.clone();
        loop {
            let live = match &*status.borrow_and_update() {
                LinkStatus::Connected(live) => Some(live.clone()),
                LinkStatus::Closed => return,
                _ => None,
            };
            if let Some(live) = live {
                loop {
                    self.reconcile(&live);
                    tokio::select! {
                        biased;
                        _ = wait_true(&mut stopping) => return,
                        _ = live.lost() => break,
                        _ = self.changed.notified() => {}
                    }
                }
            }
            tokio::select! {
                biased;
                _ = wait_true(&mut stopping) => return,
                r = status.changed() => if r.is_err() { return },
            }
        }
    }

    fn reconcile(self: &Arc<Self>, live: &Live) {
        if *self.stopping.borrow() {
            return;
        }
        let subs = self.subscriptions();
        let mut tasks = self.tasks.locked();
        tasks.retain(|t| !t.is_finished());
        for sub in subs {
            let Some(amqp) = amqp(&sub) else { continue };
            if amqp.generation.swap(live.generation, Ordering::SeqCst) == live.generation {
                continue;
            }
            tasks.push(tokio::spawn(run_subscription(
                sub,
                live.clone(),
                self.link.clone(),
                self.cfg.clone(),
                self.stopping.clone(),
            )));
        }
    }
}

enum ConsumeEnd {
    Cancelled,
    Stopping,
    Lost,
    StreamEnded(String),
}

pub(super) struct Declared {
    pub channel: Channel,
    pub consumer: Consumer,
    pub queue: String,
}

/// Declare exactly as brewblox-service 0.20.0 does, on a channel of its own; a shared or
/// durable subscription declares its named queue instead (see [`shared_queue`]).
async fn declare(
    conn: &Connection,
    sub: &Subscription,
    prefetch: u16,
) -> Result<Declared, BusError> {
    let channel = conn.create_channel().await?;
    let shared = super::subscription::shared_queue(sub);
    let prefetch = shared.and_then(|queue| queue.prefetch).unwrap_or(prefetch);
    channel
        .basic_qos(prefetch, BasicQosOptions::default())
        .await?;
    declare_exchange_like_original(&channel, sub.exchange(), super::subscription::kind(sub))
        .await?;
    let queue = match shared {
        Some(queue) => {
            shared_queue::declare(&channel, queue).await?;
            queue.name.clone()
        }
        None => channel
            .queue_declare(
                "",
                QueueDeclareOptions {
                    exclusive: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await?
            .name()
            .as_str()
            .to_string(),
    };
    channel
        .queue_bind(
            &queue,
            sub.exchange(),
            sub.routing(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let consumer = channel
        .basic_consume(
            &queue,
            "",
            BasicConsumeOptions {
                no_ack: false,
                ..BasicConsumeOptions::default()
            },
            FieldTable::default(),
        )
        .await?;
    Ok(Declared {
        channel,
        consumer,
        queue,
    })
}

/// What ends a subscription's task on one connection: a cancel, the bus stopping, or the
/// connection going away. Every wait of the task is cut short by any of them.
struct Ends {
    cancel: watch::Receiver<bool>,
    stopping: watch::Receiver<bool>,
    live: Live,
}

impl Ends {
    fn over(&self, sub: &Subscription) -> bool {
        sub.is_cancelled() || *self.stopping.borrow() || self.live.is_lost()
    }

    /// Resolves when any end comes.
    async fn any(&mut self) {
        tokio::select! {
            biased;
            _ = wait_true(&mut self.cancel) => {}
            _ = wait_true(&mut self.stopping) => {}
            _ = self.live.lost() => {}
        }
    }

    /// Sleeps `pause`, or less if an end comes first.
    async fn pause(&mut self, pause: Duration) {
        if pause.is_zero() {
            return;
        }
        tokio::select! {
            _ = self.any() => {}
            _ = tokio::time::sleep(pause) => {}
        }
    }
}

/// Pauses between re-declarations: none before the first retry (a transient refusal, such as
/// an auto-delete exchange that vanished between declare and bind, is usually gone at once),
/// then doubling from `base` up to [`MAX_DECLARE_BACKOFF`].
struct Backoff {
    base: Duration,
    next: Duration,
}

impl Backoff {
    fn new(base: Duration) -> Self {
        Backoff {
            base: base.max(Duration::from_millis(10)),
            next: Duration::ZERO,
        }
    }

    fn next(&mut self) -> Duration {
        let pause = self.next;
        self.next = (pause * 2).clamp(self.base, MAX_DECLARE_BACKOFF);
        pause
    }

    fn reset(&mut self) {
        self.next = Duration::ZERO;
    }
}

/// Serve one subscription on one connection until cancelled, stopping, or the connection ends.
async fn run_subscription(
    sub: Subscription,
    live: Live,
    link: Arc<Link>,
    cfg: Arc<BusConfig>,
    stopping: watch::Receiver<bool>,
) {
    let mut ends = Ends {
        cancel: sub.cancel_signal(),
        stopping,
        live: live.clone(),
    };
    let Some(amqp) = amqp(&sub) else { return };
    // Wait for the previous connection's task of this subscription (keeps order).
    let _serving = tokio::select! {
        biased;
        _ = ends.any() => return,
        guard = sub.serve() => guard,
    };
    let mut backoff = Backoff::new(cfg.reconnect_interval.min(Duration::from_millis(100)));
    while !ends.over(&sub) {
        let mut declared = match declare_bounded(&live, &sub, &cfg).await {
            Ok(declared) => declared,
            Err(_) if live.is_lost() => break, // the supervisor reconnects and we come back
            Err(err) => {
                report_declare_failure(&sub, amqp, err);
                ends.pause(backoff.next()).await;
                continue;
            }
        };
        backoff.reset();
        amqp.declared(&sub, &declared.queue);
        let end = consume(&sub, &mut declared, &live, cfg.max_message_size, &mut ends).await;
        match end {
            ConsumeEnd::Cancelled => {
                let limit = cfg.max_message_size;
                if amqp.shared.is_some() {
                    shared_queue::leave(&sub, &mut declared, sub.drains(), limit).await;
                } else {
                    if sub.drains() {
                        drain(&sub, &mut declared, limit).await;
                    } else {
                        cancel_consumer(&declared).await;
                    }
                    delete_queue(&declared).await;
                }
                info!("Cancelled event bus subscription {sub}");
                break;
            }
            ConsumeEnd::Stopping => {
                stop_consumer(&declared).await;
                break;
            }
            ConsumeEnd::Lost => break,
            ConsumeEnd::StreamEnded(reason) => {
                link.check_now();
                if live.is_lost() {
                    break;
                }
                // Channel-level end (queue deleted, consumer_timeout, …): redeclare on a
                // fresh channel.
                warn!("Consumer of event bus subscription {sub} stopped ({reason}); redeclaring");
                sub.set_state(SubscriptionState::Pending);
                let stale = std::mem::take(&mut declared.queue);
                drop(declared);
                // A named queue is the group's: its message goes to a consumer again.
                if amqp.shared.is_none() {
                    delete_stale_queue(&live.conn, &stale).await;
                }
                ends.pause(backoff.next()).await;
            }
        }
    }
    if sub.is_cancelled() {
        sub.set_state(SubscriptionState::Cancelled);
    } else if !matches!(sub.state(), SubscriptionState::Failed { .. }) || live.is_lost() {
        sub.set_state(SubscriptionState::Pending);
    }
}

/// [`declare`], bounded by the connect timeout.
async fn declare_bounded(
    live: &Live,
    sub: &Subscription,
    cfg: &BusConfig,
) -> Result<Declared, BusError> {
    tokio::time::timeout(cfg.connect_timeout, declare(&live.conn, sub, cfg.prefetch))
        .await
        .unwrap_or(Err(BusError::Timeout))
}

/// Marks the subscription failed, logging the error once (not at every retry).
fn report_declare_failure(sub: &Subscription, amqp: &Amqp, err: BusError) {
    let text = err.to_string();
    {
        let mut logged = amqp.last_logged_error();
        if logged.as_deref() != Some(text.as_str()) {
            error!("Failed to declare event bus subscription {sub}: {text}");
            *logged = Some(text);
        } else {
            debug!("Declaring event bus subscription {sub} failed again: {text}");
        }
    }
    amqp.failed(sub, err);
}

/// How long a retiring subscription may take to hand over what its queue holds.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a retiring shared subscription waits for a next delivery before it leaves.
pub(super) const DRAIN_IDLE: Duration = Duration::from_millis(100);

/// Retires a subscription's exclusive queue (a reload's old generation), handing its handler
/// everything the queue holds, in order, within [`DRAIN_TIMEOUT`]. A message published while
/// the next generation's queue was not yet bound is in this queue only; without this it
/// would be deleted with it.
///
/// Each step leaves nothing in doubt, so no message depends on a timing guess:
/// 1. unbind the queue: nothing new arrives;
/// 2. cancel the consumer: the broker writes every message it delivered to the consumer
///    before confirming the cancel (the channel is ordered), and lapin ends the consumer's
///    stream after the last of them; relay them all;
/// 3. fetch what the queue still holds (messages the prefetch bound kept back) one at a time,
///    until the broker answers that none is left.
///
/// The caller then deletes the queue.
async fn drain(sub: &Subscription, declared: &mut Declared, limit: usize) {
    let unbind = declared.channel.queue_unbind(
        &declared.queue,
        sub.exchange(),
        sub.routing(),
        FieldTable::default(),
    );
    let unbound = matches!(tokio::time::timeout(OP_TIMEOUT, unbind).await, Ok(Ok(())));
    if !cancel_consumer(declared).await || !unbound {
        return;
    }
    let deadline = tokio::time::Instant::now() + DRAIN_TIMEOUT;
    let mut drained = 0u64;
    let mut complete = false;
    while let Ok(next) = tokio::time::timeout_at(deadline, declared.consumer.next()).await {
        let Some(Ok(delivery)) = next else {
            complete = true;
            break;
        };
        relay(sub, delivery, limit).await;
        drained += 1;
    }
    if complete {
        (complete, drained) = fetch_the_rest(sub, declared, limit, deadline, drained).await;
    }
    if !complete {
        warn!("Event bus subscription {sub} still held messages after {DRAIN_TIMEOUT:?}; the rest go with its queue");
    }
    if drained > 0 {
        debug!(
            "Retiring event bus subscription {sub} handled the {drained} message(s) its queue held"
        );
    }
}

/// Step 3 of [`drain`]: `basic.get` until the queue is empty (true) or the deadline passes
/// or the channel fails (false); returns that and the count of messages relayed so far.
async fn fetch_the_rest(
    sub: &Subscription,
    declared: &Declared,
    limit: usize,
    deadline: tokio::time::Instant,
    mut drained: u64,
) -> (bool, u64) {
    let get = BasicGetOptions { no_ack: false };
    loop {
        let fetch = declared.channel.basic_get(&declared.queue, get);
        match tokio::time::timeout_at(deadline, fetch).await {
            Ok(Ok(Some(message))) => {
                let left = message.message_count;
                relay(sub, message.delivery, limit).await;
                drained += 1;
                if left == 0 {
                    return (true, drained);
                }
            }
            Ok(Ok(None)) => return (true, drained),
            Ok(Err(err)) => {
                debug!("Fetching what event bus subscription {sub} held failed: {err}");
                return (false, drained);
            }
            Err(_) => return (false, drained),
        }
    }
}

/// Stops the consumer (bounded); whether the broker confirmed it.
async fn cancel_consumer(declared: &Declared) -> bool {
    let tag = declared.consumer.tag();
    let cancel = declared
        .channel
        .basic_cancel(tag.as_str(), BasicCancelOptions::default());
    matches!(tokio::time::timeout(OP_TIMEOUT, cancel).await, Ok(Ok(())))
}

/// After a cancel: delete the queue, close the channel (each bounded).
async fn delete_queue(declared: &Declared) {
    let ch = &declared.channel;
    let _ = tokio::time::timeout(
        OP_TIMEOUT,
        ch.queue_delete(&declared.queue, QueueDeleteOptions::default()),
    )
    .await;
    let _ = tokio::time::timeout(OP_TIMEOUT, ch.close(200, "subscription cancelled")).await;
}

/// At shutdown: stop the consumer and close the channel, under one bound so that a dead peer
/// does not make shutdown wait twice.
async fn stop_consumer(declared: &Declared) {
    let tag = declared.consumer.tag();
    let ch = &declared.channel;
    let _ = tokio::time::timeout(OP_TIMEOUT, async {
        let _ = ch
            .basic_cancel(tag.as_str(), BasicCancelOptions::default())
            .await;
        let _ = ch.close(200, "shutdown").await;
    })
    .await;
}

async fn consume(
    sub: &Subscription,
    declared: &mut Declared,
    live: &Live,
    limit: usize,
    ends: &mut Ends,
) -> ConsumeEnd {
    // The three ends are made once, not per message: each is a watch registration (a lock
    // and a waker). They are polled only when the consumer has nothing to hand over; while
    // messages are waiting, their values are read before each one instead (`ended`), which
    // is a fraction of a poll.
    let stopping = ends.stopping.clone();
    let cancelled = wait_true(&mut ends.cancel);
    let stop = wait_true(&mut ends.stopping);
    let lost = live.lost();
    tokio::pin!(cancelled, stop, lost);
    loop {
        let next = tokio::select! {
            biased;
            next = declared.consumer.next() => next,
            _ = &mut cancelled => return ConsumeEnd::Cancelled,
            _ = &mut stop => return ConsumeEnd::Stopping,
            _ = &mut lost => return ConsumeEnd::Lost,
        };
        if let Some(end) = ended(sub, &stopping, live) {
            // A retiring subscription hands its handler what its queue holds (`drain`), and
            // this message first, in order: its queue is deleted next, and a message
            // published before the next generation's queue was bound is in it only.
            if let (ConsumeEnd::Cancelled, Some(Ok(delivery))) = (&end, next) {
                if sub.drains() {
                    relay(sub, delivery, limit).await;
                }
            }
            return end;
        }
        match next {
            Some(Ok(delivery)) => relay(sub, delivery, limit).await,
            Some(Err(err)) => return ConsumeEnd::StreamEnded(err.to_string()),
            None => return ConsumeEnd::StreamEnded("consumer cancelled by the broker".into()),
        }
    }
}

/// Whether the subscription was cancelled, the host is stopping or the connection is lost,
/// in that order (the order in which `consume` polls them): a message taken from the
/// consumer after one of them is not handled, but for a retiring subscription's.
fn ended(sub: &Subscription, stopping: &watch::Receiver<bool>, live: &Live) -> Option<ConsumeEnd> {
    if sub.is_cancelled() {
        Some(ConsumeEnd::Cancelled)
    } else if *stopping.borrow() {
        Some(ConsumeEnd::Stopping)
    } else if live.is_lost() {
        Some(ConsumeEnd::Lost)
    } else {
        None
    }
}

/// Deletes the queue of a consumer the broker ended on its own (best effort, bounded). An
/// exclusive queue outlives its channel: after a `consumer_timeout` it holds the requeued
/// delivery and, with no consumer, would collect every matching message until the connection
/// ends. Consuming it again instead would hand the handler that timed out the same message
/// again, and time out again: a loop. The message already went to the handler once.
async fn delete_stale_queue(conn: &Connection, queue: &str) {
    let delete = async {
        let ch = conn.create_channel().await?;
        ch.queue_delete(queue, QueueDeleteOptions::default())
            .await?;
        ch.close(200, "stale queue deleted").await
    };
    match tokio::time::timeout(OP_TIMEOUT, delete).await {
        Ok(Ok(())) => debug!("Deleted stale queue {queue}"),
        Ok(Err(err)) => debug!("Stale queue {queue} not deleted: {err}"),
        Err(_) => debug!("Deleting stale queue {queue} timed out"),
    }
}

/// Hand one message to the sink ([`delivery::handle`]), then ack. A message over `limit`
/// (0: none) never reaches the sink: it is logged and rejected without requeue, so a
/// dead-letter exchange, if the operator set one by policy, keeps it.
pub(super) async fn relay(sub: &Subscription, delivery: Delivery, limit: usize) {
    let redelivery = shared_queue::redelivery(&delivery);
    let Delivery {
        routing_key,
        data,
        acker,
        ..
    } = delivery;
    if limit > 0 && data.len() > limit {
        let metrics = sub.metrics();
        let _unacked = metrics.unacked();
        metrics.dropped(Dropped::TooLarge);
        error!(
            "Exception relaying message in {sub}: message with routing key '{routing_key}' \
             of {} bytes is larger than the limit of {limit} bytes (--eventbus-max-message-size); \
             rejected",
            data.len()
        );
        let reject = acker.reject(BasicRejectOptions { requeue: false });
        return settle(sub, "Reject", reject).await;
    }
    // The body moves into the payload and, for a plugin, into its handler: never copied.
    delivery::handle(
        sub,
        routing_key.as_str(),
        data.into(),
        redelivery,
        Ack(acker),
    )
    .await;
}

/// AMQP settles a message by acking it, whatever the handler's outcome: a failed message is
/// not redelivered, as in the original.
struct Ack(lapin::acker::Acker);

impl Settle for Ack {
    async fn settle(self, sub: &Subscription, _: &Delivered) {
        settle(sub, "Ack", self.0.ack(BasicAckOptions::default())).await;
    }
}

/// Sends a delivery's ack or reject, bounded. A failure is only worth a debug line: the
/// channel went away with the connection, its tags are stale, and the exclusive queue went
/// with it, so there is nothing to redo.
async fn settle(
    sub: &Subscription,
    what: &str,
    op: impl std::future::Future<Output = lapin::Result<()>>,
) {
    match tokio::time::timeout(OP_TIMEOUT, op).await {
        Ok(Ok(())) => {}
        Ok(Err(err)) => debug!("{what} in {sub} not sent: {err}"),
        Err(_) => debug!("{what} in {sub} timed out"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_retries_at_once_then_doubles_up_to_the_cap() {
        let mut backoff = Backoff::new(Duration::from_millis(100));
        let pauses: Vec<u128> = (0..4).map(|_| backoff.next().as_millis()).collect();
        assert_eq!(pauses, [0, 100, 200, 400]);
        for _ in 0..20 {
            backoff.next();
        }
        assert_eq!(backoff.next(), MAX_DECLARE_BACKOFF);
        backoff.reset();
        assert_eq!(backoff.next(), Duration::ZERO);
    }
}
