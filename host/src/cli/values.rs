//! Parsers for option values, shared by the host's options and plugin arguments.

use std::time::Duration;

use clap::{builder::ValueParser, Arg, ArgAction};

/// Why an option's value was refused; clap shows it after the option's name.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ValueError {
    #[error("invalid float value: '{0}'")]
    Float(String),
    #[error("not a duration in seconds: '{0}'")]
    Duration(String),
    #[error(transparent)]
    Name(#[from] crate::names::InvalidName),
    #[error(transparent)]
    Topic(#[from] plugin_abi::mqtt_names::TopicError),
    #[error("port 0 reaches no broker: 1 to 65535")]
    PortZero,
    #[error("invalid port '{}': 1 to 65535", .0.escape_debug())]
    Port(String),
    #[error("websocket path '{}' must start with '/'", .0.escape_debug())]
    RelativePath(String),
    #[error(transparent)]
    BrokerAddress(#[from] crate::broker_list::AddressError),
    /// Of a client id, user name or password: never quoted (it may be a secret).
    #[error("must be 1 to 65535 bytes without control characters")]
    MqttString,
    /// A flag's environment variable with another value than [`FLAG_VALUES`].
    #[error("{var}={text:?} is not a flag value: use {FLAG_VALUES}")]
    Flag { var: String, text: String },
}

/// A finite float: NaN and infinity cannot reach plugins (their config is JSON).
pub(crate) fn parse_float(text: &str) -> Result<f64, ValueError> {
    match text.trim().parse::<f64>() {
        Ok(value) if value.is_finite() => Ok(value),
        _ => Err(ValueError::Float(text.to_owned())),
    }
}

/// A duration in (fractional) seconds.
pub(crate) fn parse_seconds(text: &str) -> Result<Duration, ValueError> {
    let secs = parse_float(text)?;
    Duration::try_from_secs_f64(secs).map_err(|_| ValueError::Duration(text.to_owned()))
}

/// A service name: a usable URL path prefix and AMQP routing key (see [`crate::names`]).
pub(crate) fn parse_name(text: &str) -> Result<String, ValueError> {
    Ok(crate::names::service_name(text)?)
}

/// An MQTT topic for `--history-topic`, `--state-topic` (and the websocket path): a topic
/// the client may publish under.
pub(crate) fn parse_topic(text: &str) -> Result<String, ValueError> {
    crate::mqtt::validate_topic(text)?;
    Ok(text.to_owned())
}

/// A broker's port: 1 to 65535 (port 0 means "any free port" to a server, and reaches no
/// broker).
pub(crate) fn parse_broker_port(text: &str) -> Result<u16, ValueError> {
    match text.trim().parse::<u16>() {
        Ok(0) => Err(ValueError::PortZero),
        Ok(port) => Ok(port),
        Err(_) => Err(ValueError::Port(text.to_owned())),
    }
}

/// The websocket path of `--mqtt-path`: it starts with `/` (it is appended to
/// `ws://host:port`), and is otherwise what an MQTT topic may be (no control characters).
pub(crate) fn parse_mqtt_path(text: &str) -> Result<String, ValueError> {
    if !text.starts_with('/') {
        return Err(ValueError::RelativePath(text.to_owned()));
    }
    parse_topic(text)
}

/// One broker of `--eventbus-host` or `--mqtt-host`: `host[:port]`, checked by
/// [`crate::broker_list::parse_address`] (host 1 to 255 letters, digits, `-`, `.`, `_`, or an
/// IPv6 address; port 1 to 65535). Spaces around it are ignored.
pub(crate) fn parse_broker_address(text: &str) -> Result<String, ValueError> {
    let text = text.trim();
    crate::broker_list::parse_address(text)?;
    Ok(text.to_owned())
}

/// A client id, user name or password: 1 to 65535 bytes of UTF-8 (an MQTT string) without
/// control characters.
pub(crate) fn parse_client_id(text: &str) -> Result<String, ValueError> {
    if text.is_empty() || text.len() > 65535 || text.chars().any(char::is_control) {
        return Err(ValueError::MqttString);
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
        parse_flag(text).ok_or_else(|| ValueError::Flag {
            var: var.clone(),
            text: text.to_owned(),
        })
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
