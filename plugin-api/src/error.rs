//! The one error type of the SDK.

use std::{error::Error as StdError, fmt};

use http::StatusCode;
use serde_json::{json, Value};

use crate::abi::{error_code, FfiError};

/// `Result` with the SDK's [`Error`].
///
/// ```
/// fn half(n: i64) -> plugin_api::Result<i64> {
///     if n % 2 != 0 {
///         return Err(plugin_api::Error::invalid("odd number").field("n"));
///     }
///     Ok(n / 2)
/// }
/// assert_eq!(half(4).unwrap(), 2);
/// ```
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong: an [`ErrorKind`], a one-line message, optionally the input field at
/// fault and the error that caused it.
///
/// The kind says what happened; the HTTP status a route answers with follows from it by
/// the table in [`ErrorKind::status`], unless the handler chose another one with
/// [`Error::with_status`]. The kind survives every boundary: an error a feature returns
/// reaches its caller in another plugin with the same kind.
///
/// It implements [`std::error::Error`], and `?` converts the common error types of the
/// standard library, serde_json, tokio and http into it (see the `From` impls: parse errors
/// are [`Invalid`](ErrorKind::Invalid), an I/O `NotFound` is [`NotFound`](ErrorKind::NotFound),
/// a timeout is [`Timeout`](ErrorKind::Timeout), everything else
/// [`Other`](ErrorKind::Other)). Any other error converts with [`Error::other`].
///
/// ```
/// use plugin_api::{Error, ErrorKind, Result};
///
/// fn parse(text: &str) -> Result<f64> {
///     let value: f64 = text.trim().parse()?; // ParseFloatError: Invalid, 400
///     if value < 0.0 {
///         return Err(Error::invalid("setpoint must be positive").field("setpoint"));
///     }
///     Ok(value)
/// }
/// assert_eq!(parse("-1").unwrap_err().status(), 400);
/// assert_eq!(parse("x").unwrap_err().kind(), ErrorKind::Invalid);
/// ```
pub struct Error {
    kind: ErrorKind,
    status: Option<StatusCode>,
    message: String,
    field: Option<String>,
    source: Option<Box<dyn StdError + Send + Sync + 'static>>,
}

/// The broad class of an [`Error`], for deciding what to do about it.
///
/// ```
/// use plugin_api::{Error, ErrorKind};
/// assert_eq!(Error::unavailable("eventbus down").kind(), ErrorKind::Unavailable);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
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

impl ErrorKind {
    /// The HTTP status a route answers with for an error of this kind, unless the handler
    /// set one with [`Error::with_status`]:
    ///
    /// | kind | status |
    /// |---|---|
    /// | `Invalid` | 400 Bad Request |
    /// | `NotFound` | 404 Not Found |
    /// | `Conflict` | 409 Conflict |
    /// | `Rejected` | 502 Bad Gateway |
    /// | `Unavailable` | 503 Service Unavailable |
    /// | `Timeout` | 504 Gateway Timeout |
    /// | `Other`, `WrongPhase` | 500 Internal Server Error |
    ///
    /// ```
    /// use plugin_api::{http::StatusCode, ErrorKind};
    /// assert_eq!(ErrorKind::Invalid.status(), StatusCode::BAD_REQUEST);
    /// ```
    pub fn status(self) -> StatusCode {
        match self {
            ErrorKind::Invalid => StatusCode::BAD_REQUEST,
            ErrorKind::NotFound => StatusCode::NOT_FOUND,
            ErrorKind::Conflict => StatusCode::CONFLICT,
            ErrorKind::Rejected => StatusCode::BAD_GATEWAY,
            ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorKind::Timeout => StatusCode::GATEWAY_TIMEOUT,
            ErrorKind::Other | ErrorKind::WrongPhase => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn code(self) -> u32 {
        match self {
            ErrorKind::Other => error_code::OTHER,
            ErrorKind::Unavailable => error_code::UNAVAILABLE,
            ErrorKind::Invalid => error_code::INVALID,
            ErrorKind::Conflict => error_code::CONFLICT,
            ErrorKind::NotFound => error_code::NOT_FOUND,
            ErrorKind::Rejected => error_code::REJECTED,
            ErrorKind::Timeout => error_code::TIMEOUT,
            ErrorKind::WrongPhase => error_code::WRONG_PHASE,
        }
    }

    fn from_code(code: u32) -> Self {
        match code {
            error_code::UNAVAILABLE => ErrorKind::Unavailable,
            error_code::INVALID => ErrorKind::Invalid,
            error_code::CONFLICT => ErrorKind::Conflict,
            error_code::NOT_FOUND => ErrorKind::NotFound,
            error_code::REJECTED => ErrorKind::Rejected,
            error_code::TIMEOUT => ErrorKind::Timeout,
            error_code::WRONG_PHASE => ErrorKind::WrongPhase,
            _ => ErrorKind::Other,
        }
    }
}

impl Error {
    /// An error of `kind` with a one-line `message` (newlines are folded into spaces).
    ///
    /// ```
    /// use plugin_api::{Error, ErrorKind};
    /// let err = Error::new(ErrorKind::Conflict, "device busy");
    /// assert_eq!(err.status().as_u16(), 409);
    /// ```
    pub fn new(kind: ErrorKind, message: impl fmt::Display) -> Self {
        Error {
            kind,
            status: None,
            message: one_line(&message.to_string()),
            field: None,
            source: None,
        }
    }

    /// An [`Other`](ErrorKind::Other) error (HTTP 500) with `message`.
    ///
    /// ```
    /// let err = plugin_api::Error::msg("the sensor did not answer");
    /// assert_eq!(err.status().as_u16(), 500);
    /// ```
    pub fn msg(message: impl fmt::Display) -> Self {
        Error::new(ErrorKind::Other, message)
    }

    /// Wraps any error as [`Other`](ErrorKind::Other), keeping it as the
    /// [`source`](std::error::Error::source): for the types `?` does not convert.
    ///
    /// ```
    /// #[derive(Debug)]
    /// struct DriverError;
    /// impl std::fmt::Display for DriverError {
    ///     fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
    ///         f.write_str("driver stalled")
    ///     }
    /// }
    /// impl std::error::Error for DriverError {}
    ///
    /// let err: plugin_api::Error = Err::<(), _>(DriverError).map_err(plugin_api::Error::other).unwrap_err();
    /// assert_eq!(err.message(), "driver stalled");
    /// assert!(std::error::Error::source(&err).is_some());
    /// ```
    pub fn other<E: StdError + Send + Sync + 'static>(err: E) -> Self {
        Error::with_source(ErrorKind::Other, err)
    }

    /// An error of `kind` whose message and source are `err`.
    fn with_source<E: StdError + Send + Sync + 'static>(kind: ErrorKind, err: E) -> Self {
        Error {
            message: one_line(&err.to_string()),
            source: Some(Box::new(err)),
            ..Error::new(kind, "")
        }
    }

    /// The input was invalid ([`Invalid`](ErrorKind::Invalid), HTTP 400).
    ///
    /// ```
    /// assert_eq!(plugin_api::Error::invalid("odd").status().as_u16(), 400);
    /// ```
    pub fn invalid(message: impl fmt::Display) -> Self {
        Error::new(ErrorKind::Invalid, message)
    }

    /// Same as [`Error::invalid`]: the input was invalid (HTTP 400).
    ///
    /// ```
    /// assert_eq!(plugin_api::Error::bad_request("missing field").status().as_u16(), 400);
    /// ```
    pub fn bad_request(message: impl fmt::Display) -> Self {
        Error::invalid(message)
    }

    /// Nothing with that name exists ([`NotFound`](ErrorKind::NotFound), HTTP 404).
    ///
    /// ```
    /// assert_eq!(plugin_api::Error::not_found("no such key").status().as_u16(), 404);
    /// ```
    pub fn not_found(message: impl fmt::Display) -> Self {
        Error::new(ErrorKind::NotFound, message)
    }

    /// A name is taken or the state does not allow it ([`Conflict`](ErrorKind::Conflict),
    /// HTTP 409).
    ///
    /// ```
    /// assert_eq!(plugin_api::Error::conflict("busy").status().as_u16(), 409);
    /// ```
    pub fn conflict(message: impl fmt::Display) -> Self {
        Error::new(ErrorKind::Conflict, message)
    }

    /// Something cannot be reached now ([`Unavailable`](ErrorKind::Unavailable), HTTP 503).
    ///
    /// ```
    /// assert!(plugin_api::Error::unavailable("eventbus down").is_unavailable());
    /// ```
    pub fn unavailable(message: impl fmt::Display) -> Self {
        Error::new(ErrorKind::Unavailable, message)
    }

    /// It did not finish in time ([`Timeout`](ErrorKind::Timeout), HTTP 504).
    ///
    /// ```
    /// assert_eq!(plugin_api::Error::timeout("no answer").status().as_u16(), 504);
    /// ```
    pub fn timeout(message: impl fmt::Display) -> Self {
        Error::new(ErrorKind::Timeout, message)
    }

    /// Names the input field at fault; it appears as `"field"` in the JSON body.
    ///
    /// ```
    /// let err = plugin_api::Error::invalid("not a number").field("setpoint");
    /// assert_eq!(err.field_name(), Some("setpoint"));
    /// ```
    pub fn field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    /// Answers with `status` instead of the kind's (see [`ErrorKind::status`]). The kind
    /// stays what it is.
    ///
    /// ```
    /// use plugin_api::{http::StatusCode, Error, ErrorKind};
    /// let err = Error::invalid("too late to change").with_status(StatusCode::UNPROCESSABLE_ENTITY);
    /// assert_eq!(err.status(), StatusCode::UNPROCESSABLE_ENTITY);
    /// assert_eq!(err.kind(), ErrorKind::Invalid);
    /// ```
    pub fn with_status(mut self, status: StatusCode) -> Self {
        self.status = Some(status);
        self
    }

    /// The HTTP status this error answers with: the one set with [`Error::with_status`],
    /// else the kind's.
    ///
    /// ```
    /// assert_eq!(plugin_api::Error::msg("x").status().as_u16(), 500);
    /// ```
    pub fn status(&self) -> StatusCode {
        self.status.unwrap_or_else(|| self.kind.status())
    }

    /// The same error with `note` after its message, in parentheses.
    pub(crate) fn noted(mut self, note: &str) -> Self {
        self.message = format!("{} ({note})", self.message);
        self
    }

    /// Whether the handler chose the status with [`Error::with_status`].
    pub(crate) fn has_chosen_status(&self) -> bool {
        self.status.is_some()
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

    /// The JSON body an error response carries: `{"error": message, "field"?: field}`.
    pub(crate) fn json_body(&self) -> Value {
        let mut body = json!({ "error": self.message });
        if let Some(field) = &self.field {
            body["field"] = Value::String(field.clone());
        }
        body
    }

    /// The error as it crosses the library boundary: its kind and message.
    pub(crate) fn to_ffi(&self) -> FfiError {
        FfiError {
            code: self.kind.code(),
            message: self.message.as_str().into(),
        }
    }

    pub(crate) fn from_ffi(err: FfiError) -> Self {
        Error::new(ErrorKind::from_code(err.code), err.message.as_str())
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

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Error")
            .field("kind", &self.kind)
            .field("status", &self.status())
            .field("message", &self.message)
            .field("field", &self.field)
            .finish()
    }
}

impl StdError for Error {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.source
            .as_deref()
            .map(|source| source as &(dyn StdError + 'static))
    }
}

/// `From` impls for the common error types, each with the kind that describes it.
macro_rules! from_errors {
    ($($kind:ident: $($ty:ty),+;)+) => {$($(
        impl From<$ty> for Error {
            fn from(err: $ty) -> Self {
                Error::with_source(ErrorKind::$kind, err)
            }
        }
    )+)+};
}

from_errors! {
    Invalid: std::num::ParseIntError, std::num::ParseFloatError, std::str::ParseBoolError,
        std::char::ParseCharError, std::net::AddrParseError, std::str::Utf8Error,
        std::string::FromUtf8Error, std::num::TryFromIntError,
        std::time::TryFromFloatSecsError, http::method::InvalidMethod,
        http::status::InvalidStatusCode, http::header::InvalidHeaderName,
        http::header::InvalidHeaderValue, http::uri::InvalidUri;
    Timeout: tokio::time::error::Elapsed;
    Other: serde_json::Error, std::fmt::Error, std::time::SystemTimeError,
        tokio::task::JoinError, http::Error;
}

impl From<std::io::Error> for Error {
    fn from(err: std::io::Error) -> Self {
        let kind = match err.kind() {
            std::io::ErrorKind::NotFound => ErrorKind::NotFound,
            std::io::ErrorKind::TimedOut => ErrorKind::Timeout,
            std::io::ErrorKind::InvalidInput | std::io::ErrorKind::InvalidData => {
                ErrorKind::Invalid
            }
            _ => ErrorKind::Other,
        };
        Error::with_source(kind, err)
    }
}

impl From<Box<dyn StdError + Send + Sync + 'static>> for Error {
    fn from(err: Box<dyn StdError + Send + Sync + 'static>) -> Self {
        Error {
            message: one_line(&err.to_string()),
            source: Some(err),
            ..Error::msg("")
        }
    }
}

impl From<String> for Error {
    /// A message alone: an [`Other`](ErrorKind::Other) error.
    fn from(message: String) -> Self {
        Error::msg(message)
    }
}

impl From<&str> for Error {
    /// A message alone: an [`Other`](ErrorKind::Other) error.
    fn from(message: &str) -> Self {
        Error::msg(message)
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
    fn json_body_names_the_field() {
        let body = Error::invalid("bad").field("x").json_body();
        assert_eq!(body, json!({"error": "bad", "field": "x"}));
    }

    #[test]
    fn common_errors_convert_with_their_kind_and_source() {
        fn parse(text: &str) -> Result<u8> {
            Ok(text.parse::<u8>()?)
        }
        let err = parse("300").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Invalid);
        assert_eq!(err.message(), "number too large to fit in target type");
        assert!(err.source().is_some());

        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "no file\nhere");
        let err = Error::from(io);
        assert_eq!(err.kind(), ErrorKind::NotFound);
        assert_eq!(err.message(), "no file here");
    }

    #[test]
    fn the_status_follows_the_kind_unless_the_handler_chooses() {
        assert_eq!(Error::timeout("x").status(), StatusCode::GATEWAY_TIMEOUT);
        let err = Error::not_found("gone").with_status(StatusCode::GONE);
        assert_eq!(err.status(), StatusCode::GONE);
        assert_eq!(err.kind(), ErrorKind::NotFound);
    }

    #[test]
    fn the_kind_survives_the_boundary() {
        for kind in [
            ErrorKind::Other,
            ErrorKind::Unavailable,
            ErrorKind::Invalid,
            ErrorKind::Conflict,
            ErrorKind::NotFound,
            ErrorKind::Rejected,
            ErrorKind::Timeout,
            ErrorKind::WrongPhase,
        ] {
            let back = Error::from_ffi(Error::new(kind, "m").to_ffi());
            assert_eq!((back.kind(), back.message()), (kind, "m"));
        }
        assert_eq!(Error::not_found("x").to_ffi().code, error_code::NOT_FOUND);
    }
}
