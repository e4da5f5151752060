//! One error type for callers, sorted by what the caller can do about it.
//!
//! The HTTP layer maps [`BusError::is_unavailable`] to 503; everything else is the caller's
//! or the broker's semantic problem (e.g. 406 exchange type mismatch) and maps elsewhere.

use lapin::protocol::AMQPErrorKind;

use crate::eventbus::{ErrorKind, EventbusError};

#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum BusError {
    /// Broker unreachable, connection lost or not (yet) connected.
    #[error("event bus unavailable: {0}")]
    Unavailable(String),
    /// The broker refused the message (publisher confirm `nack`).
    #[error("event bus rejected the message: {0}")]
    Rejected(String),
    /// A channel-level AMQP error, e.g. 406 PRECONDITION_FAILED or 404 NOT_FOUND.
    /// Only that channel closed; the next call opens a fresh one.
    #[error("event bus channel error {code}: {text}")]
    Channel { code: u16, text: String },
    /// The broker did not answer within `publish_timeout` (e.g. blocked by a resource alarm).
    /// The message may still be delivered later (unconfirmed ≠ lost): consumers must
    /// tolerate a duplicate if the caller retries.
    #[error("event bus did not answer in time")]
    Timeout,
    /// The message is larger than `max_message_size`; nothing was sent.
    #[error("message of {size} bytes is larger than the limit of {limit} bytes (--eventbus-max-message-size)")]
    TooLarge { size: usize, limit: usize },
    /// The subscription was cancelled before it was bound.
    #[error("subscription cancelled")]
    Cancelled,
    /// `EventBus::shutdown` was called.
    #[error("event bus is shutting down")]
    ShuttingDown,
    /// A name (exchange, routing key, …) that AMQP cannot carry; nothing was sent.
    #[error("invalid {field}: {reason}")]
    InvalidName { field: &'static str, reason: String },
    /// Bad URL or settings; retrying will not help.
    #[error("event bus configuration error: {0}")]
    InvalidConfig(String),
    /// Anything else lapin reports (protocol/parsing problems).
    #[error("event bus protocol error: {0}")]
    Protocol(String),
}

impl BusError {
    /// True when the bus cannot be reached right now (→ HTTP 503): unreachable, disconnected,
    /// not answering in time, or shutting down. False for errors a retry will not fix.
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            BusError::Unavailable(_) | BusError::Timeout | BusError::ShuttingDown
        )
    }

    /// True when the broker refused a declaration for a reason a retry will not fix by
    /// itself: a 406 (an exchange of another type), 403 (access refused), and any channel
    /// error other than 404 (something vanished, e.g. an auto-delete exchange between declare
    /// and bind, which the next attempt declares again) and 405 (a resource locked for now).
    pub fn is_refusal(&self) -> bool {
        matches!(self, BusError::Channel { code, .. } if !matches!(code, 404 | 405))
    }

    /// The AMQP reply code of a channel error, if that is what this is.
    pub fn channel_code(&self) -> Option<u16> {
        match self {
            BusError::Channel { code, .. } => Some(*code),
            _ => None,
        }
    }
}

impl EventbusError for BusError {
    fn kind(&self) -> ErrorKind {
        match self {
            BusError::Unavailable(_) | BusError::ShuttingDown => ErrorKind::Unavailable,
            BusError::Timeout => ErrorKind::Timeout,
            BusError::Rejected(_) => ErrorKind::Nacked,
            BusError::Channel { .. } => ErrorKind::Refused,
            BusError::TooLarge { .. } => ErrorKind::TooLarge,
            BusError::InvalidName { .. } | BusError::InvalidConfig(_) => ErrorKind::Invalid,
            BusError::Cancelled => ErrorKind::Cancelled,
            BusError::Protocol(_) => ErrorKind::Other,
        }
    }

    fn field(&self) -> Option<&'static str> {
        match self {
            BusError::InvalidName { field, .. } => Some(field),
            _ => None,
        }
    }
}

impl From<lapin::Error> for BusError {
    /// Soft (channel) AMQP errors become [`BusError::Channel`]; anything that means the
    /// connection is gone becomes [`BusError::Unavailable`].
    fn from(err: lapin::Error) -> Self {
        match &err {
            lapin::Error::ProtocolError(amqp) => match amqp.kind() {
                AMQPErrorKind::Soft(_) => BusError::Channel {
                    code: amqp.get_id(),
                    text: amqp.get_message().to_string(),
                },
                AMQPErrorKind::Hard(_) => BusError::Unavailable(format!(
                    "connection closed by broker: {} {}",
                    amqp.get_id(),
                    amqp.get_message()
                )),
            },
            lapin::Error::IOError(_)
            | lapin::Error::InvalidConnectionState(_)
            | lapin::Error::InvalidChannelState(_)
            | lapin::Error::MissingHeartbeatError => BusError::Unavailable(err.to_string()),
            _ => BusError::Protocol(err.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lapin::protocol::{AMQPError, AMQPHardError, AMQPSoftError};

    #[test]
    fn classifies_lapin_errors() {
        let soft = lapin::Error::ProtocolError(AMQPError::new(
            AMQPSoftError::PRECONDITIONFAILED.into(),
            "PRECONDITION_FAILED - inequivalent arg 'type'".into(),
        ));
        let e = BusError::from(soft);
        assert_eq!(e.channel_code(), Some(406));
        assert!(!e.is_unavailable());

        let hard = lapin::Error::ProtocolError(AMQPError::new(
            AMQPHardError::CONNECTIONFORCED.into(),
            "CONNECTION_FORCED - fault-test".into(),
        ));
        assert!(BusError::from(hard).is_unavailable());

        let io = lapin::Error::from(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert!(BusError::from(io).is_unavailable());
        assert!(BusError::Timeout.is_unavailable());
        assert!(!BusError::Rejected("nack".into()).is_unavailable());

        let channel = |code| BusError::Channel {
            code,
            text: String::new(),
        };
        assert!(channel(406).is_refusal());
        assert!(channel(403).is_refusal());
        assert!(
            !channel(404).is_refusal(),
            "an exchange that vanished comes back"
        );
        assert!(!BusError::Timeout.is_refusal());
    }
}
