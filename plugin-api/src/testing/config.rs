//! The configuration the kit hands the plugin: what the host would build from its command
//! line, with the host's defaults (plugin-abi's, which the host's command line uses too), the
//! plugin's argument defaults and the test's overrides.

use serde_json::Value;

use crate::abi::config::{arg_key, MqttSettings, PluginConfig, ServiceConfig};
use crate::{Arg, ArgKind, Error, Result};

/// The common settings under the kit: the host's defaults, the service named `test`, and both
/// eventbuses in use unless a test turns one off.
fn common() -> ServiceConfig {
    ServiceConfig {
        name: "test".to_owned(),
        mqtt: Some(MqttSettings::default()),
        ..ServiceConfig::default()
    }
}

/// The configuration for a plugin declaring `args`, with `overrides` (name, value) applied.
/// An override for an argument nobody declares, or of the wrong type, is an `Invalid` error,
/// as the host's command-line parser would refuse it.
pub(super) fn build(args: &[Arg], overrides: &[(String, Value)]) -> Result<PluginConfig> {
    let mut config = PluginConfig {
        service: common(),
        args: Default::default(),
    };
    for arg in args {
        let value = match (arg.default_value(), arg.kind()) {
            (Some(default), _) => default.clone(),
            (None, ArgKind::Flag) => Value::Bool(false),
            (None, _) => Value::Null,
        };
        config.args.insert(arg_key(arg.name()), value);
    }
    for (name, value) in overrides {
        let key = arg_key(name);
        match args.iter().find(|arg| arg_key(arg.name()) == key) {
            Some(arg) => {
                config.args.insert(key, typed(arg, value)?);
            }
            None => set_common(&mut config.service, name, &key, value)?,
        }
    }
    Ok(config)
}

/// Sets one of the common settings from a test's override.
fn set_common(service: &mut ServiceConfig, name: &str, key: &str, value: &Value) -> Result<()> {
    let text = || -> Result<String> {
        match value {
            Value::String(text) => Ok(text.clone()),
            other => Err(invalid(format!(
                "argument --{name} takes text, not {other}"
            ))),
        }
    };
    let flag = || typed(&Arg::flag(name), value).map(|v| v.as_bool() == Some(true));
    let port = || -> Result<u16> {
        let number = typed(&Arg::int(name), value)?;
        let port = number.as_u64().and_then(|n| u16::try_from(n).ok());
        port.ok_or_else(|| invalid(format!("argument --{name} takes a port, not {value}")))
    };
    match key {
        "name" => service.name = text()?,
        "host" => service.host = text()?,
        "port" => service.port = port()?,
        "debug" => service.debug = flag()?,
        "amqp" => service.amqp = flag()?.then(Default::default),
        "mqtt" => service.mqtt = flag()?.then(Default::default),
        "eventbus_host" => service.amqp.get_or_insert_with(Default::default).host = text()?,
        "eventbus_port" => service.amqp.get_or_insert_with(Default::default).port = port()?,
        "state_topic" => {
            service
                .mqtt
                .get_or_insert_with(Default::default)
                .state_topic = text()?
        }
        "history_topic" => {
            service
                .mqtt
                .get_or_insert_with(Default::default)
                .history_topic = text()?
        }
        _ => return Err(invalid(format!("unknown argument --{name}"))),
    }
    Ok(())
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
    use serde_json::json;

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
                ("amqp".into(), json!("false")),
            ],
        )
        .unwrap();
        assert_eq!(config.args["update_interval"], json!(5.0));
        assert_eq!(config.args["device_id"], json!("f1"));
        assert_eq!(config.args["simulate"], json!(false));
        assert_eq!(config.args["retries"], json!(7));
        assert_eq!(config.service.name, "svc");
        assert!(config.service.amqp.is_none());
        let mqtt = config.service.mqtt.unwrap();
        assert_eq!(mqtt.state_topic, "brewcast/state");

        let err = build(&args, &[("nope".into(), json!(1))]).unwrap_err();
        assert_eq!(err.message(), "unknown argument --nope");
        let err = build(&args, &[("retries".into(), json!("many"))]).unwrap_err();
        assert!(
            err.message().contains("takes an integer, not \"many\""),
            "{err}"
        );
        let err = build(&args, &[("device-id".into(), json!(5))]).unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::Invalid);
        let err = build(&args, &[("port".into(), json!(70000))]).unwrap_err();
        assert!(err.message().contains("takes a port"), "{err}");
    }
}
