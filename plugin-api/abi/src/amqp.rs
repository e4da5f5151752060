//! The rules every host applies to the AMQP names a plugin sends (exchange names, routing
//! keys, exchange types), written once so that the real host, the SDK and its test host
//! refuse the same names with the same words.
//!
//! An AMQP 0-9-1 short string is a length byte followed by that many bytes, so it carries at
//! most 255 bytes. Handed a longer name, an AMQP encoder writes the length modulo 256 and then
//! the whole name: the broker reads the rest of the name as the frame's next fields, so a
//! crafted name declares whatever the caller chose, and a long one breaks the connection.
//! Control characters (U+0000–U+001F, U+007F–U+009F) are refused as well: the broker would
//! accept them, but these names are written into log lines, where a newline would forge a
//! line, and no brewblox service uses them.

use crate::{error_code, FfiError};

/// The most bytes an AMQP short string holds.
pub const MAX_NAME_BYTES: usize = 255;

/// The exchange types brewblox services use, by their AMQP names.
pub const EXCHANGE_TYPES: [&str; 3] = ["topic", "fanout", "direct"];

/// Why `value` cannot be sent as an AMQP name, if it cannot: a phrase to follow the field's
/// name ("exchange is 300 bytes long; …").
///
/// ```
/// use plugin_abi::amqp::name_problem;
/// assert_eq!(name_problem("brewcast"), None);
/// assert!(name_problem(&"é".repeat(128)).unwrap().contains("256 bytes"));
/// assert!(name_problem("a\nb").unwrap().contains("control character"));
/// ```
pub fn name_problem(value: &str) -> Option<String> {
    if value.len() > MAX_NAME_BYTES {
        return Some(format!(
            "is {} bytes long; AMQP names hold at most {MAX_NAME_BYTES} bytes",
            value.len()
        ));
    }
    if crate::printable_ascii(value) {
        return None;
    }
    let control = value.chars().find(|c| c.is_control())?;
    Some(format!("contains the control character {control:?}"))
}

/// The index in [`EXCHANGE_TYPES`] of the type `text` names (any case, spaces around
/// ignored), or the error every host gives. Runs on every publish, so it allocates only
/// for the error.
///
/// ```
/// use plugin_abi::amqp::{exchange_type, EXCHANGE_TYPES};
/// assert_eq!(EXCHANGE_TYPES[exchange_type(" Fanout").unwrap()], "fanout");
/// assert!(exchange_type("headers").is_err());
/// ```
pub fn exchange_type(text: &str) -> Result<usize, FfiError> {
    // The SDK sends the name as written in the list: found without trimming or case folding.
    if let Some(index) = EXCHANGE_TYPES.iter().position(|kind| *kind == text) {
        return Ok(index);
    }
    let name = text.trim();
    EXCHANGE_TYPES
        .iter()
        .position(|kind| kind.eq_ignore_ascii_case(name))
        .ok_or_else(|| {
            FfiError::new(
                error_code::INVALID,
                format!("unknown exchange type {text:?} (expected topic, fanout or direct)"),
            )
        })
}
