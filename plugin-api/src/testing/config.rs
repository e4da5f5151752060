//! The configuration JSON the kit hands the plugin: what the host would build from its
//! command line, with the host's defaults, the plugin's argument defaults and the test's
//! overrides.

use serde_json::{json, Map, Value};

use crate::{Arg, ArgKind, Error, Result};

/// The common options every service has, in the host's order. `amqp` and `mqtt` say which
/// eventbuses are in use: both, under the kit, unless a test turns one off.
fn common() -> Map<String, Value> {
    let common = json!({
        "host": "0.0.0.0",
        "port": 5000,
        "output": null,
        "name": "test",
        "debug": false,
        "eventbus_host": "eventbus",
        "eventbus_port": 5672,
        "amqp": true,
        "mqtt": true,
        "history_topic": "brewcast/history",
        "state_topic": "brewcast/state",
    });
    match common {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

/// A config key: the argument's name without dashes in front, `-` as `_`.
fn key(name: &str) -> String {
    name.trim_start_matches('-').replace('-', "_")
}

/// The configuration for a plugin declaring `args`, with `overrides` (name, value) applied.
/// An override for an argument nobody declares, or of the wrong type, is an `Invalid` error,
/// as the host's command-line parser would refuse it.
pub(super) fn build(args: &[Arg], overrides: &[(String, Value)]) -> Result<Map<String, Value>> {
    let mut config = common();
    for arg in args {
        let value = match (arg.default_value(), arg.kind()) {
            (Some(default), _) => default.clone(),
            (None, ArgKind::Flag) => Value::Bool(false),
            (None, _) => Value::Null,
        };
        config.insert(key(arg.name()), value);
    }
    for (name, value) in overrides {
        let key = key(name);
        let value = match args.iter().find(|arg| self::key(arg.name()) == key) {
            Some(arg) => typed(arg, value)?,
            None if config.contains_key(&key) => value.clone(),
            None => return Err(invalid(format!("unknown argument --{name}"))),
        };
        config.insert(key, value);
    }
    Ok(config)
}

/// `value` as the host's parser would type it for `arg`; text is parsed.
fn typed(arg: &Arg, value: &Value) -> Result<Value> {
    let text = value.as_str().map(str::trim);
    let typed = match arg.kind() {
        ArgKind::String => value.is_string().then(|| value.clone()),
        ArgKind::Int => value
            .as_i64()
            .or_else(|| text?.parse().ok())
            .map(Value::from),
        ArgKind::Float => value
            .as_f64()
            .or_else(|| text?.parse().ok())
            .map(Value::from),
        ArgKind::Flag => value
            .as_bool()
            .or_else(|| text?.parse().ok())
            .map(Value::from),
    };
    let wanted = match arg.kind() {
        ArgKind::String => "text",
        ArgKind::Int => "an integer",
        ArgKind::Float => "a number",
        ArgKind::Flag => "true or false",
    };
    typed.ok_or_else(|| {
        invalid(format!(
            "argument --{} takes {wanted}, not {value}",
            arg.name()
        ))
    })
}

fn invalid(message: String) -> Error {
    Error::bad_request(message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_overrides_and_types() {
        let args = [
            Arg::float("update-interval").default(5.0),
            Arg::string("device-id"),
            Arg::flag("simulate"),
            Arg::int("retries").default(3),
        ];
        let config = build(
            &args,
            &[
                ("device-id".into(), json!("f1")),
                ("retries".into(), json!("7")),
                ("name".into(), json!("svc")),
            ],
        )
        .unwrap();
        assert_eq!(config["update_interval"], json!(5.0));
        assert_eq!(config["device_id"], json!("f1"));
        assert_eq!(config["simulate"], json!(false));
        assert_eq!(config["retries"], json!(7));
        assert_eq!(config["name"], json!("svc"));
        assert_eq!(config["state_topic"], json!("brewcast/state"));

        let err = build(&args, &[("nope".into(), json!(1))]).unwrap_err();
        assert_eq!(err.message(), "unknown argument --nope");
        let err = build(&args, &[("retries".into(), json!("many"))]).unwrap_err();
        assert!(
            err.message().contains("takes an integer, not \"many\""),
            "{err}"
        );
        let err = build(&args, &[("device-id".into(), json!(5))]).unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::Invalid);
    }
}
