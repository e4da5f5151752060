//! Plugin arguments: each one a clap option next to the host's, read back into the JSON
//! configuration the plugin gets.

use clap::{builder::ValueParser, Arg, ArgMatches};
use plugin_api::{Arg as PluginArg, ArgKind};
use serde_json::{Map, Value};

use super::{
    env_name,
    values::{flag, parse_float},
};

/// A plugin's argument, with the plugin that declared it (for clash messages).
pub struct PluginArgSpec {
    pub plugin: String,
    pub arg: PluginArg,
}

impl PluginArgSpec {
    /// The clap option: `--<name>`, `BREWBLOX_<NAME>`, typed, with the default in its help.
    pub(super) fn to_arg(&self) -> Arg {
        let name = self.arg.name().to_owned();
        let default = self.arg.default_value().map(|value| match value {
            Value::String(text) => text.clone(),
            other => other.to_string(),
        });
        let mut help = self.arg.help_text().to_owned();
        if let Some(default) = &default {
            help = format!("{help} [{default}]");
        }
        help = format!("{help} (plugin {})", self.plugin);
        let arg = Arg::new(name.clone())
            .long(name.clone())
            .help(help.trim_start().to_owned())
            .env(env_name(&name));
        let arg = match self.arg.kind() {
            ArgKind::Flag => flag(arg),
            ArgKind::Int => arg.value_parser(clap::value_parser!(i64)),
            ArgKind::Float => arg.value_parser(ValueParser::new(parse_float)),
            ArgKind::String => arg,
        };
        match (self.arg.kind(), default) {
            (ArgKind::Flag, _) | (_, None) => arg,
            (_, Some(default)) => arg.default_value(default),
        }
    }

    /// The parsed value as JSON (null when absent and without default).
    fn value(&self, matches: &ArgMatches) -> Value {
        let id = self.arg.name();
        match self.arg.kind() {
            ArgKind::Flag => matches.get_flag(id).into(),
            ArgKind::Int => matches
                .get_one::<i64>(id)
                .map_or(Value::Null, |v| (*v).into()),
            ArgKind::Float => matches
                .get_one::<f64>(id)
                .map_or(Value::Null, |v| (*v).into()),
            ArgKind::String => matches
                .get_one::<String>(id)
                .map_or(Value::Null, |v| v.clone().into()),
        }
    }
}

/// Every plugin argument's value, keyed by its name with `-` as `_`.
pub(super) fn values(matches: &ArgMatches, specs: &[PluginArgSpec]) -> Map<String, Value> {
    specs
        .iter()
        .map(|spec| (spec.arg.name().replace('-', "_"), spec.value(matches)))
        .collect()
}
