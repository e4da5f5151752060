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
//!   of a subscription's queue;
//! - [`queue`]: that bounded queue (MQTT's, whose broker pushes without flow control);
//! - [`outcome`]: how a delivery ended ([`DeliveryError`]), said in a type, never in words;
//! - [`error`]: the [`ErrorKind`] every transport error sorts into, which the plugin bridge
//!   and `/_debug` act on.
//!
//! Shared and durable subscriptions are written once where both transports meet: their
//! rules and wire names in `plugin_abi::sharing` (which the plugin bridge applies), the
//! redelivery a handler sees in [`sink::Redelivery`], the acknowledgement after the handler
//! through the transport's `delivery::Settle`; each transport keeps only its wire form (a
//! named durable queue on AMQP; `$share/<group>/<filter>` and the persistent session on
//! MQTT, whose hand-over between generations swaps a subscription's handler).

pub mod delivery;
pub mod error;
pub mod outcome;
pub mod queue;
pub mod sink;
pub mod subscription;

pub use error::{ErrorKind, EventbusError};
pub use outcome::{Delivered, DeliveryError};
pub use sink::{Delivery, Redelivery, Sink};
pub use subscription::{Subscription, SubscriptionState, Transport};
