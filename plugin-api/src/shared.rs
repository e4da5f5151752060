//! Subscriptions shared between the instances of a service, and subscriptions that keep what
//! is published while their service is away: the options of
//! [`Context::subscribe_shared`](crate::Context::subscribe_shared) and
//! [`Context::mqtt_subscribe_shared`](crate::Context::mqtt_subscribe_shared).

use crate::{abi, ExchangeType};

/// How a subscription is shared and kept.
///
/// - **In a group** ([`Shared::group`]): every instance of a service that subscribes in the
///   same group to the same binding takes its turn; each message is handled by one of them.
///   On AMQP the group's instances consume one named, durable queue
///   (`<group>:<exchange>:<routing>`, a quorum queue unless [`classic`](Shared::classic)),
///   acknowledging each message after its handler returned; on MQTT they subscribe to
///   `$share/<group>/<filter>`.
/// - **Durable** ([`Shared::durable`]): what is published while the service is stopped or
///   reloading waits for it. On AMQP the same named queue, in the group of the service's own
///   name; on MQTT the service's persistent session (a connection of its own with a stable
///   client id, QoS 1, each message acknowledged after its handler returned).
///
/// Delivery is at least once: a message whose instance dies in its handler is delivered
/// again, to another instance of the group or at the next start, and
/// [`Message::redelivered`](crate::Message::redelivered) says so. Handlers of shared and
/// durable subscriptions are idempotent. The rules (which options go together, the names on
/// the wire) are the host's, in [`abi::sharing`]; a refusal is an
/// [`Invalid`](crate::ErrorKind::Invalid) error from the subscribe call.
///
/// ```
/// use plugin_api::Shared;
/// let workers = Shared::group("workers").prefetch(10).delivery_limit(5).dead_letter_exchange("dead");
/// let mine = Shared::durable();
/// let classic = Shared::group("workers").classic();
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Shared {
    sharing: abi::FfiSharing,
    exchange_type: ExchangeType,
}

impl Shared {
    /// In group `name` (ASCII letters, digits, `-`, `_`, `.`; at most 64 bytes): the
    /// instances subscribed in it split the messages.
    ///
    /// ```
    /// let options = plugin_api::Shared::group("history");
    /// ```
    pub fn group(name: &str) -> Self {
        Shared {
            sharing: abi::FfiSharing {
                group: name.into(),
                ..abi::FfiSharing::default()
            },
            ..Shared::default()
        }
    }

    /// Durable, without a group: the service's own named queue on AMQP, which keeps what is
    /// published while the service is stopped or reloading. Two instances of the service
    /// share it like a group named after the service. (MQTT needs a persistent session for
    /// this, which the host does not keep yet: refused there.)
    ///
    /// ```
    /// let options = plugin_api::Shared::durable();
    /// ```
    pub fn durable() -> Self {
        Shared::default().and_durable()
    }

    /// Durable as well: on AMQP a group's queue is durable already; this says so.
    ///
    /// ```
    /// let options = plugin_api::Shared::group("history").and_durable();
    /// ```
    pub fn and_durable(mut self) -> Self {
        self.sharing.durable = true;
        self
    }

    /// AMQP: a classic queue rather than a quorum queue (a quorum queue is replicated on a
    /// broker cluster; a classic one lives on one node, and counts no deliveries).
    ///
    /// ```
    /// let options = plugin_api::Shared::group("history").classic();
    /// ```
    pub fn classic(mut self) -> Self {
        self.sharing.classic = true;
        self
    }

    /// AMQP: how many messages one instance holds unacknowledged at most (the host's
    /// `--eventbus-prefetch` by default). A small number spreads the work evenly; a larger
    /// one keeps a fast consumer busy.
    ///
    /// ```
    /// let options = plugin_api::Shared::group("history").prefetch(1);
    /// ```
    pub fn prefetch(mut self, prefetch: u16) -> Self {
        self.sharing.prefetch = prefetch;
        self
    }

    /// AMQP quorum queues: after this many deliveries a message goes to the
    /// [dead-letter exchange](Shared::dead_letter_exchange), or is dropped without one, so
    /// that a message that kills every instance that handles it does not go round forever.
    ///
    /// ```
    /// let options = plugin_api::Shared::group("history").delivery_limit(5);
    /// ```
    pub fn delivery_limit(mut self, limit: u32) -> Self {
        self.sharing.delivery_limit = limit;
        self
    }

    /// AMQP: the exchange the broker sends a message to when it goes over the
    /// [delivery limit](Shared::delivery_limit) (`x-dead-letter-exchange`; declared by
    /// whoever reads it).
    ///
    /// ```
    /// let options = plugin_api::Shared::group("history").delivery_limit(5).dead_letter_exchange("dead");
    /// ```
    pub fn dead_letter_exchange(mut self, exchange: &str) -> Self {
        self.sharing.dead_letter_exchange = exchange.into();
        self
    }

    /// AMQP: the type of the exchange subscribed to (topic by default).
    ///
    /// ```
    /// use plugin_api::{ExchangeType, Shared};
    /// let options = Shared::group("alerts").exchange_type(ExchangeType::Fanout);
    /// ```
    pub fn exchange_type(mut self, exchange_type: ExchangeType) -> Self {
        self.exchange_type = exchange_type;
        self
    }

    pub(crate) fn amqp(self, exchange: &str, routing: &str) -> abi::FfiSubscribe {
        abi::FfiSubscribe {
            exchange: exchange.into(),
            routing: routing.into(),
            exchange_type: self.exchange_type.as_str().into(),
            sharing: self.sharing,
        }
    }

    pub(crate) fn mqtt(self, filter: &str, qos: u8) -> abi::FfiMqttSubscribe {
        abi::FfiMqttSubscribe {
            filter: filter.into(),
            qos,
            sharing: self.sharing,
        }
    }
}
