//! Command-line arguments a plugin declares, and the parsed configuration it reads.

use serde::{de::DeserializeOwned, Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::{Error, Result};

/// The type of a declared argument's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
///
/// ```
/// let arg = plugin_api::Arg::float("ratio");
/// assert_eq!(arg.kind(), plugin_api::ArgKind::Float);
/// ```
pub enum ArgKind {
    /// Any text.
    String,
    /// A signed 64-bit integer.
    Int,
    /// A 64-bit float.
    Float,
    /// A switch without a value (`--dry-run`); `false` unless given.
    Flag,
}

/// A command-line argument a plugin adds to the host's parser.
///
/// It shows in `brewblox-host --help`, can be set from the environment as
/// `BREWBLOX_<NAME>` (upper case, `-` as `_`), and reaches the plugin typed through
/// [`Config::get`].
///
/// ```
/// use plugin_api::Arg;
///
/// let args = vec![
///     Arg::float("update-interval").default(5.0).help("Seconds between updates"),
///     Arg::string("device-id").default("fermenter-1").help("Device name"),
///     Arg::flag("simulate-faults").help("Let the simulated heater fail now and then"),
/// ];
/// assert_eq!(args[0].name(), "update-interval");
/// ```
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Arg {
    name: String,
    kind: ArgKind,
    #[serde(default)]
    help: String,
    #[serde(default)]
    default: Option<Value>,
}

impl Arg {
    fn new(name: &str, kind: ArgKind) -> Self {
        Arg {
            name: name.trim_start_matches('-').to_owned(),
            kind,
            help: String::new(),
            default: None,
        }
    }

    /// A text argument, `--name VALUE`.
    ///
    /// ```
    /// let arg = plugin_api::Arg::string("device-id");
    /// assert_eq!(arg.kind(), plugin_api::ArgKind::String);
    /// ```
    pub fn string(name: &str) -> Self {
        Arg::new(name, ArgKind::String)
    }

    /// An integer argument.
    ///
    /// ```
    /// let arg = plugin_api::Arg::int("retries").default(3);
    /// ```
    pub fn int(name: &str) -> Self {
        Arg::new(name, ArgKind::Int)
    }

    /// A float argument.
    ///
    /// ```
    /// let arg = plugin_api::Arg::float("update-interval").default(2.5);
    /// ```
    pub fn float(name: &str) -> Self {
        Arg::new(name, ArgKind::Float)
    }

    /// A switch without a value; `true` when given.
    ///
    /// ```
    /// let arg = plugin_api::Arg::flag("dry-run").help("Change nothing");
    /// ```
    pub fn flag(name: &str) -> Self {
        Arg::new(name, ArgKind::Flag)
    }

    /// The help text shown by `--help`.
    ///
    /// ```
    /// let arg = plugin_api::Arg::string("x").help("An example");
    /// assert_eq!(arg.help_text(), "An example");
    /// ```
    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.help = help.into();
        self
    }

    /// The value used when the argument is not given.
    ///
    /// ```
    /// let arg = plugin_api::Arg::int("retries").default(3);
    /// ```
    pub fn default(mut self, value: impl Into<Value>) -> Self {
        self.default = Some(value.into());
        self
    }

    /// The argument's name, without dashes.
    ///
    /// ```
    /// assert_eq!(plugin_api::Arg::int("--retries").name(), "retries");
    /// ```
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The value type.
    ///
    /// ```
    /// assert_eq!(plugin_api::Arg::flag("x").kind(), plugin_api::ArgKind::Flag);
    /// ```
    pub fn kind(&self) -> ArgKind {
        self.kind
    }

    /// The help text.
    ///
    /// ```
    /// assert_eq!(plugin_api::Arg::flag("x").help_text(), "");
    /// ```
    pub fn help_text(&self) -> &str {
        &self.help
    }

    /// The default value, if any.
    ///
    /// ```
    /// assert_eq!(plugin_api::Arg::int("x").default(1).default_value(), Some(&1.into()));
    /// ```
    pub fn default_value(&self) -> Option<&Value> {
        self.default.as_ref()
    }
}

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
