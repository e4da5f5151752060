//! The one error type of the SDK.

use std::fmt;

use serde_json::{json, Value};

use crate::abi::{error_code, FfiError};

/// `Result` with the SDK's [`Error`].
///
/// ```
/// fn half(n: i64) -> plugin_api::Result<i64> {
///     if n % 2 != 0 {
///         return Err(plugin_api::Error::bad_request("odd number").field("n"));
///     }
///     Ok(n / 2)
/// }
/// assert_eq!(half(4).unwrap(), 2);
/// ```
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong, as a plugin author or the host sees it.
///
/// Any `std::error::Error` converts into it with `?`, as an internal error (HTTP 500).
/// Errors made with a status, such as [`Error::bad_request`], become that HTTP response with
/// a JSON body when a route handler returns them.
///
/// ```
/// use plugin_api::{Error, Result};
///
/// fn parse(text: &str) -> Result<f64> {
///     let value: f64 = text.parse()?; // ParseFloatError -> 500
///     if value < 0.0 {
///         return Err(Error::bad_request("setpoint must be positive").field("setpoint"));
///     }
///     Ok(value)
/// }
/// assert_eq!(parse("-1").unwrap_err().status(), 400);
/// assert_eq!(parse("x").unwrap_err().status(), 500);
/// ```
pub struct Error {
    kind: ErrorKind,
    status: u16,
    message: String,
    field: Option<String>,
}

/// The broad class of an [`Error`], for deciding what to do about it.
///
/// ```
/// use plugin_api::{Error, ErrorKind};
/// assert_eq!(Error::unavailable("eventbus down").kind(), ErrorKind::Unavailable);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// A failure with no more specific class.
    Other,
    /// Something (the eventbus) cannot be reached now; retry later.
    Unavailable,
    /// The input was invalid.
    Invalid,
    /// A name is taken already.
    Conflict,
    /// Nothing with that name exists.
    NotFound,
    /// The broker refused the operation (e.g. an exchange type mismatch).
    Rejected,
    /// The operation did not finish in time.
    Timeout,
    /// The call is not allowed in this phase of the lifecycle.
    WrongPhase,
}

impl Error {
    /// An internal error (HTTP 500) with a message.
    ///
    /// ```
    /// let err = plugin_api::Error::msg("sensor offline");
    /// assert_eq!(err.to_string(), "sensor offline");
    /// ```
    pub fn msg(message: impl fmt::Display) -> Self {
        Error {
            kind: ErrorKind::Other,
            status: 500,
            message: one_line(&message.to_string()),
            field: None,
        }
    }

    /// An error answered with `status` and a JSON body `{"error": message}`.
    ///
    /// ```
    /// let err = plugin_api::Error::new(404, "no such device");
    /// assert_eq!(err.status(), 404);
    /// ```
    pub fn new(status: u16, message: impl fmt::Display) -> Self {
        let kind = match status {
            400 | 422 => ErrorKind::Invalid,
            404 => ErrorKind::NotFound,
            409 => ErrorKind::Conflict,
            503 => ErrorKind::Unavailable,
            504 => ErrorKind::Timeout,
            _ => ErrorKind::Other,
        };
        Error {
            kind,
            status,
            message: one_line(&message.to_string()),
            field: None,
        }
    }

    /// HTTP 400 with a JSON body.
    ///
    /// ```
    /// let err = plugin_api::Error::bad_request("missing field `setpoint`");
    /// assert_eq!(err.status(), 400);
    /// ```
    pub fn bad_request(message: impl fmt::Display) -> Self {
        Error::new(400, message)
    }

    /// HTTP 404 with a JSON body.
    ///
    /// ```
    /// assert_eq!(plugin_api::Error::not_found("no such key").status(), 404);
    /// ```
    pub fn not_found(message: impl fmt::Display) -> Self {
        Error::new(404, message)
    }

    /// Something cannot be reached now (HTTP 503).
    ///
    /// ```
    /// assert!(plugin_api::Error::unavailable("eventbus down").is_unavailable());
    /// ```
    pub fn unavailable(message: impl fmt::Display) -> Self {
        Error::new(503, message)
    }

    /// Names the input field at fault; it appears as `"field"` in the JSON body.
    ///
    /// ```
    /// let err = plugin_api::Error::bad_request("not a number").field("setpoint");
    /// assert_eq!(err.field_name(), Some("setpoint"));
    /// ```
    pub fn field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    /// The HTTP status this error answers with.
    ///
    /// ```
    /// assert_eq!(plugin_api::Error::msg("x").status(), 500);
    /// ```
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The class of error.
    ///
    /// ```
    /// use plugin_api::{Error, ErrorKind};
    /// assert_eq!(Error::not_found("x").kind(), ErrorKind::NotFound);
    /// ```
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The one-line message.
    ///
    /// ```
    /// assert_eq!(plugin_api::Error::msg("a\nb").message(), "a b");
    /// ```
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The field named with [`Error::field`], if any.
    ///
    /// ```
    /// assert_eq!(plugin_api::Error::msg("x").field_name(), None);
    /// ```
    pub fn field_name(&self) -> Option<&str> {
        self.field.as_deref()
    }

    /// True when the cause is an unreachable resource, such as the eventbus being down.
    ///
    /// ```
    /// assert!(!plugin_api::Error::msg("x").is_unavailable());
    /// ```
    pub fn is_unavailable(&self) -> bool {
        self.kind == ErrorKind::Unavailable
    }

    /// The JSON body an error response carries.
    pub(crate) fn json_body(&self) -> Value {
        let mut body = json!({ "error": self.message });
        if let Some(field) = &self.field {
            body["field"] = Value::String(field.clone());
        }
        body
    }

    /// As an [`FfiError`], keeping the kind as its code (the message is the error's text).
    pub(crate) fn to_ffi(&self) -> FfiError {
        let code = match self.kind {
            ErrorKind::Other => error_code::OTHER,
            ErrorKind::Unavailable => error_code::UNAVAILABLE,
            ErrorKind::Invalid => error_code::INVALID,
            ErrorKind::Conflict => error_code::CONFLICT,
            ErrorKind::NotFound => error_code::NOT_FOUND,
            ErrorKind::Rejected => error_code::REJECTED,
            ErrorKind::Timeout => error_code::TIMEOUT,
            ErrorKind::WrongPhase => error_code::WRONG_PHASE,
        };
        FfiError::new(code, self.message.as_str())
    }

    pub(crate) fn from_ffi(err: FfiError) -> Self {
        let kind = match err.code {
            error_code::UNAVAILABLE => ErrorKind::Unavailable,
            error_code::INVALID => ErrorKind::Invalid,
            error_code::CONFLICT => ErrorKind::Conflict,
            error_code::NOT_FOUND => ErrorKind::NotFound,
            error_code::REJECTED => ErrorKind::Rejected,
            error_code::TIMEOUT => ErrorKind::Timeout,
            error_code::WRONG_PHASE => ErrorKind::WrongPhase,
            _ => ErrorKind::Other,
        };
        let status = match kind {
            ErrorKind::Unavailable => 503,
            ErrorKind::Timeout => 504,
            _ => 500,
        };
        Error {
            kind,
            status,
            message: err.message.into_string(),
            field: None,
        }
    }
}

/// Newlines in a reason would break the HTTP status line and log lines (quirk 3 in
/// `docs/brewblox-service-0.20.0.md`).
fn one_line(text: &str) -> String {
    if text.contains(['\n', '\r']) {
        text.split(['\n', '\r'])
            .filter(|part| !part.is_empty())
            .collect::<Vec<_>>()
            .join(" ")
    } else {
        text.to_owned()
    }
}

impl<E> From<E> for Error
where
    E: std::error::Error + Send + Sync + 'static,
{
    fn from(err: E) -> Self {
        Error::msg(err)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Error")
            .field("kind", &self.kind)
            .field("status", &self.status)
            .field("message", &self.message)
            .field("field", &self.field)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newlines_are_folded() {
        assert_eq!(Error::msg("a\r\nb\n").message(), "a b");
    }

    #[test]
    fn every_kind_survives_the_boundary() {
        let kinds = [
            ErrorKind::Other,
            ErrorKind::Unavailable,
            ErrorKind::Invalid,
            ErrorKind::Conflict,
            ErrorKind::NotFound,
            ErrorKind::Rejected,
            ErrorKind::Timeout,
            ErrorKind::WrongPhase,
        ];
        for kind in kinds {
            let err = Error {
                kind,
                status: 500,
                message: "m".into(),
                field: None,
            };
            let back = Error::from_ffi(err.to_ffi());
            assert_eq!((back.kind(), back.message()), (kind, "m"));
        }
        assert_eq!(Error::not_found("x").to_ffi().code, error_code::NOT_FOUND);
    }

    #[test]
    fn json_body_names_the_field() {
        let body = Error::bad_request("bad").field("x").json_body();
        assert_eq!(body, json!({"error": "bad", "field": "x"}));
    }
}
