//! The command-line arguments a plugin declares: `declare_args` hands them to the host as a
//! JSON array of these specs, which the host adds to its parser. Kept here, in the ABI crate,
//! because the host reads them; the builder methods are what plugin authors use (through
//! `plugin_api::Arg`).

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The type of a declared argument's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
///
/// ```
/// # use plugin_abi as plugin_api; // what a plugin writes: plugin_api::Arg
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
/// `plugin_api::Config::get`.
///
/// ```
/// # use plugin_abi as plugin_api; // what a plugin writes: plugin_api::Arg
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
    /// # use plugin_abi as plugin_api; // what a plugin writes: plugin_api::Arg
    /// let arg = plugin_api::Arg::string("device-id");
    /// assert_eq!(arg.kind(), plugin_api::ArgKind::String);
    /// ```
    pub fn string(name: &str) -> Self {
        Arg::new(name, ArgKind::String)
    }

    /// An integer argument.
    ///
    /// ```
    /// # use plugin_abi as plugin_api; // what a plugin writes: plugin_api::Arg
    /// let arg = plugin_api::Arg::int("retries").default(3);
    /// ```
    pub fn int(name: &str) -> Self {
        Arg::new(name, ArgKind::Int)
    }

    /// A float argument.
    ///
    /// ```
    /// # use plugin_abi as plugin_api; // what a plugin writes: plugin_api::Arg
    /// let arg = plugin_api::Arg::float("update-interval").default(2.5);
    /// ```
    pub fn float(name: &str) -> Self {
        Arg::new(name, ArgKind::Float)
    }

    /// A switch without a value; `true` when given.
    ///
    /// ```
    /// # use plugin_abi as plugin_api; // what a plugin writes: plugin_api::Arg
    /// let arg = plugin_api::Arg::flag("dry-run").help("Change nothing");
    /// ```
    pub fn flag(name: &str) -> Self {
        Arg::new(name, ArgKind::Flag)
    }

    /// The help text shown by `--help`.
    ///
    /// ```
    /// # use plugin_abi as plugin_api; // what a plugin writes: plugin_api::Arg
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
    /// # use plugin_abi as plugin_api; // what a plugin writes: plugin_api::Arg
    /// let arg = plugin_api::Arg::int("retries").default(3);
    /// ```
    pub fn default(mut self, value: impl Into<Value>) -> Self {
        self.default = Some(value.into());
        self
    }

    /// The argument's name, without dashes.
    ///
    /// ```
    /// # use plugin_abi as plugin_api; // what a plugin writes: plugin_api::Arg
    /// assert_eq!(plugin_api::Arg::int("--retries").name(), "retries");
    /// ```
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The value type.
    ///
    /// ```
    /// # use plugin_abi as plugin_api; // what a plugin writes: plugin_api::Arg
    /// assert_eq!(plugin_api::Arg::flag("x").kind(), plugin_api::ArgKind::Flag);
    /// ```
    pub fn kind(&self) -> ArgKind {
        self.kind
    }

    /// The help text.
    ///
    /// ```
    /// # use plugin_abi as plugin_api; // what a plugin writes: plugin_api::Arg
    /// assert_eq!(plugin_api::Arg::flag("x").help_text(), "");
    /// ```
    pub fn help_text(&self) -> &str {
        &self.help
    }

    /// The default value, if any.
    ///
    /// ```
    /// # use plugin_abi as plugin_api; // what a plugin writes: plugin_api::Arg
    /// assert_eq!(plugin_api::Arg::int("x").default(1).default_value(), Some(&1.into()));
    /// ```
    pub fn default_value(&self) -> Option<&Value> {
        self.default.as_ref()
    }
}
