//! What an AMQP subscription adds to the common [`Subscription`]: its exchange type, the
//! named queue of a shared or durable one, the connection generation whose task serves it,
//! and the broker's refusal of its declaration.

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, MutexGuard};

use plugin_abi::sharing::AmqpQueue;
use tracing::info;

use super::config::ExchangeKind;
use super::error::BusError;
use super::names::check_names;
use crate::eventbus::subscription::NewSubscription;
use crate::eventbus::{Sink, Subscription, SubscriptionState, Transport};
use crate::metrics::bus::BusMetrics;
use crate::sync::Unpoisoned;

/// The AMQP part of a subscription (its extension).
pub(crate) struct Amqp {
    pub kind: ExchangeKind,
    /// The named queue of a shared or durable subscription; `None`: a server-named,
    /// exclusive queue of its own.
    pub shared: Option<AmqpQueue>,
    /// Connection generation whose task serves this subscription (0 = none yet).
    pub generation: AtomicU64,
    /// Last declaration error that was logged, so a failing declare is logged once.
    last_logged_error: Mutex<Option<String>>,
    /// The broker's refusal of the last declaration, while the state is `Failed` with one.
    refusal: Mutex<Option<BusError>>,
}

/// A new AMQP subscription. Errors: [`BusError::InvalidName`] for a name AMQP cannot carry.
pub(crate) fn new(
    id: u64,
    exchange: &str,
    routing: &str,
    kind: ExchangeKind,
    shared: Option<AmqpQueue>,
    sink: Arc<dyn Sink>,
    metrics: BusMetrics,
) -> Result<Subscription, BusError> {
    check_names(exchange, routing)?;
    Ok(Subscription::new(NewSubscription {
        id,
        transport: Transport::Amqp,
        exchange: exchange.to_owned(),
        routing: routing.to_owned(),
        sink,
        metrics,
        extension: Box::new(Amqp {
            kind,
            shared,
            generation: AtomicU64::new(0),
            last_logged_error: Mutex::new(None),
            refusal: Mutex::new(None),
        }),
        on_cancel: Some(Box::new(|sub| {
            // While a task serves it, that task deletes the queue and then says so.
            if !matches!(sub.state(), SubscriptionState::Active { .. }) {
                sub.set_state(SubscriptionState::Cancelled);
            }
        })),
    }))
}

/// The AMQP part of `sub`; `None` for another transport's subscription.
pub(crate) fn amqp(sub: &Subscription) -> Option<&Amqp> {
    sub.extension::<Amqp>()
}

/// The named queue of a shared or durable AMQP subscription (`None` for a plain one, and for
/// another transport's).
pub fn shared_queue(sub: &Subscription) -> Option<&AmqpQueue> {
    amqp(sub).and_then(|amqp| amqp.shared.as_ref())
}

/// The exchange type of an AMQP subscription (`topic` for another transport's).
pub fn kind(sub: &Subscription) -> ExchangeKind {
    amqp(sub).map_or(ExchangeKind::Topic, |amqp| amqp.kind)
}

/// Waits until `sub` is bound (its queue consumes). Unbounded: callers bound it (see
/// `EventBus::ready`).
///
/// Errors: the broker's refusal ([`BusError::is_refusal`], e.g. a 406 for an exchange of
/// another type) as soon as it comes, [`BusError::Cancelled`], or [`BusError::ShuttingDown`].
/// Transient failures are retried and waited through.
pub async fn bound(sub: &Subscription) -> Result<(), BusError> {
    let Some(amqp) = amqp(sub) else {
        return Err(BusError::Protocol(format!(
            "{sub} is not an AMQP subscription"
        )));
    };
    let mut rx = sub.state_signal();
    let refusal = || amqp.refusal.locked().clone();
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

impl Amqp {
    /// The broker refused (or failed) the declaration; retried by the listener.
    pub(crate) fn failed(&self, sub: &Subscription, err: BusError) {
        let text = err.to_string();
        *self.refusal.locked() = err.is_refusal().then_some(err);
        sub.set_state(SubscriptionState::Failed { error: text });
    }

    /// Declared and consuming from `queue`.
    pub(crate) fn declared(&self, sub: &Subscription, queue: &str) {
        *self.refusal.locked() = None;
        *self.last_logged_error() = None;
        info!("Declared event bus subscription {sub} as queue {queue}");
        // Its series appear now, at zero; one the broker never took has none.
        sub.metrics();
        sub.set_state(SubscriptionState::Active {
            queue: queue.to_owned(),
        });
    }

    pub(crate) fn last_logged_error(&self) -> MutexGuard<'_, Option<String>> {
        self.last_logged_error.locked()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eventbus::sink::Nop;

    fn make(exchange: &str, routing: &str) -> Result<Subscription, BusError> {
        new(
            1,
            exchange,
            routing,
            ExchangeKind::Topic,
            None,
            Arc::new(Nop),
            BusMetrics::detached(),
        )
    }

    #[test]
    fn display_matches_original() {
        let sub = make("probe_ex", "a.*").expect("valid names");
        assert_eq!(sub.to_string(), "<a.* @ probe_ex>");
    }

    #[test]
    fn names_amqp_cannot_carry_make_no_subscription() {
        let long = "s".repeat(256);
        let err = make(&long, "k").expect_err("256-byte exchange");
        assert!(matches!(
            err,
            BusError::InvalidName {
                field: "exchange",
                ..
            }
        ));
        let err = make("e", &long).expect_err("256-byte routing key");
        assert!(matches!(
            err,
            BusError::InvalidName {
                field: "routing",
                ..
            }
        ));
    }

    #[test]
    fn a_cancel_while_not_served_is_final_at_once() {
        let sub = make("e", "r").expect("valid names");
        sub.cancel();
        assert_eq!(sub.state(), SubscriptionState::Cancelled);
    }
}
