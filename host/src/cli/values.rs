//! Parsers for option values, shared by the host's options and plugin arguments.

use std::time::Duration;

use clap::{builder::ValueParser, Arg, ArgAction};

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

/// An MQTT topic for `--history-topic`, `--state-topic` (and the websocket path): a topic
/// the client may publish under.
pub(crate) fn parse_topic(text: &str) -> Result<String, String> {
    crate::mqtt::validate_topic(text).map_err(|err| err.to_string())?;
    Ok(text.to_owned())
}

/// A broker's port: 1 to 65535 (port 0 means "any free port" to a server, and reaches no
/// broker).
pub(crate) fn parse_broker_port(text: &str) -> Result<u16, String> {
    match text.trim().parse::<u16>() {
        Ok(0) => Err("port 0 reaches no broker: 1 to 65535".into()),
        Ok(port) => Ok(port),
        Err(_) => Err(format!(
            "invalid port '{}': 1 to 65535",
            text.escape_debug()
        )),
    }
}

/// The websocket path of `--mqtt-path`: it starts with `/` (it is appended to
/// `ws://host:port`), and is otherwise what an MQTT topic may be (no control characters).
pub(crate) fn parse_mqtt_path(text: &str) -> Result<String, String> {
    if !text.starts_with('/') {
        return Err(format!(
            "websocket path '{}' must start with '/'",
            text.escape_debug()
        ));
    }
    parse_topic(text)
}

/// One broker of `--eventbus-host` or `--mqtt-host`: `host[:port]`, checked by
/// [`crate::broker_list::parse_address`] (host 1 to 255 letters, digits, `-`, `.`, `_`, or an
/// IPv6 address; port 1 to 65535). Spaces around it are ignored.
pub(crate) fn parse_broker_address(text: &str) -> Result<String, String> {
    let text = text.trim();
    crate::broker_list::parse_address(text)?;
    Ok(text.to_owned())
}

/// A client id, user name or password: 1 to 65535 bytes of UTF-8 (an MQTT string) without
/// control characters.
pub(crate) fn parse_client_id(text: &str) -> Result<String, String> {
    if text.is_empty() || text.len() > 65535 || text.chars().any(char::is_control) {
        return Err("must be 1 to 65535 bytes without control characters".into());
    }
    Ok(text.to_owned())
}

/// What a flag accepts from the environment, case-insensitive.
pub const FLAG_VALUES: &str = "1/0, true/false, yes/no or on/off";

/// A flag's value from the environment, as containers write it.
pub(crate) fn parse_flag(text: &str) -> Option<bool> {
    match text.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Some(true),
        "0" | "false" | "no" | "off" => Some(false),
        _ => None,
    }
}

/// Makes `arg` an on/off flag: present on the command line it is on; from its environment
/// variable it takes any of [`FLAG_VALUES`], and anything else is a usage error naming the
/// variable.
pub(crate) fn flag(arg: Arg) -> Arg {
    let var = arg
        .get_env()
        .map(|var| var.to_string_lossy().into_owned())
        .unwrap_or_default();
    let parser = move |text: &str| {
        parse_flag(text)
            .ok_or_else(|| format!("{var}={text:?} is not a flag value: use {FLAG_VALUES}"))
    };
    arg.action(ArgAction::SetTrue)
        .value_parser(ValueParser::new(parser))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_take_what_containers_write() {
        for on in ["1", "true", "TRUE", "Yes", "on", " On "] {
            assert_eq!(parse_flag(on), Some(true), "{on}");
        }
        for off in ["0", "false", "False", "no", "OFF"] {
            assert_eq!(parse_flag(off), Some(false), "{off}");
        }
        for bad in ["", "2", "maybe", "y", "enabled"] {
            assert_eq!(parse_flag(bad), None, "{bad}");
        }
    }
}
