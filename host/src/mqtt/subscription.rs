//! What an MQTT subscription adds to the common [`Subscription`]: its QoS and, for a durable
//! one, the generations of plugins holding it. Its messages wait in a bounded queue of its
//! own, handed to the sink in order by `crate::eventbus::delivery::consume`.

use std::sync::Arc;

use crate::eventbus::subscription::{NewSubscription, OnCancel};
use crate::eventbus::{Sink, Subscription, Transport};
use crate::metrics::bus::BusMetrics;

/// The MQTT part of a subscription (its extension).
pub(crate) struct Mqtt {
    pub qos: rumqttc::QoS,
    /// A durable subscription's holders (see `super::durable`); `None` for the others.
    pub leases: Option<Arc<super::durable::Leases>>,
}

/// A new MQTT subscription to `filter` (already checked); `on_cancel` makes the bus forget it.
pub(crate) fn new(
    id: u64,
    filter: &str,
    extension: Mqtt,
    sink: Arc<dyn Sink>,
    metrics: BusMetrics,
    on_cancel: OnCancel,
) -> Subscription {
    Subscription::new(NewSubscription {
        id,
        transport: Transport::Mqtt,
        exchange: String::new(),
        routing: filter.to_owned(),
        sink,
        metrics,
        extension: Box::new(extension),
        on_cancel: Some(on_cancel),
    })
}

/// The QoS `sub` was made with (QoS 0 for another transport's subscription).
pub(crate) fn qos(sub: &Subscription) -> rumqttc::QoS {
    sub.extension::<Mqtt>()
        .map_or(rumqttc::QoS::AtMostOnce, |mqtt| mqtt.qos)
}

/// The holders of `sub`, a durable subscription.
pub(crate) fn leases(sub: &Subscription) -> Option<&Arc<super::durable::Leases>> {
    sub.extension::<Mqtt>()?.leases.as_ref()
}
