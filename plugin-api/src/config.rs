//! The parsed configuration a plugin reads (the arguments it declares are
//! [`Arg`](crate::Arg)s, part of the ABI's JSON contract).

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::abi::config::{arg_key, PluginConfig};
pub use crate::abi::config::{AmqpSettings, MqttSettings, ServiceConfig};
use crate::{Error, Result};

/// The service configuration: the settings every brewblox service has, typed
/// ([`service`](Config::service), [`mqtt`](Config::mqtt), …), and every argument declared by
/// any plugin in the host ([`get`](Config::get)).
///
/// ```no_run
/// # async fn demo(ctx: plugin_api::Context) -> plugin_api::Result<()> {
/// let config = ctx.config();
/// let interval: f64 = config.get("update-interval")?;
/// tracing::info!("service {} updates every {interval} s", config.name());
/// if let Some(topic) = config.state_topic() {
///     tracing::info!("state events go to {topic}");
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Default)]
pub struct Config {
    values: PluginConfig,
}

impl Config {
    /// Parses the JSON the host hands over.
    pub(crate) fn from_json(text: &str) -> Result<Self> {
        serde_json::from_str(text)
            .map(|values| Config { values })
            .map_err(|err| Error::msg(format!("host configuration: {err}")))
    }

    /// A plugin argument's value by its name (`update-interval` and `update_interval` are
    /// the same), converted to `T`.
    ///
    /// ```
    /// # let config = plugin_api::Config::default();
    /// let missing: plugin_api::Result<f64> = config.get("nope");
    /// assert!(missing.is_err());
    /// ```
    pub fn get<T: DeserializeOwned>(&self, name: &str) -> Result<T> {
        let value = self
            .value(name)
            .ok_or_else(|| Error::msg(format!("no configuration value \"{name}\"")))?;
        T::deserialize(value)
            .map_err(|err| Error::msg(format!("configuration value \"{name}\": {err}")))
    }

    /// A plugin argument's raw value by its name, if present.
    ///
    /// ```
    /// # let config = plugin_api::Config::default();
    /// assert!(config.value("update-interval").is_none());
    /// ```
    pub fn value(&self, name: &str) -> Option<&Value> {
        self.values.args.get(&arg_key(name))
    }

    /// The settings every service has, as the host's command line set them.
    ///
    /// ```
    /// # let config = plugin_api::Config::default();
    /// assert_eq!(config.service().port, 5000);
    /// ```
    pub fn service(&self) -> &ServiceConfig {
        &self.values.service
    }

    /// The service name (`--name`); every route lives under `/{name}`.
    ///
    /// ```
    /// # let config = plugin_api::Config::default();
    /// let prefix = format!("/{}", config.name());
    /// ```
    pub fn name(&self) -> &str {
        &self.values.service.name
    }

    /// The address the HTTP server binds to (`--host`).
    pub fn host(&self) -> &str {
        &self.values.service.host
    }

    /// The HTTP port (`--port`).
    pub fn port(&self) -> u16 {
        self.values.service.port
    }

    /// Whether `--debug` was given.
    ///
    /// ```
    /// # let config = plugin_api::Config::default();
    /// assert!(!config.debug());
    /// ```
    pub fn debug(&self) -> bool {
        self.values.service.debug
    }

    /// The AMQP eventbus's settings, when the service uses AMQP.
    ///
    /// ```
    /// # let config = plugin_api::Config::default();
    /// if let Some(amqp) = config.amqp() {
    ///     tracing::info!("AMQP broker at {}:{}", amqp.host, amqp.port);
    /// }
    /// ```
    pub fn amqp(&self) -> Option<&AmqpSettings> {
        self.values.service.amqp.as_ref()
    }

    /// The MQTT eventbus's settings, when the service uses MQTT.
    pub fn mqtt(&self) -> Option<&MqttSettings> {
        self.values.service.mqtt.as_ref()
    }

    /// Where this service's state events go on MQTT: `<--state-topic>/<name>`, the topic the
    /// fleet reads a service's state from; `None` without MQTT.
    ///
    /// ```
    /// # let config = plugin_api::Config::default();
    /// assert_eq!(config.state_topic(), None); // the default service uses AMQP only
    /// ```
    pub fn state_topic(&self) -> Option<String> {
        let mqtt = self.mqtt()?;
        Some(format!("{}/{}", mqtt.state_topic, self.name()))
    }

    /// Where this service's history events go on MQTT: `<--history-topic>/<name>`; `None`
    /// without MQTT.
    pub fn history_topic(&self) -> Option<String> {
        let mqtt = self.mqtt()?;
        Some(format!("{}/{}", mqtt.history_topic, self.name()))
    }

    /// The AMQP broker's host (`--eventbus-host`); empty without AMQP.
    pub fn eventbus_host(&self) -> &str {
        self.amqp().map_or("", |amqp| amqp.host.as_str())
    }

    /// The AMQP broker's port (`--eventbus-port`); 0 without AMQP.
    pub fn eventbus_port(&self) -> u16 {
        self.amqp().map_or(0, |amqp| amqp.port)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_settings_and_arguments_with_either_spelling() {
        let config = Config::from_json(
            r#"{"service":{"name":"svc","host":"h","port":1234,"debug":false,"amqp":null,
                "mqtt":{"history_topic":"b/h","state_topic":"b/s"}},
               "args":{"update_interval":2.5}}"#,
        )
        .unwrap();
        assert_eq!(config.name(), "svc");
        assert_eq!(config.port(), 1234);
        assert!(config.amqp().is_none());
        assert_eq!(config.state_topic().as_deref(), Some("b/s/svc"));
        assert_eq!(config.history_topic().as_deref(), Some("b/h/svc"));
        assert_eq!(config.get::<f64>("update-interval").unwrap(), 2.5);
        assert!(config.get::<String>("update-interval").is_err());
        assert!(Config::from_json("[]").is_err());
    }
}
