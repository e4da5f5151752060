//! The rules every host applies to a route a plugin registers, written once so that the real
//! host and the SDK's test host refuse the same routes with the same words.

use crate::{error_code, FfiError};

/// Paths the host serves itself; plugins may not use them or anything below them.
pub const RESERVED_PREFIXES: &[&str] = &["/_service", "/_debug", "/api/doc"];

/// The statuses a route's response may have: a final status (1xx are the server's to send,
/// and 101 would switch the connection to a protocol nobody speaks) of a class HTTP defines
/// (600 and above mean nothing to a client). Any other is answered 500 with the JSON error
/// body `{"error": "plugin returned an invalid response: status …"}`.
pub const RESPONSE_STATUSES: std::ops::RangeInclusive<u16> = 200..=599;

/// The answer's words for a response status outside [`RESPONSE_STATUSES`].
pub fn invalid_status(status: u16) -> String {
    format!("plugin returned an invalid response: status {status} (a plugin answers 200 to 599)")
}

/// The methods a route may have (`*`: every method).
pub const METHODS: &[&str] = &["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "*"];

/// Checks a route's method and path before anything else about it; returns the method in
/// upper case. The path's segments and clashes are each host's own business.
///
/// ```
/// use plugin_abi::routes::check;
/// assert_eq!(check("get", "/hello").unwrap(), "GET");
/// assert!(check("GET", "hello").is_err());
/// assert!(check("GET", "/_service/x").is_err());
/// assert!(check("TRACE", "/x").is_err());
/// ```
pub fn check(method: &str, path: &str) -> Result<String, FfiError> {
    let invalid = |message: String| FfiError::new(error_code::INVALID, message);
    let method = method.to_ascii_uppercase();
    if !METHODS.contains(&method.as_str()) {
        return Err(invalid(format!(
            "unsupported method \"{method}\" for route {path}"
        )));
    }
    if !path.starts_with('/') {
        return Err(invalid(format!(
            "route path \"{path}\" must start with '/'"
        )));
    }
    if let Some(reserved) = RESERVED_PREFIXES
        .iter()
        .find(|prefix| path == **prefix || path.starts_with(&format!("{prefix}/")))
    {
        return Err(invalid(format!(
            "route path \"{path}\" is reserved for the host ({reserved})"
        )));
    }
    Ok(method)
}
