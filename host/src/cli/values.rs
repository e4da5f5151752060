//! Parsers for option values, shared by the host's options and plugin arguments.

use std::time::Duration;

/// A finite float: NaN and infinity cannot reach plugins (their config is JSON).
pub(crate) fn parse_float(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(value) if value.is_finite() => Ok(value),
        _ => Err(format!("invalid float value: '{text}'")),
    }
}

/// A duration in (fractional) seconds.
pub(crate) fn parse_seconds(text: &str) -> Result<Duration, String> {
    let secs = parse_float(text)?;
    Duration::try_from_secs_f64(secs).map_err(|_| format!("not a duration in seconds: '{text}'"))
}

/// A service name: a usable URL path prefix and AMQP routing key (see [`crate::names`]).
pub(crate) fn parse_name(text: &str) -> Result<String, String> {
    crate::names::service_name(text).map_err(|err| err.to_string())
}
