//! The eventbus core both transports plug into: the AMQP bus of [`crate::bus`] (lapin) and
//! the MQTT bus of [`crate::mqtt`] (rumqttc). What a subscription is and how a message
//! reaches its handler is written here once; a transport keeps only what is its own: the
//! connection, the topology on the broker, topic matching and acknowledgements.
//!
//! One job per module:
//! - [`subscription`]: the caller's handle on one subscription (identity, owning plugin,
//!   state, cancel, handler swap) and its [`SubscriptionState`];
//! - [`sink`]: the [`Sink`] trait a subscription hands its messages to;
//! - [`delivery`]: one message's trip into its sink (panic containment, metrics, the failure
//!   log line, the transport's acknowledgement after the handler) and the in-order consumer
//!   of a bounded queue;
//! - [`outcome`]: how a delivery ended ([`DeliveryError`]), said in a type, never in words;
//! - [`error`]: the [`ErrorKind`] every transport error sorts into, which the plugin bridge
//!   and `/_debug` act on.
//!
//! A later feature that both transports need (a shared subscription with a group name,
//! durable delivery with the acknowledgement after the handler) is added here once: the
//! subscription's identity and options are common, and the delivery acknowledges through
//! the transport's `delivery::Settle`.

pub mod delivery;
pub mod error;
pub mod outcome;
pub mod sink;
pub mod subscription;

pub use error::{ErrorKind, EventbusError};
pub use outcome::{Delivered, DeliveryError};
pub use sink::{Redelivery, Sink};
pub use subscription::{Subscription, SubscriptionState, Transport};
