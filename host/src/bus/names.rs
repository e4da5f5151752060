//! The names the bus sends to the broker as AMQP short strings.
//!
//! An AMQP 0-9-1 short string is a length byte followed by that many bytes, so it carries at
//! most 255 bytes. Handed a longer name, the AMQP encoder writes the length modulo 256 and
//! then the whole name: the broker reads the rest of the name as the frame's next fields, so a
//! crafted name declares whatever the caller chose, and a long one breaks the connection.
//! Every exchange name and routing key is therefore checked here, by the bus itself (a
//! [`Subscription`](super::Subscription) cannot be made, nor a publish sent, with a name that
//! fails), before anything reaches lapin.
//!
//! Control characters (U+0000–U+001F, U+007F–U+009F) are refused as well: the broker would
//! accept them, but these names are written into log lines (`<routing @ exchange>`), where a
//! newline would forge a line, and no brewblox service uses them.

use super::error::BusError;

/// The most bytes an AMQP short string holds.
pub const MAX_NAME_BYTES: usize = 255;

/// Checks one name; `field` names it in the error (`exchange`, `routing`, `vhost`, …).
pub fn check_short_string(field: &'static str, value: &str) -> Result<(), BusError> {
    let reason = if value.len() > MAX_NAME_BYTES {
        format!(
            "is {} bytes long; AMQP names hold at most {MAX_NAME_BYTES} bytes",
            value.len()
        )
    } else if let Some(c) = value.chars().find(|c| c.is_control()) {
        format!("contains the control character {c:?}")
    } else {
        return Ok(());
    };
    Err(BusError::InvalidName { field, reason })
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
