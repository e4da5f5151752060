//! The caller's handle on one subscription, whichever transport carries it.
//!
//! A `Subscription` outlives connections: its transport binds it again after every reconnect
//! until `cancel()` is called. Its state is a `watch`, so health and tests can both read it
//! and wait for it without polling. What only one transport needs per subscription (AMQP's
//! exchange type and connection generation, MQTT's QoS) is that transport's extension,
//! reached with `Subscription::extension`.

use std::any::Any;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;

use tokio::sync::watch;

use super::sink::Sink;
use crate::metrics::bus::{BusMetrics, SubscriptionSeries};
use crate::sync::UnpoisonedRw;

/// The transport a subscription is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    Amqp,
    Mqtt,
}

impl Transport {
    /// The `bus` label of its metrics.
    pub const fn label(self) -> &'static str {
        match self {
            Transport::Amqp => "amqp",
            Transport::Mqtt => "mqtt",
        }
    }
}

/// Where a subscription is in its life on the broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubscriptionState {
    /// Waiting for a connection, or for the broker's answer.
    Pending,
    /// Bound on the broker: consuming from `queue` (AMQP: the server-named exclusive queue;
    /// MQTT: the filter as subscribed).
    Active { queue: String },
    /// The broker refused it (e.g. an AMQP 406 for an exchange of another type, an MQTT SUBACK
    /// failure); asked again by the transport, without affecting other subscriptions.
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

/// What the transport does when a subscription is cancelled (stop consuming, forget it).
pub(crate) type OnCancel = Box<dyn Fn(&Subscription) + Send + Sync>;

/// What a transport gives to make a subscription.
pub(crate) struct NewSubscription {
    pub id: u64,
    pub transport: Transport,
    /// The AMQP exchange; empty for MQTT.
    pub exchange: String,
    /// The AMQP routing key or the MQTT topic filter.
    pub routing: String,
    pub sink: Arc<dyn Sink>,
    pub metrics: BusMetrics,
    /// The transport's own per-subscription data.
    pub extension: Box<dyn Any + Send + Sync>,
    /// Called once, at the first `cancel()`, after the cancel signal went out. Without
    /// one, the state becomes `Cancelled` at once.
    pub on_cancel: Option<OnCancel>,
}

struct Inner {
    id: u64,
    transport: Transport,
    exchange: String,
    routing: String,
    /// The plugin whose handler receives the messages, shared with every message's log line
    /// rather than cloned.
    owner: Option<Arc<str>>,
    sink: RwLock<Arc<dyn Sink>>,
    cancelled: AtomicBool,
    /// Set by [`Subscription::retire`]: the cancel first hands the handler what the queue
    /// holds already.
    draining: AtomicBool,
    cancel_tx: watch::Sender<bool>,
    state_tx: watch::Sender<SubscriptionState>,
    /// Held by the task that hands the messages to the sink for its whole life: the task for
    /// the next connection starts only after the previous one finished its in-flight handler
    /// (per-subscription order across reconnects), and a cancel can wait for it.
    serving: tokio::sync::Mutex<()>,
    /// Messages dropped because the subscription's queue was full.
    dropped: AtomicU64,
    metrics: BusMetrics,
    /// This subscription's series, resolved once (when it is first bound or a message
    /// arrives), never for one the broker never took.
    series: OnceLock<SubscriptionSeries>,
    extension: Box<dyn Any + Send + Sync>,
    on_cancel: Option<OnCancel>,
}

/// A handle on one subscription. Cheap to clone; all clones are the same subscription.
#[derive(Clone)]
pub struct Subscription {
    inner: Arc<Inner>,
}

impl Subscription {
    pub(crate) fn new(new: NewSubscription) -> Self {
        let owner = new.sink.owner().map(Arc::from);
        Subscription {
            inner: Arc::new(Inner {
                id: new.id,
                transport: new.transport,
                exchange: new.exchange,
                routing: new.routing,
                owner,
                sink: RwLock::new(new.sink),
                cancelled: AtomicBool::new(false),
                draining: AtomicBool::new(false),
                cancel_tx: watch::channel(false).0,
                state_tx: watch::channel(SubscriptionState::Pending).0,
                serving: tokio::sync::Mutex::new(()),
                dropped: AtomicU64::new(0),
                metrics: new.metrics,
                series: OnceLock::new(),
                extension: new.extension,
                on_cancel: new.on_cancel,
            }),
        }
    }

    pub fn id(&self) -> u64 {
        self.inner.id
    }

    pub fn transport(&self) -> Transport {
        self.inner.transport
    }

    /// The AMQP exchange; empty for MQTT.
    pub fn exchange(&self) -> &str {
        &self.inner.exchange
    }

    /// The AMQP routing key, or the MQTT topic filter.
    pub fn routing(&self) -> &str {
        &self.inner.routing
    }

    /// The MQTT topic filter (the routing key for AMQP).
    pub fn filter(&self) -> &str {
        &self.inner.routing
    }

    /// The plugin whose handler receives the messages, if a plugin's.
    pub fn owner(&self) -> Option<&str> {
        self.inner.owner.as_deref()
    }

    /// The transport's own data for this subscription, if it is of type `T`.
    pub(crate) fn extension<T: Any>(&self) -> Option<&T> {
        self.inner.extension.downcast_ref()
    }

    /// Replace the sink (a plugin's new handler); the next message goes to the new one. The
    /// owner stays the one the subscription was made with.
    pub fn set_sink(&self, sink: Arc<dyn Sink>) {
        *self.inner.sink.write_locked() = sink;
    }

    /// Whether its messages go to `sink` (the same object, not an equal one).
    pub fn has_sink(&self, sink: &Arc<dyn Sink>) -> bool {
        Arc::ptr_eq(&self.sink(), sink)
    }

    pub(crate) fn sink(&self) -> Arc<dyn Sink> {
        self.inner.sink.read_locked().clone()
    }

    /// This subscription's metrics series (made at the first call: the transport calls it
    /// when the broker bound the subscription, so that its series appear at zero).
    pub(crate) fn metrics(&self) -> &SubscriptionSeries {
        self.inner.series.get_or_init(|| {
            self.inner.metrics.subscription(
                self.inner.transport.label(),
                &self.inner.exchange,
                &self.inner.routing,
                self.owner(),
            )
        })
    }

    /// Messages dropped because its queue was full.
    pub fn dropped(&self) -> u64 {
        self.inner.dropped.load(Ordering::Relaxed)
    }

    /// Counts one message dropped for a full queue; the count before it.
    pub(crate) fn count_dropped(&self) -> u64 {
        self.inner.dropped.fetch_add(1, Ordering::Relaxed)
    }

    /// Stop delivering, and stop consuming on the broker. Never restored after a reconnect.
    /// Idempotent. A message already in its handler finishes.
    pub fn cancel(&self) {
        if self.inner.cancelled.swap(true, Ordering::SeqCst) {
            return;
        }
        self.inner.cancel_tx.send_replace(true);
        match &self.inner.on_cancel {
            Some(on_cancel) => on_cancel(self),
            None => self.set_state(SubscriptionState::Cancelled),
        }
    }

    pub fn is_cancelled(&self) -> bool {
        self.inner.cancelled.load(Ordering::SeqCst)
    }

    /// Cancels the subscription after handing its handler every message its queue holds
    /// already (bounded, where the transport has a broker-side queue): for a generation
    /// retiring at a hot swap, whose queue may hold messages published before the next
    /// generation's queue was bound. Those are handled by the old handler; none is lost.
    pub fn retire(&self) {
        self.inner.draining.store(true, Ordering::SeqCst);
        self.cancel();
    }

    /// Whether a cancel first drains the queue.
    pub(crate) fn drains(&self) -> bool {
        self.inner.draining.load(Ordering::SeqCst)
    }

    /// Waits until no task serves the subscription any more (after a cancel: its in-flight
    /// handler returned). Unbounded: callers bound it.
    pub async fn idle(&self) {
        drop(self.inner.serving.lock().await);
    }

    /// Held by the task serving the subscription for its whole life (see `serving`).
    pub(crate) async fn serve(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.inner.serving.lock().await
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

    /// The last binding failure, while the subscription is failed.
    pub fn failure(&self) -> Option<String> {
        match &*self.inner.state_tx.borrow() {
            SubscriptionState::Failed { error } => Some(error.clone()),
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

    /// A receiver of the state, for a transport's own waits.
    pub(crate) fn state_signal(&self) -> watch::Receiver<SubscriptionState> {
        self.inner.state_tx.subscribe()
    }

    /// Sets the state; `Cancelled` is terminal.
    pub(crate) fn set_state(&self, state: SubscriptionState) {
        self.inner.state_tx.send_if_modified(|current| {
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
}

impl fmt::Display for Subscription {
    /// AMQP: `<{routing} @ {exchange}>`, exactly as brewblox-service 0.20.0 prints it; MQTT:
    /// `<{filter}>`, escaped.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.inner.transport {
            Transport::Amqp => write!(f, "<{} @ {}>", self.inner.routing, self.inner.exchange),
            Transport::Mqtt => write!(f, "<{}>", self.inner.routing.escape_debug()),
        }
    }
}

impl fmt::Debug for Subscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscription")
            .field("id", &self.inner.id)
            .field("transport", &self.inner.transport)
            .field("exchange", &self.inner.exchange)
            .field("routing", &self.inner.routing)
            .field("state", &self.state())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eventbus::sink::Nop;

    fn sub(transport: Transport, exchange: &str, routing: &str) -> Subscription {
        Subscription::new(NewSubscription {
            id: 1,
            transport,
            exchange: exchange.into(),
            routing: routing.into(),
            sink: Arc::new(Nop),
            metrics: BusMetrics::detached(),
            extension: Box::new(()),
            on_cancel: None,
        })
    }

    #[test]
    fn display_matches_each_transports_log_lines() {
        assert_eq!(
            sub(Transport::Amqp, "probe_ex", "a.*").to_string(),
            "<a.* @ probe_ex>"
        );
        assert_eq!(sub(Transport::Mqtt, "", "a/\n/#").to_string(), "<a/\\n/#>");
    }

    #[test]
    fn cancel_is_terminal_and_idempotent() {
        let sub = sub(Transport::Amqp, "e", "r");
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
