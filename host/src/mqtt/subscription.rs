//! A plugin's (or `/_debug`'s) MQTT subscription: its filter, its state, its bounded queue and
//! the task that hands each message to its handler, in order.

use std::{
    fmt,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
};

use futures::future::BoxFuture;

use crate::delivery::{Delivered, DeliveryError};
use crate::metrics::bus::Dropped;
use plugin_abi::panics;
use tokio::sync::{mpsc, watch};

/// One received message.
#[derive(Debug, Clone)]
pub struct MqttMessage {
    pub topic: String,
    pub payload: bytes::Bytes,
}

/// Where a subscription's messages go. A failure or a panic is logged and the next message
/// is delivered.
pub trait MqttSink: Send + Sync + 'static {
    fn deliver(
        &self,
        sub: &MqttSubscription,
        message: MqttMessage,
    ) -> BoxFuture<'static, Delivered>;
    /// The plugin that made the subscription, for health and logs.
    fn owner(&self) -> Option<&str> {
        None
    }
}

/// A subscription's state, as health shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MqttSubState {
    /// Waiting for the broker's acknowledgement (or for a connection).
    Pending,
    /// The broker acknowledged it on the current connection.
    Active,
    /// The broker refused it (it is asked again at the next connection).
    Failed(String),
    Cancelled,
}

/// The caller's handle; cheap to clone.
#[derive(Clone)]
pub struct MqttSubscription {
    pub(crate) inner: Arc<SubInner>,
}

pub(crate) struct SubInner {
    pub id: u64,
    pub filter: String,
    pub qos: rumqttc::QoS,
    pub state: watch::Sender<MqttSubState>,
    pub cancelled: AtomicBool,
    pub dropped: AtomicU64,
    pub owner: Option<String>,
    /// Asks the bus to forget the subscription (set by the bus).
    pub on_cancel: std::sync::Mutex<Option<Box<dyn FnOnce() + Send>>>,
}

impl MqttSubscription {
    pub fn id(&self) -> u64 {
        self.inner.id
    }

    pub fn filter(&self) -> &str {
        &self.inner.filter
    }

    pub fn owner(&self) -> Option<&str> {
        self.inner.owner.as_deref()
    }

    pub fn state(&self) -> MqttSubState {
        self.inner.state.borrow().clone()
    }

    /// This subscription's metrics series (the `exchange` label is empty for MQTT; the
    /// filter is the `routing` label).
    pub(crate) fn metrics(&self) -> crate::metrics::bus::SubscriptionSeries {
        crate::metrics::global()
            .bus
            .subscription(super::BUS, "", self.filter(), self.owner())
    }

    /// Messages dropped because its queue was full.
    pub fn dropped(&self) -> u64 {
        self.inner.dropped.load(Ordering::Relaxed)
    }

    pub fn is_cancelled(&self) -> bool {
        self.inner.cancelled.load(Ordering::Acquire)
    }

    /// Waits (at most `timeout`) until the subscription is no longer pending; `false` on
    /// timeout.
    pub async fn settled(&self, timeout: std::time::Duration) -> bool {
        let mut state = self.inner.state.subscribe();
        let wait = state.wait_for(|s| *s != MqttSubState::Pending);
        let settled = matches!(tokio::time::timeout(timeout, wait).await, Ok(Ok(_)));
        settled
    }

    /// Stops delivery: queued messages are dropped, a message in its handler finishes, and
    /// the broker subscription goes when no other subscription uses the same filter.
    pub fn cancel(&self) {
        if self.inner.cancelled.swap(true, Ordering::AcqRel) {
            return;
        }
        self.inner.state.send_replace(MqttSubState::Cancelled);
        let forget = self.inner.on_cancel.lock().ok().and_then(|mut f| f.take());
        if let Some(forget) = forget {
            forget();
        }
    }
}

impl fmt::Display for MqttSubscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<{}>", self.inner.filter.escape_debug())
    }
}

/// Hands the queued messages to the sink one at a time, until the queue closes or the
/// subscription is cancelled.
pub(crate) async fn consume(
    sub: MqttSubscription,
    sink: Arc<dyn MqttSink>,
    mut queue: mpsc::Receiver<MqttMessage>,
) {
    // Made at the first message: a subscription that never became active leaves no series.
    let mut metrics = None;
    while let Some(message) = queue.recv().await {
        if sub.is_cancelled() {
            break;
        }
        let _unacked = crate::metrics::global().bus.unacked(super::BUS);
        let started = std::time::Instant::now();
        let topic = message.topic.clone();
        // A panic is described on one line, with its location, and logged once: below.
        let panicked = |report| Err(DeliveryError::Panicked(format!("handler {report}")));
        let outcome = match panics::catch(|| sink.deliver(&sub, message)) {
            Ok(future) => panics::catch_future(future).await.unwrap_or_else(panicked),
            Err(report) => panicked(report),
        };
        let metrics = metrics.get_or_insert_with(|| sub.metrics());
        match &outcome {
            Err(err) if err.is_refusal() => metrics.dropped(Dropped::NotJson),
            _ => metrics.handled(started.elapsed(), outcome.is_ok()),
        }
        if let Err(err) = outcome {
            tracing::error!(
                target: "brewblox_host::mqtt",
                "Exception relaying message in {sub} (topic '{}'): {err}",
                topic.escape_debug()
            );
        }
    }
}
