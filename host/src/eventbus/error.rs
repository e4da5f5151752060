//! What a caller can do about an eventbus error, whichever transport it came from.
//!
//! Each transport keeps its own error enum, worded as its operators know it
//! ([`crate::bus::BusError`], [`crate::mqtt::MqttError`]), and sorts each variant into one
//! [`ErrorKind`]. The plugin bridge (the error code a plugin sees) and `/_debug` (the HTTP
//! status) act on the kind, once for both.

/// The kind of an eventbus error: what the caller can do about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// A name, topic, filter, QoS or setting the bus cannot carry; nothing was sent.
    Invalid,
    /// The message is larger than the bus's limit; nothing was sent.
    TooLarge,
    /// The broker cannot be reached now (down, disconnected, shutting down): retry later.
    Unavailable,
    /// The broker did not answer in time.
    Timeout,
    /// The broker refused a subscription (an AMQP channel error such as 406, an MQTT SUBACK
    /// failure).
    Refused,
    /// The broker refused a message (an AMQP publisher `nack`).
    Nacked,
    /// The subscription was cancelled before it was bound.
    Cancelled,
    /// Anything else (a protocol error).
    Other,
}

/// A transport's error, sorted by kind.
pub trait EventbusError: std::error::Error {
    fn kind(&self) -> ErrorKind;

    /// The request field an [`ErrorKind::Invalid`] error is about, if the transport knows it.
    fn field(&self) -> Option<&'static str> {
        None
    }
}
