//! AMQP eventbus: wire-compatible with brewblox-service 0.20.0 (docs/brewblox-service-0.20.0.md),
//! surviving broker faults.
//!
//! Layout, one job per module:
//! - [`config`] holds settings, the exchange type, URL parsing and password redaction;
//! - [`names`] checks every name sent to the broker (AMQP short strings);
//! - `connection` supervises one connection (connect, notice loss, reconnect);
//! - `listener` gives each subscription a channel, a queue (exclusive, or the named durable
//!   queue of a shared or durable subscription, see `shared_queue`) and a consumer task,
//!   which hands each message to [`crate::eventbus::delivery`] and acks after the handler;
//! - `shared_queue`: how a shared or durable subscription's named queue is declared,
//!   consumed and left (never deleted);
//! - `publisher` does confirmed publishes on a self-healing channel;
//! - [`subscription`] has what an AMQP subscription adds to the common
//!   [`crate::eventbus::Subscription`] (its exchange type, the broker's refusal);
//! - [`health`] builds the serialisable report;
//! - [`error`] defines [`BusError`].
//!
//! The original's quirks (numbered as in that page): the stuck publisher (5) is fixed; loss is
//! noticed at once and dead peers within two heartbeats (6); ack is sent after the handler
//! returns, but delivery stays at-most-once because queues are exclusive (7) — except for the
//! shared and durable subscriptions, whose named queues make it at-least-once; handlers run
//! per subscription, not serially for all (8). Publish payloads carry no AMQP properties,
//! exactly as the original (no content-type), so the wire is identical.

pub mod config;
mod connection;
pub mod error;
pub mod health;
mod listener;
pub mod names;
mod publisher;
mod shared_queue;
pub mod subscription;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use plugin_abi::sharing::AmqpQueue;
use tokio::runtime::Handle;
use tokio::sync::watch;
use tracing::{info, warn};

pub use crate::eventbus::{Sink, Subscription, SubscriptionState};
pub use config::{
    parse_eventbus_url, BusConfig, ExchangeKind, ParseExchangeKindError, DEFAULT_MAX_MESSAGE_SIZE,
};
pub use error::BusError;
pub use health::{BusHealth, BusState, ConnectionHealth, SubscriptionHealth};
pub use names::{check_names, validate_routing_key, MAX_NAME_BYTES};

use crate::metrics::bus::BusMetrics;
use connection::LinkStatus;
use listener::Listener;
use publisher::Publisher;

/// The host's eventbus: a lazily connected listener and publisher. Cheap to clone.
///
/// Call [`EventBus::shutdown`] before dropping the last clone: background tasks keep the
/// connections alive until then.
#[derive(Clone)]
pub struct EventBus {
    inner: Arc<Shared>,
}

struct Shared {
    cfg: Arc<BusConfig>,
    listener: Arc<Listener>,
    publisher: Publisher,
    stopping: watch::Sender<bool>,
    next_id: AtomicU64,
    runtime: Option<Handle>,
    metrics: BusMetrics,
}

impl EventBus {
    /// Connects nothing yet: the listener connects at the first subscription, the publisher
    /// at the first publish. Everything it records goes to `metrics`.
    pub fn new(cfg: BusConfig, metrics: BusMetrics) -> Self {
        let cfg = Arc::new(cfg);
        let stopping = watch::channel(false).0;
        EventBus {
            inner: Arc::new(Shared {
                listener: Listener::new(cfg.clone(), stopping.subscribe(), metrics.clone()),
                publisher: Publisher::new(cfg.clone(), stopping.subscribe(), metrics.clone()),
                metrics,
                cfg,
                stopping,
                next_id: AtomicU64::new(1),
                runtime: Handle::try_current().ok(),
            }),
        }
    }

    pub fn config(&self) -> &BusConfig {
        &self.inner.cfg
    }

    /// The runtime the bus runs on: the current one, else the one it was made in.
    pub(crate) fn runtime(&self) -> Option<Handle> {
        Handle::try_current()
            .ok()
            .or_else(|| self.inner.runtime.clone())
    }

    /// Synchronous, never fails for broker reasons. Works before the bus connected, while
    /// down, any time. The subscription is declared whenever the listener is connected, and
    /// again (new queue) after every reconnect, until cancelled. After `shutdown` the
    /// returned subscription is already cancelled. [`EventBus::ready`] waits until it is
    /// bound.
    ///
    /// Errors: only [`BusError::InvalidName`], for a name AMQP cannot carry.
    pub fn subscribe(
        &self,
        exchange: &str,
        routing: &str,
        kind: ExchangeKind,
        sink: Arc<dyn Sink>,
    ) -> Result<Subscription, BusError> {
        self.subscribe_to(exchange, routing, kind, None, sink)
    }

    /// As [`subscribe`](EventBus::subscribe), consuming the named, durable `queue` of a
    /// shared or durable subscription (see [`plugin_abi::sharing`]) rather than an exclusive
    /// queue of its own: ack after the handler, `queue`'s prefetch, and a cancel, a
    /// reconnect or a stop ends only the consumer, never the queue.
    pub fn subscribe_shared(
        &self,
        exchange: &str,
        routing: &str,
        kind: ExchangeKind,
        queue: AmqpQueue,
        sink: Arc<dyn Sink>,
    ) -> Result<Subscription, BusError> {
        self.subscribe_to(exchange, routing, kind, Some(queue), sink)
    }

    fn subscribe_to(
        &self,
        exchange: &str,
        routing: &str,
        kind: ExchangeKind,
        shared: Option<AmqpQueue>,
        sink: Arc<dyn Sink>,
    ) -> Result<Subscription, BusError> {
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let metrics = self.inner.metrics.clone();
        let sub = subscription::new(id, exchange, routing, kind, shared, sink, metrics)?;
        if *self.inner.stopping.borrow() {
            warn!("Event bus is shut down; subscription {sub} ignored");
            sub.cancel();
            return Ok(sub);
        }
        info!("Event bus subscription {sub} ({kind}) registered");
        self.inner.listener.add(sub.clone(), self.runtime());
        Ok(sub)
    }

    /// Publish `payload` (raw bytes, any owner of them; the caller hands JSON). `Ok` only when the broker
    /// confirmed it. Declares the exchange (type `kind`, non-durable, auto-delete) first unless
    /// `declare_exchange` is false (for pre-declared exchanges such as `amq.topic`).
    ///
    /// Errors: [`BusError::InvalidName`] (a name AMQP cannot carry; nothing is sent),
    /// [`BusError::Unavailable`] (unreachable/down; fails fast), [`BusError::Rejected`]
    /// (nack), [`BusError::Channel`] (e.g. 406 type mismatch, 404 no exchange — the next
    /// publish works again), [`BusError::Timeout`] (no answer within `publish_timeout`, e.g.
    /// blocked broker), [`BusError::ShuttingDown`].
    pub async fn publish(
        &self,
        exchange: &str,
        routing: &str,
        payload: impl AsRef<[u8]>,
        kind: ExchangeKind,
        declare_exchange: bool,
    ) -> Result<(), BusError> {
        // A subscription made outside a runtime gets its listener started here.
        self.inner.listener.start(self.runtime());
        self.inner
            .publisher
            .publish(exchange, routing, payload.as_ref(), kind, declare_exchange)
            .await
    }

    /// Waits until `sub` is bound, so that a message published after it returns reaches it.
    /// Bounded by `publish_timeout`.
    ///
    /// Errors: the broker's refusal (a [`BusError::Channel`], e.g. 406 for an exchange of
    /// another type) as soon as it comes; [`BusError::Unavailable`] when a connection attempt
    /// fails meanwhile (at once when the broker is down) or the bound passes while
    /// disconnected; [`BusError::Timeout`] when it passes while connected (a transient
    /// failure keeps being retried); [`BusError::Cancelled`]; [`BusError::ShuttingDown`].
    pub async fn ready(&self, sub: &Subscription) -> Result<(), BusError> {
        let link = &self.inner.listener.link;
        let mut status = link.subscribe();
        let seen = link.failed_attempts();
        link.nudge();
        let bound = subscription::bound(sub);
        let deadline = tokio::time::sleep(self.inner.cfg.publish_timeout);
        tokio::pin!(bound, deadline);
        loop {
            tokio::select! {
                result = &mut bound => return result,
                changed = status.changed() => {
                    if changed.is_err() {
                        return Err(BusError::ShuttingDown);
                    }
                    match &*status.borrow_and_update() {
                        LinkStatus::Down { error, seq } if *seq > seen => {
                            return Err(BusError::Unavailable(error.clone()))
                        }
                        LinkStatus::Closed => return Err(BusError::ShuttingDown),
                        _ => {}
                    }
                }
                _ = &mut deadline => {
                    let waited = self.inner.cfg.publish_timeout;
                    return Err(match (link.current(), sub.failure()) {
                        (None, _) => BusError::Unavailable(format!(
                            "not connected to {} after {waited:?}",
                            self.inner.cfg.endpoint()
                        )),
                        (Some(_), Some(error)) => BusError::Unavailable(format!(
                            "not bound after {waited:?}: {error}"
                        )),
                        (Some(_), None) => BusError::Timeout,
                    });
                }
            }
        }
    }

    /// Live subscriptions (not cancelled).
    pub fn subscriptions(&self) -> Vec<Subscription> {
        self.inner.listener.subscriptions()
    }

    pub fn health(&self) -> BusHealth {
        health::combine(
            self.inner.listener.link.health(),
            self.inner.publisher.link.health(),
            &self.inner.listener.subscriptions(),
        )
    }

    /// Graceful: stop consuming (basic.cancel), let in-flight handlers finish (bounded by
    /// `deadline`; stragglers are aborted), close channels and connections. Publishes fail
    /// with `ShuttingDown` from now on. Idempotent. Total time ≤ `deadline` + a few seconds
    /// for the close handshakes.
    pub async fn shutdown(&self, deadline: Duration) {
        if self.inner.stopping.send_replace(true) {
            // Already stopping: still wait for the connections to be closed.
            self.inner.listener.link.close().await;
            self.inner.publisher.link.close().await;
            return;
        }
        info!("Closing event bus");
        self.inner.listener.shutdown(deadline).await;
        self.inner.publisher.shutdown().await;
        info!("Closed event bus");
    }
}
