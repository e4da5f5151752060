//! How one message's trip into a handler ended, for both eventbuses: the sinks (plugin
//! handlers, `/_debug`'s loggers) say it in this type, and the delivery loops count and log
//! from it, never from an error's wording.

use plugin_abi::FfiFailure;

/// Why a message was not handled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeliveryError {
    /// The handler never saw the message: its payload is not JSON, or not of the handler's
    /// type. Counted as dropped, not as failed.
    #[error("{0}")]
    Refused(String),
    /// The handler ran and returned an error.
    #[error("{0}")]
    Failed(String),
    /// The handler panicked (caught by the SDK or by the host).
    #[error("{0}")]
    Panicked(String),
}

impl DeliveryError {
    /// A plugin handler's failure as it crossed the ABI, its message naming the plugin.
    pub fn from_plugin(plugin: &str, failure: FfiFailure) -> Self {
        let message = format!("plugin {plugin}: {}", failure.error.message);
        if failure.is_refusal() {
            DeliveryError::Refused(message)
        } else if failure.is_panic() {
            DeliveryError::Panicked(message)
        } else {
            DeliveryError::Failed(message)
        }
    }

    /// Whether the handler never saw the message.
    pub fn is_refusal(&self) -> bool {
        matches!(self, DeliveryError::Refused(_))
    }
}

/// The outcome of one delivery.
pub type Delivered = Result<(), DeliveryError>;

#[cfg(test)]
mod tests {
    use super::*;
    use plugin_abi::{error_code, failure, FfiError};

    #[test]
    fn the_kind_comes_from_the_type_not_the_words() {
        let ffi = |kind, message: &str| {
            FfiFailure::new(kind, FfiError::new(error_code::INVALID, message))
        };
        // A handler's own error that happens to use the SDK's words stays a failure.
        let failed = DeliveryError::from_plugin("p", ffi(failure::FAILED, "message is not JSON"));
        assert_eq!(
            failed,
            DeliveryError::Failed("plugin p: message is not JSON".into())
        );
        let refused = DeliveryError::from_plugin("p", ffi(failure::REFUSED, "bad"));
        assert!(refused.is_refusal());
        let panicked = DeliveryError::from_plugin("p", FfiFailure::panicked("panicked: x"));
        assert_eq!(
            panicked,
            DeliveryError::Panicked("plugin p: panicked: x".into())
        );
    }
}
