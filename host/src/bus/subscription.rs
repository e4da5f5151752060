//! The caller's handle on one subscription, and the sink it delivers to.
//!
//! A `Subscription` outlives connections: the listener re-declares it (new queue) after every
//! reconnect until `cancel()` is called. Its state is a `watch` so health and tests can both
//! read it and wait for it without polling.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::sync::watch;

use tracing::info;

use super::config::ExchangeKind;
use super::error::BusError;
use super::names::check_names;
use crate::delivery::Delivered;
use crate::sync::{Unpoisoned, UnpoisonedRw};

/// What a subscription calls for each delivered message. Implemented by the host's plugin glue.
///
/// `body` is the raw payload; decoding (JSON) is the sink's job, and an `Err` (refused, failed,
/// panicked) is logged as `Exception relaying message in <r @ e>: <err>` and the message dropped.
pub trait MessageSink: Send + Sync + 'static {
    fn deliver(
        &self,
        sub: &Subscription,
        routing_key: &str,
        body: Vec<u8>,
    ) -> BoxFuture<'static, Delivered>;

    /// The plugin the messages go to, if a plugin's; shown in health.
    fn owner(&self) -> Option<&str> {
        None
    }
}

/// Where a subscription is in its life on the broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubscriptionState {
    /// Waiting for a connection (or between a lost connection and the re-declare).
    Pending,
    /// Declared and consuming from `queue` (server-named, exclusive).
    Active { queue: String },
    /// The broker refused the declaration (e.g. 406 exchange type mismatch); retried with
    /// back-off, on its own channel, so other subscriptions are not affected.
    Failed { error: String },
    /// `cancel()` was called; terminal.
    Cancelled,
}

impl SubscriptionState {
    /// Short name used in health output.
    pub fn name(&self) -> &'static str {
        match self {
            SubscriptionState::Pending => "pending",
            SubscriptionState::Active { .. } => "active",
            SubscriptionState::Failed { .. } => "failed",
            SubscriptionState::Cancelled => "cancelled",
        }
    }
}

pub(crate) struct SubInner {
    id: u64,
    exchange: String,
    routing: String,
    kind: ExchangeKind,
    sink: RwLock<Arc<dyn MessageSink>>,
    cancelled: AtomicBool,
    /// Set by [`Subscription::retire`]: the cancel first hands the handler what the queue
    /// holds already.
    draining: AtomicBool,
    cancel_tx: watch::Sender<bool>,
    state_tx: watch::Sender<SubscriptionState>,
    /// Connection generation whose task serves this subscription (0 = none yet).
    pub(crate) generation: AtomicU64,
    /// Held by the consuming task for its whole life, so the task for the next connection
    /// starts only after the previous one finished its in-flight handler: per-subscription
    /// order is kept across reconnects.
    pub(crate) order: tokio::sync::Mutex<()>,
    /// Last declaration error that was logged, so a failing declare is logged once.
    pub(crate) last_logged_error: Mutex<Option<String>>,
    /// The broker's refusal of the last declaration, while the state is `Failed` with one.
    refusal: Mutex<Option<BusError>>,
    /// This subscription's metrics, resolved at its first message.
    metrics: std::sync::OnceLock<crate::metrics::bus::SubscriptionSeries>,
}

/// A handle on one subscription. Cheap to clone; all clones are the same subscription.
#[derive(Clone)]
pub struct Subscription {
    pub(crate) inner: Arc<SubInner>,
}

impl Subscription {
    pub(crate) fn new(
        id: u64,
        exchange: &str,
        routing: &str,
        kind: ExchangeKind,
        sink: Arc<dyn MessageSink>,
    ) -> Result<Self, BusError> {
        check_names(exchange, routing)?;
        Ok(Subscription {
            inner: Arc::new(SubInner {
                id,
                exchange: exchange.to_string(),
                routing: routing.to_string(),
                kind,
                sink: RwLock::new(sink),
                cancelled: AtomicBool::new(false),
                draining: AtomicBool::new(false),
                cancel_tx: watch::channel(false).0,
                state_tx: watch::channel(SubscriptionState::Pending).0,
                generation: AtomicU64::new(0),
                order: tokio::sync::Mutex::new(()),
                last_logged_error: Mutex::new(None),
                refusal: Mutex::new(None),
                metrics: std::sync::OnceLock::new(),
            }),
        })
    }

    pub fn id(&self) -> u64 {
        self.inner.id
    }

    pub fn exchange(&self) -> &str {
        &self.inner.exchange
    }

    pub fn routing(&self) -> &str {
        &self.inner.routing
    }

    pub fn kind(&self) -> ExchangeKind {
        self.inner.kind
    }

    /// Replace the sink; the next delivered message goes to the new one.
    pub fn set_sink(&self, sink: Arc<dyn MessageSink>) {
        *self.inner.sink.write_locked() = sink;
    }

    /// The plugin whose handler receives the messages, if a plugin's.
    pub fn owner(&self) -> Option<String> {
        self.sink().owner().map(str::to_owned)
    }

    /// Whether its messages go to `sink` (the same object, not an equal one).
    pub fn has_sink(&self, sink: &Arc<dyn MessageSink>) -> bool {
        Arc::ptr_eq(&self.sink(), sink)
    }

    /// This subscription's metrics series.
    pub(crate) fn metrics(&self) -> &crate::metrics::bus::SubscriptionSeries {
        self.inner.metrics.get_or_init(|| {
            crate::metrics::global().bus.subscription(
                super::connection::BUS,
                &self.inner.exchange,
                &self.inner.routing,
                self.sink().owner(),
            )
        })
    }

    pub(crate) fn sink(&self) -> Arc<dyn MessageSink> {
        self.inner.sink.read_locked().clone()
    }

    /// Stop consuming and delete the queue. Never restored after a reconnect. Idempotent.
    pub fn cancel(&self) {
        if !self.inner.cancelled.swap(true, Ordering::SeqCst) {
            self.inner.cancel_tx.send_replace(true);
            // If no task is running (not connected), nobody else will say so.
            if !matches!(
                *self.inner.state_tx.borrow(),
                SubscriptionState::Active { .. }
            ) {
                self.set_state(SubscriptionState::Cancelled);
            }
        }
    }

    pub fn is_cancelled(&self) -> bool {
        self.inner.cancelled.load(Ordering::SeqCst)
    }

    /// Cancels the subscription after handing its handler every message its queue holds
    /// already (bounded, see the listener): for a generation retiring at a hot swap, whose
    /// queue may hold messages published before the next generation's queue was bound.
    /// Those are handled by the old handler; none is lost with the queue.
    pub fn retire(&self) {
        self.inner.draining.store(true, Ordering::SeqCst);
        self.cancel();
    }

    /// Whether a cancel first drains the queue.
    pub(crate) fn drains(&self) -> bool {
        self.inner.draining.load(Ordering::SeqCst)
    }

    pub fn state(&self) -> SubscriptionState {
        self.inner.state_tx.borrow().clone()
    }

    /// The broker queue currently consumed, if active.
    pub fn queue(&self) -> Option<String> {
        match &*self.inner.state_tx.borrow() {
            SubscriptionState::Active { queue } => Some(queue.clone()),
            _ => None,
        }
    }

    /// Wait (bounded) until the state satisfies `pred`; returns that state, or `None` on timeout.
    pub async fn wait_state(
        &self,
        timeout: Duration,
        pred: impl FnMut(&SubscriptionState) -> bool,
    ) -> Option<SubscriptionState> {
        let mut rx = self.inner.state_tx.subscribe();
        let found = match tokio::time::timeout(timeout, rx.wait_for(pred)).await {
            Ok(Ok(state)) => Some(state.clone()),
            _ => None,
        };
        found
    }

    /// Wait (bounded) until active; returns the queue name.
    pub async fn wait_active(&self, timeout: Duration) -> Option<String> {
        match self
            .wait_state(timeout, |s| matches!(s, SubscriptionState::Active { .. }))
            .await
        {
            Some(SubscriptionState::Active { queue }) => Some(queue),
            _ => None,
        }
    }

    /// Waits until the subscription is bound (its queue consumes). Unbounded: callers bound
    /// it (see `EventBus::ready`).
    ///
    /// Errors: the broker's refusal ([`BusError::is_refusal`], e.g. a 406 for an exchange of
    /// another type) as soon as it comes, [`BusError::Cancelled`], or
    /// [`BusError::ShuttingDown`]. Transient failures are retried and waited through.
    pub async fn bound(&self) -> Result<(), BusError> {
        let mut rx = self.inner.state_tx.subscribe();
        let refusal = || self.inner.refusal.locked().clone();
        let result = rx
            .wait_for(|state| match state {
                SubscriptionState::Active { .. } | SubscriptionState::Cancelled => true,
                SubscriptionState::Failed { .. } => refusal().is_some(),
                SubscriptionState::Pending => false,
            })
            .await
            .map(|state| state.clone());
        match result {
            Ok(SubscriptionState::Active { .. }) => Ok(()),
            Ok(SubscriptionState::Cancelled) => Err(BusError::Cancelled),
            Ok(SubscriptionState::Failed { error }) => {
                Err(refusal().unwrap_or(BusError::Protocol(error)))
            }
            Ok(SubscriptionState::Pending) | Err(_) => Err(BusError::ShuttingDown),
        }
    }

    /// The last declaration failure, while the subscription is failed.
    pub fn failure(&self) -> Option<String> {
        match &*self.inner.state_tx.borrow() {
            SubscriptionState::Failed { error } => Some(error.clone()),
            _ => None,
        }
    }

    /// The broker refused (or failed) the declaration; retried by the listener.
    pub(crate) fn failed(&self, err: BusError) {
        let text = err.to_string();
        *self.inner.refusal.locked() = err.is_refusal().then_some(err);
        self.set_state(SubscriptionState::Failed { error: text });
    }

    /// Declared and consuming from `queue`.
    pub(crate) fn declared(&self, queue: &str) {
        *self.inner.refusal.locked() = None;
        *self.last_logged_error() = None;
        info!("Declared event bus subscription {self} as queue {queue}");
        // Its series appear now, at zero; one the broker never took has none.
        self.metrics();
        self.set_state(SubscriptionState::Active {
            queue: queue.to_owned(),
        });
    }

    pub(crate) fn set_state(&self, state: SubscriptionState) {
        self.inner.state_tx.send_if_modified(|current| {
            // Cancelled is terminal.
            if *current == state || *current == SubscriptionState::Cancelled {
                false
            } else {
                *current = state;
                true
            }
        });
    }

    pub(crate) fn cancel_signal(&self) -> watch::Receiver<bool> {
        self.inner.cancel_tx.subscribe()
    }

    pub(crate) fn last_logged_error(&self) -> MutexGuard<'_, Option<String>> {
        self.inner.last_logged_error.locked()
    }
}

impl fmt::Display for Subscription {
    /// `<{routing} @ {exchange}>`, exactly as brewblox-service 0.20.0 prints it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<{} @ {}>", self.inner.routing, self.inner.exchange)
    }
}

impl fmt::Debug for Subscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscription")
            .field("id", &self.inner.id)
            .field("exchange", &self.inner.exchange)
            .field("routing", &self.inner.routing)
            .field("kind", &self.inner.kind)
            .field("state", &self.state())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Nop;
    impl MessageSink for Nop {
        fn deliver(&self, _: &Subscription, _: &str, _: Vec<u8>) -> BoxFuture<'static, Delivered> {
            Box::pin(async { Ok(()) })
        }
    }

    #[test]
    fn display_matches_original() {
        let sub = Subscription::new(1, "probe_ex", "a.*", ExchangeKind::Topic, Arc::new(Nop))
            .expect("valid names");
        assert_eq!(sub.to_string(), "<a.* @ probe_ex>");
    }

    #[test]
    fn names_amqp_cannot_carry_make_no_subscription() {
        let long = "s".repeat(256);
        let err = Subscription::new(1, &long, "k", ExchangeKind::Topic, Arc::new(Nop))
            .expect_err("256-byte exchange");
        assert!(matches!(
            err,
            BusError::InvalidName {
                field: "exchange",
                ..
            }
        ));
        let err = Subscription::new(1, "e", &long, ExchangeKind::Topic, Arc::new(Nop))
            .expect_err("256-byte routing key");
        assert!(matches!(
            err,
            BusError::InvalidName {
                field: "routing",
                ..
            }
        ));
    }

    #[test]
    fn cancel_is_terminal_and_idempotent() {
        let sub = Subscription::new(1, "e", "r", ExchangeKind::Fanout, Arc::new(Nop))
            .expect("valid names");
        assert_eq!(sub.state(), SubscriptionState::Pending);
        sub.cancel();
        sub.cancel();
        assert!(sub.is_cancelled());
        assert_eq!(sub.state(), SubscriptionState::Cancelled);
        sub.set_state(SubscriptionState::Pending);
        assert_eq!(sub.state(), SubscriptionState::Cancelled);
        assert!(*sub.cancel_signal().borrow());
    }
}
