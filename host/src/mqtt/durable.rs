//! Durable subscriptions: the service's persistent session, and the hand-over of a durable
//! subscription from one generation of plugins to the next.
//!
//! The session is a second [`MqttBus`] beside the service's clean-session one, opened at the
//! first durable subscription: clean session off, client id
//! [`plugin_abi::sharing::mqtt_session_id`], QoS 1, each message acknowledged after its
//! handlers (see `super::ack`). Only one connection can hold a client id (a second one takes
//! the session over and the broker closes the first), so the session outlives the
//! generations: it is the service's, closed only at the stop, with a DISCONNECT that leaves
//! the session and what it did not acknowledge to the broker.
//!
//! On it, a durable subscription is one *slot* per filter and plugin: one queue, one
//! in-order consumer. A plugin's subscription is a *lease* on the slot, a subscription of
//! its own (what the plugin holds, cancels, swaps the handler of) whose state follows the
//! slot's. Messages go to the newest live lease: when the next generation subscribes to the
//! same filter, its lease takes over the running slot; the message in the old handler
//! finishes (and is acknowledged) and the next goes to the new handler. None is lost, none
//! handled twice. When the old generation retires, its lease goes; when the next one fails
//! to start, its lease goes and the old one holds the slot again; when the last lease goes
//! (the plugin cancelled it, or no generation subscribes to the filter any more), the slot
//! is cancelled and the session unsubscribes the filter.

use std::sync::{
    atomic::{AtomicBool, Ordering},
    Arc, Mutex,
};

use bytes::Bytes;
use futures::FutureExt;

use super::{subscription, MqttBus, MqttError, QoS, Session};
use crate::eventbus::{Delivery, DeliveryError, Redelivery, Sink, Subscription};
use crate::sync::Unpoisoned;

/// How many times a message looks for a live lease before it is given up (a lease is
/// leaving while it is picked: the next is found at once).
const PICKS: usize = 8;

/// The generations holding one durable subscription (the slot): oldest first, the last one
/// gets the messages.
pub(crate) struct Leases {
    /// The plugin whose subscription it is, the same in every generation.
    owner: Option<Arc<str>>,
    held: Mutex<Vec<Lease>>,
    /// The last lease went: the slot is being cancelled and takes no new lease.
    closed: AtomicBool,
}

struct Lease {
    generation: u64,
    sub: Subscription,
}

impl Leases {
    /// The lease the next message goes to.
    fn current(&self) -> Option<Subscription> {
        self.held.locked().last().map(|lease| lease.sub.clone())
    }

    /// Whether no generation holds the slot any more.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Adds `sub` as the lease of `generation`, unless the slot closed or `generation`
    /// holds it already (a second subscription of one generation gets a slot of its own).
    fn take(&self, generation: u64, sub: &Subscription) -> bool {
        let mut held = self.held.locked();
        if self.is_closed() || held.iter().any(|lease| lease.generation == generation) {
            return false;
        }
        held.push(Lease {
            generation,
            sub: sub.clone(),
        });
        true
    }

    /// Removes the lease `id`; true when it was the last (the slot closes).
    fn release(&self, id: u64) -> bool {
        let mut held = self.held.locked();
        held.retain(|lease| lease.sub.id() != id);
        let last = held.is_empty() && !self.is_closed();
        if last {
            self.closed.store(true, Ordering::Release);
        }
        last
    }
}

/// The slot's sink: hands each message to the current lease's handler, holding the lease
/// busy meanwhile (so that a retiring generation waits for it, see
/// [`Subscription::idle`]).
struct LeaseSink(Arc<Leases>);

impl Sink for LeaseSink {
    fn deliver(
        &self,
        _slot: &Subscription,
        topic: &str,
        payload: Bytes,
        redelivery: Redelivery,
    ) -> Delivery {
        let (leases, topic) = (self.0.clone(), topic.to_owned());
        let delivered = async move {
            for _ in 0..PICKS {
                let Some(lease) = leases.current() else { break };
                let busy = lease.serve().await;
                if lease.is_cancelled() {
                    // Leaving: its generation may be gone once its last message returned.
                    drop(busy);
                    tokio::task::yield_now().await;
                    continue;
                }
                let sink = lease.sink();
                return sink.deliver(&lease, &topic, payload, redelivery).await;
            }
            Err(DeliveryError::Failed(
                "no generation holds the durable subscription any more".into(),
            ))
        };
        Delivery::Boxed(delivered.boxed())
    }

    fn owner(&self) -> Option<&str> {
        self.0.owner.as_deref()
    }
}

impl MqttBus {
    /// Subscribes `sink` to `filter` on the persistent session (QoS 1, acknowledged after the
    /// handler), for the plugin generation `generation`: the plugin's subscription of the
    /// filter in an earlier generation, if one is live, is taken over (see the module's doc).
    /// Errors: [`MqttError::Invalid`] (a filter, or a service name or client id that makes
    /// no session id); [`MqttError::ShuttingDown`]; a TLS set-up that cannot be made.
    pub fn subscribe_durable(
        &self,
        filter: &str,
        sink: Arc<dyn Sink>,
        generation: u64,
    ) -> Result<Subscription, MqttError> {
        super::validate_filter(filter).map_err(|e| MqttError::Invalid(e.to_string()))?;
        let session = self.session()?;
        let lease = session.lease(filter, sink, generation);
        for _ in 0..PICKS {
            let (slot, leases, taken_over) = session.slot(filter, lease.owner(), generation)?;
            if leases.take(generation, &lease) {
                if taken_over {
                    tracing::info!(
                        target: "brewblox_host::mqtt",
                        "MQTT durable subscription {slot} handed to the new generation"
                    );
                }
                let runtime = tokio::runtime::Handle::try_current()
                    .ok()
                    .or_else(|| session.runtime());
                follow(&slot, &lease, runtime);
                return Ok(lease);
            }
        }
        Err(MqttError::Unavailable(format!(
            "durable subscription <{}> is being cancelled; subscribe again",
            filter.escape_debug()
        )))
    }

    /// The persistent session, opened (and started, if the service's connection is) at the
    /// first call.
    fn session(&self) -> Result<MqttBus, MqttError> {
        let mut durable = self.inner.durable.locked();
        if let Some(session) = &*durable {
            return Ok(session.clone());
        }
        {
            let state = self.inner.lock();
            if state.stopping || state.closing {
                return Err(MqttError::ShuttingDown);
            }
        }
        let cfg = &self.inner.cfg;
        let id = plugin_abi::sharing::mqtt_session_id(&cfg.service, cfg.client_id.as_deref())
            .map_err(MqttError::Invalid)?;
        let session = MqttBus::with_session(
            cfg.clone(),
            self.inner.metrics.clone(),
            id.clone(),
            Session::Persistent,
            self.inner.runtime.clone(),
        )
        .map_err(|err| MqttError::Unavailable(err.to_string()))?;
        if self.started() {
            session.start();
        }
        tracing::info!(
            target: "brewblox_host::mqtt",
            "MQTT persistent session {id} for the durable subscriptions"
        );
        *durable = Some(session.clone());
        Ok(session)
    }

    /// A lease for `sink` on `filter`: the subscription a plugin holds.
    fn lease(&self, filter: &str, sink: Arc<dyn Sink>, generation: u64) -> Subscription {
        let weak = Arc::downgrade(&self.inner);
        let on_cancel = Box::new(move |lease: &Subscription| {
            lease.set_state(crate::eventbus::SubscriptionState::Cancelled);
            if let Some(shared) = weak.upgrade() {
                MqttBus { inner: shared }.release(lease, generation);
            }
        });
        let extension = subscription::Mqtt {
            qos: QoS::AtLeastOnce,
            leases: None,
        };
        let metrics = self.inner.metrics.clone();
        subscription::new(self.next_id(), filter, extension, sink, metrics, on_cancel)
    }

    /// The live slot of `owner` on `filter` that `generation` does not hold yet, else a new
    /// one; whether it was found (a take-over).
    fn slot(
        &self,
        filter: &str,
        owner: Option<&str>,
        generation: u64,
    ) -> Result<(Subscription, Arc<Leases>, bool), MqttError> {
        let found = self.inner.lock().subs.iter().find_map(|(slot, _)| {
            let leases = subscription::leases(slot)?;
            let held = leases.held.locked();
            let free = slot.filter() == filter
                && leases.owner.as_deref() == owner
                && !leases.is_closed()
                && !held.iter().any(|lease| lease.generation == generation);
            free.then(|| (slot.clone(), leases.clone()))
        });
        if let Some((slot, leases)) = found {
            return Ok((slot, leases, true));
        }
        let leases = Arc::new(Leases {
            owner: owner.map(Arc::from),
            held: Mutex::new(Vec::new()),
            closed: AtomicBool::new(false),
        });
        let sink: Arc<dyn Sink> = Arc::new(LeaseSink(leases.clone()));
        let slot = self.subscribe_with(filter, QoS::AtLeastOnce, sink, Some(leases.clone()))?;
        Ok((slot, leases, false))
    }

    /// A lease was cancelled: the slot goes to the lease before it, or, when it was the last,
    /// is cancelled (its filter unsubscribed).
    fn release(&self, lease: &Subscription, generation: u64) {
        let slot = self.inner.lock().subs.iter().find_map(|(slot, _)| {
            let leases = subscription::leases(slot)?;
            let holds = slot.filter() == lease.filter()
                && leases
                    .held
                    .locked()
                    .iter()
                    .any(|held| held.generation == generation && held.sub.id() == lease.id());
            holds.then(|| (slot.clone(), leases.clone()))
        });
        if let Some((slot, leases)) = slot {
            if leases.release(lease.id()) {
                slot.cancel();
            }
        }
    }
}

/// Makes `lease` show the state of `slot` (pending, active, failed) until either is
/// cancelled.
fn follow(slot: &Subscription, lease: &Subscription, runtime: Option<tokio::runtime::Handle>) {
    let Some(runtime) = runtime else {
        lease.set_state(slot.state());
        return;
    };
    let (mut state, mut cancelled) = (slot.state_signal(), lease.cancel_signal());
    let lease = lease.clone();
    runtime.spawn(async move {
        loop {
            let now = state.borrow_and_update().clone();
            lease.set_state(now);
            tokio::select! {
                changed = state.changed() => if changed.is_err() { break },
                _ = cancelled.changed() => break,
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eventbus::delivery;
    use crate::metrics::bus::BusMetrics;
    use crate::mqtt::MqttConfig;

    /// Records the messages it gets under its tag.
    struct Recording(&'static str, Arc<Mutex<Vec<String>>>);

    impl Sink for Recording {
        fn deliver(&self, _: &Subscription, topic: &str, _: Bytes, _: Redelivery) -> Delivery {
            self.1.locked().push(format!("{}:{topic}", self.0));
            Delivery::Ready(Some(Ok(())))
        }
    }

    fn bus() -> MqttBus {
        let cfg = MqttConfig {
            service: "svc".into(),
            ..MqttConfig::default()
        };
        MqttBus::new(cfg, BusMetrics::detached()).unwrap()
    }

    #[tokio::test]
    async fn the_next_generation_takes_the_slot_over_and_a_failed_one_gives_it_back() {
        let bus = bus();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = |tag| -> Arc<dyn Sink> { Arc::new(Recording(tag, seen.clone())) };
        let old = bus.subscribe_durable("t/#", sink("old"), 1).unwrap();
        let new = bus.subscribe_durable("t/#", sink("new"), 2).unwrap();
        let session = bus.durable().unwrap();
        assert_eq!(
            session.health().connection.state,
            crate::mqtt::MqttState::Disabled
        );
        assert_eq!(session.inner.client_id, "brewblox-host-svc-durable");
        let slots = session.subscriptions();
        assert_eq!(slots.len(), 1, "one slot, two leases");
        let deliver = |topic: &'static str| {
            delivery::handle(&slots[0], topic, Bytes::new(), Redelivery::default(), ())
        };
        deliver("t/1").await;
        // The next generation failed: its lease goes, the old one holds the slot again.
        new.cancel();
        deliver("t/2").await;
        assert!(!slots[0].is_cancelled());
        // A second subscription of one generation gets a slot of its own.
        let twin = bus.subscribe_durable("t/#", sink("twin"), 1).unwrap();
        assert_eq!(session.subscriptions().len(), 2);
        twin.cancel();
        // The last lease goes: the slot is cancelled (and its filter unsubscribed).
        old.cancel();
        assert!(slots[0].is_cancelled());
        assert!(session.subscriptions().is_empty());
        assert_eq!(*seen.locked(), ["new:t/1", "old:t/2"]);
    }

    #[tokio::test]
    async fn a_service_name_that_makes_no_client_id_is_refused() {
        let cfg = MqttConfig {
            service: "a b".into(),
            ..MqttConfig::default()
        };
        let bus = MqttBus::new(cfg, BusMetrics::detached()).unwrap();
        let sink: Arc<dyn Sink> = Arc::new(Recording("x", Arc::default()));
        let err = bus.subscribe_durable("t", sink, 1).unwrap_err();
        assert!(
            matches!(&err, MqttError::Invalid(text) if text.contains("client id")),
            "{err}"
        );
    }
}
