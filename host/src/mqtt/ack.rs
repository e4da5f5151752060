//! The acknowledgement of a message on the persistent session: sent (a PUBACK) once every
//! subscription the message matched has handled it, after the handlers returned, whether
//! they succeeded, failed or panicked. A message some subscription never handled (its queue
//! was full, or it was cancelled or stopped first) is never acknowledged: the broker keeps
//! it for the session and sends it again, flagged `dup`, at the next connection.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use rumqttc::{AsyncClient, Publish, QoS};

use super::subscription;
use crate::eventbus::delivery::Settle;
use crate::eventbus::{Delivered, Subscription};

/// How a queued MQTT message is settled: `None` where the client acknowledged it on
/// receipt (the clean session, QoS 0).
pub(crate) type Ack = Option<Arc<PendingAck>>;

/// One received message's PUBACK, waiting for its handlers.
pub(crate) struct PendingAck {
    client: AsyncClient,
    pkid: u16,
    qos: QoS,
    /// Subscriptions that have not handled it yet.
    left: AtomicUsize,
    /// A subscription dropped it unhandled: no acknowledgement.
    abandoned: AtomicBool,
}

impl PendingAck {
    /// The acknowledgement of `publish`, once `handlers` subscriptions handled it.
    pub fn new(client: &AsyncClient, publish: &Publish, handlers: usize) -> Arc<Self> {
        Arc::new(PendingAck {
            client: client.clone(),
            pkid: publish.pkid,
            qos: publish.qos,
            left: AtomicUsize::new(handlers),
            abandoned: AtomicBool::new(false),
        })
    }

    /// One subscription handled it; the last one sends the acknowledgement.
    pub fn handled(&self) {
        if self.left.fetch_sub(1, Ordering::AcqRel) == 1 && !self.abandoned.load(Ordering::Acquire)
        {
            self.send();
        }
    }

    /// One subscription dropped it unhandled: the broker is to send it again.
    pub fn abandon(&self) {
        self.abandoned.store(true, Ordering::Release);
    }

    /// Sends the PUBACK now. A full request queue leaves the message unacknowledged, for
    /// the broker to send again at the next connection.
    pub fn send(&self) {
        let mut publish = Publish::new("", self.qos, Vec::new());
        publish.pkid = self.pkid;
        if let Err(err) = self.client.try_ack(&publish) {
            tracing::warn!(
                target: "brewblox_host::mqtt",
                "MQTT acknowledgement of message {} not sent ({err}); the broker sends it again \
                 at the next connection",
                self.pkid
            );
        }
    }
}

impl Settle for Ack {
    /// After the handler returned, whatever its outcome; not for a durable subscription that
    /// no generation holds any more (the message went to no handler).
    async fn settle(self, sub: &Subscription, _: &Delivered) {
        let Some(ack) = self else {
            return;
        };
        if subscription::leases(sub).is_some_and(|leases| leases.is_closed()) {
            ack.abandon();
        }
        ack.handled();
    }
}
