//! The names the bus sends to the broker as AMQP short strings, checked by the bus itself (a
//! [`Subscription`](super::Subscription) cannot be made, nor a publish sent, with a name that
//! fails) before anything reaches lapin. The rule and its reasons are plugin-abi's
//! (`plugin_abi::amqp`), which the SDK and its test host apply too.

use super::error::BusError;

pub use plugin_abi::amqp::MAX_NAME_BYTES;

/// Checks one name; `field` names it in the error (`exchange`, `routing`, `vhost`, …).
pub fn check_short_string(field: &'static str, value: &str) -> Result<(), BusError> {
    match plugin_abi::amqp::name_problem(value) {
        None => Ok(()),
        Some(reason) => Err(BusError::InvalidName { field, reason }),
    }
}

/// Checks an exchange name and a routing key (or binding pattern) together.
pub fn check_names(exchange: &str, routing: &str) -> Result<(), BusError> {
    check_short_string("exchange", exchange)?;
    check_short_string("routing", routing)
}

/// Whether `key` can be sent as a routing key (for the service name, which the device
/// plugin uses as one). The error says why not.
pub fn validate_routing_key(key: &str) -> Result<(), BusError> {
    check_short_string("routing", key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_bytes_not_chars() {
        assert!(check_names(&"s".repeat(255), &"k".repeat(255)).is_ok());
        let err = check_names(&"s".repeat(256), "k").unwrap_err();
        assert!(
            matches!(
                &err,
                BusError::InvalidName {
                    field: "exchange",
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("256 bytes"), "{err}");
        // 128 two-byte characters: 128 chars, 256 bytes.
        let err = validate_routing_key(&"é".repeat(128)).unwrap_err();
        assert!(
            matches!(
                err,
                BusError::InvalidName {
                    field: "routing",
                    ..
                }
            ),
            "{err}"
        );
        assert!(validate_routing_key(&"é".repeat(127)).is_ok());
    }

    #[test]
    fn control_characters_are_refused() {
        for bad in ["a\nb", "a\rb", "\0", "x\u{7f}", "x\u{85}"] {
            assert!(validate_routing_key(bad).is_err(), "{bad:?}");
        }
        for good in ["", "#", "a.*.b", "spark-one", "brühaus", "a b"] {
            assert!(validate_routing_key(good).is_ok(), "{good:?}");
        }
    }
}
