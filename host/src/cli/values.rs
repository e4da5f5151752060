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

/// A name that makes a usable prefix: the original failed deep inside aiohttp for `''`,
/// `'/'` or a trailing `/`; we refuse them at parse time.
pub(crate) fn parse_name(text: &str) -> Result<String, String> {
    let name = text.trim_start_matches('/');
    if name.is_empty() || name.ends_with('/') {
        return Err(format!(
            "'{text}' is not a usable service name (empty or ends in '/')"
        ));
    }
    if name.contains(['?', '#', '{', '}', ' ']) {
        return Err(format!(
            "'{text}' is not a usable service name (contains ?, #, {{, }} or a space)"
        ));
    }
    Ok(name.to_owned())
}
