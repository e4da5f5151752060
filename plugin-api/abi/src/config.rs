//! The configuration the host hands every plugin (`HostContext::config_json`): one typed
//! record of the settings every service has, beside the values of the arguments plugins
//! declare. It crosses as JSON, like every low-frequency contract here, so a field can be added
//! without a layout change.
//!
//! The defaults of the common settings are written here once: the host's command line uses
//! them as its defaults, and the SDK's test host builds the same record from them.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The host's default for `--host`: every interface.
pub const DEFAULT_HTTP_HOST: &str = "0.0.0.0";
/// The host's default for `--port`.
pub const DEFAULT_HTTP_PORT: u16 = 5000;
/// The host's default for `--name`.
pub const DEFAULT_NAME: &str = "_service";
/// The broker's host name in a BrewBlox installation (`--eventbus-host`, `--mqtt-host`).
pub const DEFAULT_BROKER_HOST: &str = "eventbus";
/// The AMQP port (`--eventbus-port`).
pub const DEFAULT_AMQP_PORT: u16 = 5672;
/// Where history events go on MQTT (`--history-topic`).
pub const DEFAULT_HISTORY_TOPIC: &str = "brewcast/history";
/// Where state events go on MQTT (`--state-topic`).
pub const DEFAULT_STATE_TOPIC: &str = "brewcast/state";

/// The whole configuration: the common settings, and every plugin argument's value by its
/// key (the name without leading dashes, `-` as `_`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PluginConfig {
    pub service: ServiceConfig,
    pub args: Map<String, Value>,
}

/// The settings every service has, from the host's command line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceConfig {
    /// `--name`: every route lives under `/{name}`; the routing key and the key of state
    /// events.
    pub name: String,
    /// `--host`: the address the HTTP server binds to.
    pub host: String,
    /// `--port`: the HTTP port.
    pub port: u16,
    /// `--debug`.
    pub debug: bool,
    /// The AMQP eventbus, when the service uses it.
    pub amqp: Option<AmqpSettings>,
    /// The MQTT eventbus, when the service uses it.
    pub mqtt: Option<MqttSettings>,
}

impl Default for ServiceConfig {
    /// The host's defaults, with AMQP on (as a service started without options has it).
    fn default() -> Self {
        ServiceConfig {
            name: DEFAULT_NAME.to_owned(),
            host: DEFAULT_HTTP_HOST.to_owned(),
            port: DEFAULT_HTTP_PORT,
            debug: false,
            amqp: Some(AmqpSettings::default()),
            mqtt: None,
        }
    }
}

/// Where the AMQP broker is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AmqpSettings {
    /// `--eventbus-host`.
    pub host: String,
    /// `--eventbus-port`.
    pub port: u16,
}

impl Default for AmqpSettings {
    fn default() -> Self {
        AmqpSettings {
            host: DEFAULT_BROKER_HOST.to_owned(),
            port: DEFAULT_AMQP_PORT,
        }
    }
}

/// The MQTT topics the fleet uses.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MqttSettings {
    /// `--history-topic`: history events go to `<history_topic>/<name>`.
    pub history_topic: String,
    /// `--state-topic`: state events go to `<state_topic>/<name>`.
    pub state_topic: String,
}

impl Default for MqttSettings {
    fn default() -> Self {
        MqttSettings {
            history_topic: DEFAULT_HISTORY_TOPIC.to_owned(),
            state_topic: DEFAULT_STATE_TOPIC.to_owned(),
        }
    }
}

/// A plugin argument's key in [`PluginConfig::args`]: `--update-interval` and
/// `update_interval` are the same argument.
///
/// ```
/// assert_eq!(plugin_abi::config::arg_key("--update-interval"), "update_interval");
/// ```
pub fn arg_key(name: &str) -> String {
    name.trim_start_matches('-').replace('-', "_")
}
