//! Plugin arguments: each one a clap option next to the host's, read back into the JSON
//! configuration the plugin gets.

use clap::{builder::ValueParser, Arg, ArgMatches};
use plugin_abi::{Arg as PluginArg, ArgKind};
use serde_json::{Map, Value};

use super::{
    builtin_names, env_name,
    values::{flag, parse_float},
};
use crate::names;

/// Why a plugin's argument was refused; each names the plugin and the argument.
#[derive(Debug, thiserror::Error)]
pub enum PluginArgError {
    #[error("plugin {plugin} declares an invalid argument: {name}")]
    Invalid {
        plugin: String,
        name: names::InvalidName,
    },
    #[error("plugin {plugin} declares --{arg}, which the host already has")]
    HostHas { plugin: String, arg: String },
    #[error(
        "plugin {plugin} declares --{arg}, which plugin {other} declares too (as --{other_arg})"
    )]
    Clash {
        plugin: String,
        arg: String,
        other: String,
        other_arg: String,
    },
}

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

/// Adds the arguments `plugin` declares to `specs`, refusing a name that breaks the
/// argument-name rule ([`names::identifier`]) or that a host option or an earlier plugin
/// already has. Names that differ only in `-` and `_` clash too: they share a
/// `BREWBLOX_` variable and a config key. The error names the plugin and the argument.
pub fn add_plugin_args(
    specs: &mut Vec<PluginArgSpec>,
    plugin: &str,
    args: &[PluginArg],
) -> Result<(), PluginArgError> {
    let key = |name: &str| plugin_abi::config::arg_key(name);
    // Once per process, as the names themselves.
    static BUILTIN_KEYS: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    let builtin = BUILTIN_KEYS.get_or_init(|| builtin_names().iter().map(|n| key(n)).collect());
    for arg in args {
        let name = arg.name();
        names::identifier("argument name", name).map_err(|err| PluginArgError::Invalid {
            plugin: plugin.to_owned(),
            name: err,
        })?;
        if builtin.contains(&key(name)) || name == "help" {
            return Err(PluginArgError::HostHas {
                plugin: plugin.to_owned(),
                arg: name.to_owned(),
            });
        }
        if let Some(other) = specs.iter().find(|s| key(s.arg.name()) == key(name)) {
            return Err(PluginArgError::Clash {
                plugin: plugin.to_owned(),
                arg: name.to_owned(),
                other: other.plugin.clone(),
                other_arg: other.arg.name().to_owned(),
            });
        }
        specs.push(PluginArgSpec {
            plugin: plugin.to_owned(),
            arg: arg.clone(),
        });
    }
    Ok(())
}

/// Every plugin argument's value, keyed by its name with `-` as `_`.
pub(super) fn values(matches: &ArgMatches, specs: &[PluginArgSpec]) -> Map<String, Value> {
    specs
        .iter()
        .map(|spec| {
            (
                plugin_abi::config::arg_key(spec.arg.name()),
                spec.value(matches),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugin_arguments_are_checked_against_the_rule_the_host_and_each_other() {
        let mut specs = Vec::new();
        add_plugin_args(&mut specs, "a", &[PluginArg::int("a-count")]).unwrap();
        for (arg, expected) in [
            (
                "bad name",
                "declares an invalid argument: argument name \"bad name\"",
            ),
            ("_x", "does not start with a letter or digit"),
            ("port", "--port, which the host already has"),
            (
                "eventbus_host",
                "--eventbus_host, which the host already has",
            ),
            ("help", "--help, which the host already has"),
            (
                "a_count",
                "--a_count, which plugin a declares too (as --a-count)",
            ),
        ] {
            let err = add_plugin_args(&mut specs, "b", &[PluginArg::string(arg)]).expect_err(arg);
            assert!(err.to_string().contains(expected), "{arg}: {err}");
        }
        assert_eq!(specs.len(), 1);
    }
}
