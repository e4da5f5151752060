//! The parsed configuration a plugin reads (the arguments it declares are
//! [`Arg`](crate::Arg)s, part of the ABI's JSON contract).

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::{Error, Result};

/// The service configuration: the common options of every brewblox service plus every
/// argument declared by any plugin in the host.
///
/// ```no_run
/// # async fn demo(ctx: plugin_api::Context) -> plugin_api::Result<()> {
/// let config = ctx.config();
/// let interval: f64 = config.get("update-interval")?;
/// tracing::info!("service {} updates every {interval} s", config.name());
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Default)]
pub struct Config {
    values: Map<String, Value>,
}

impl Config {
    /// Parses the JSON object the host hands over.
    pub(crate) fn from_json(text: &str) -> Result<Self> {
        match serde_json::from_str(text) {
            Ok(Value::Object(values)) => Ok(Config { values }),
            Ok(_) => Err(Error::msg("host configuration is not a JSON object")),
            Err(err) => Err(Error::msg(format!("host configuration: {err}"))),
        }
    }

    /// A value by argument name (`update-interval` and `update_interval` are the same),
    /// converted to `T`.
    ///
    /// ```
    /// # let config = plugin_api::Config::default();
    /// let missing: plugin_api::Result<f64> = config.get("nope");
    /// assert!(missing.is_err());
    /// ```
    pub fn get<T: DeserializeOwned>(&self, name: &str) -> Result<T> {
        let key = name.trim_start_matches('-').replace('-', "_");
        let value = self
            .values
            .get(&key)
            .ok_or_else(|| Error::msg(format!("no configuration value \"{name}\"")))?;
        T::deserialize(value)
            .map_err(|err| Error::msg(format!("configuration value \"{name}\": {err}")))
    }

    /// The raw value by argument name, if present.
    ///
    /// ```
    /// # let config = plugin_api::Config::default();
    /// assert!(config.value("name").is_none());
    /// ```
    pub fn value(&self, name: &str) -> Option<&Value> {
        self.values
            .get(&name.trim_start_matches('-').replace('-', "_"))
    }

    /// A text value the host always sets; empty in a configuration the host did not make.
    /// (The defaults live in one place, the host's command line: the SDK does not repeat them.)
    fn text(&self, key: &str) -> &str {
        self.values.get(key).and_then(Value::as_str).unwrap_or("")
    }

    /// The service name (`--name`); every route lives under `/{name}`.
    ///
    /// ```
    /// # let config = plugin_api::Config::default();
    /// let prefix = format!("/{}", config.name());
    /// ```
    pub fn name(&self) -> &str {
        self.text("name")
    }

    /// The address the HTTP server binds to (`--host`).
    ///
    /// ```
    /// # let config = plugin_api::Config::default();
    /// let _host = config.host();
    /// ```
    pub fn host(&self) -> &str {
        self.text("host")
    }

    /// The HTTP port (`--port`).
    ///
    /// ```
    /// # let config = plugin_api::Config::default();
    /// let _port: u16 = config.port();
    /// ```
    pub fn port(&self) -> u16 {
        self.get("port").unwrap_or_default()
    }

    /// Whether `--debug` was given.
    ///
    /// ```
    /// # let config = plugin_api::Config::default();
    /// assert!(!config.debug());
    /// ```
    pub fn debug(&self) -> bool {
        self.get("debug").unwrap_or_default()
    }

    /// The eventbus host (`--eventbus-host`).
    ///
    /// ```
    /// # let config = plugin_api::Config::default();
    /// let _bus = config.eventbus_host();
    /// ```
    pub fn eventbus_host(&self) -> &str {
        self.text("eventbus_host")
    }

    /// The eventbus port (`--eventbus-port`).
    ///
    /// ```
    /// # let config = plugin_api::Config::default();
    /// let _port: u16 = config.eventbus_port();
    /// ```
    pub fn eventbus_port(&self) -> u16 {
        self.get("eventbus_port").unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_values_with_either_spelling() {
        let config =
            Config::from_json(r#"{"name":"svc","port":1234,"update_interval":2.5}"#).unwrap();
        assert_eq!(config.name(), "svc");
        assert_eq!(config.port(), 1234);
        assert_eq!(config.get::<f64>("update-interval").unwrap(), 2.5);
        assert!(config.get::<String>("update-interval").is_err());
    }
}
