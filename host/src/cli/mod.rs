//! The command line: brewblox-service's arguments (spec §1), the host's own, and every
//! argument the loaded plugins declare, in one clap parser.
//!
//! Each option can also come from the environment as `BREWBLOX_<OPTION>`, since these
//! services run in containers; the command line wins. `@file` arguments are expanded first,
//! one argument per line, as argparse's `fromfile_prefix_chars='@'` does.

pub mod argfiles;

use std::{
    ffi::{OsStr, OsString},
    path::PathBuf,
    time::Duration,
};

use clap::{builder::ValueParser, Arg, ArgAction, ArgMatches, Command};
use plugin_api::{Arg as PluginArg, ArgKind};
use serde_json::{Map, Value};

use crate::bus::DEFAULT_MAX_MESSAGE_SIZE;

/// The default service name, as `python -m brewblox_service` used.
pub const DEFAULT_NAME: &str = "_service";
/// The default plugins folder.
pub const DEFAULT_PLUGINS: &str = "./plugins";

/// Everything the host itself needs from the command line.
#[derive(Debug, Clone)]
pub struct Settings {
    pub host: String,
    pub port: u16,
    pub output: Option<PathBuf>,
    pub name: String,
    pub debug: bool,
    pub eventbus_host: String,
    pub eventbus_port: u16,
    pub eventbus_user: String,
    pub eventbus_password: String,
    pub eventbus_vhost: String,
    pub eventbus_url: Option<String>,
    pub eventbus_reconnect_interval: Duration,
    pub eventbus_heartbeat: u16,
    pub eventbus_prefetch: u16,
    pub eventbus_publish_timeout: Duration,
    /// Largest message body published or handed to a plugin; 0 for no limit.
    pub eventbus_max_message_size: usize,
    pub plugins: PathBuf,
    pub max_body_size: usize,
    pub shutdown_timeout: Duration,
    pub hook_timeout: Duration,
    /// The configuration handed to plugins (JSON object, original key order first).
    pub config: Map<String, Value>,
}

/// A plugin's argument, with the plugin that declared it (for clash messages).
pub struct PluginArgSpec {
    pub plugin: String,
    pub arg: PluginArg,
}

/// Replaces every `@path` argument by the lines of that file (see [`argfiles`]); an error is
/// a usage error (exit 2).
pub fn expand_argfiles(args: Vec<OsString>) -> Result<Vec<OsString>, String> {
    argfiles::expand(args)
}

/// Finds `--plugins` before the full parser exists (it decides which arguments exist).
pub fn prescan_plugins(args: &[OsString]) -> Option<PathBuf> {
    let mut iter = args.iter().skip(1);
    let mut found = None;
    while let Some(arg) = iter.next() {
        let text = arg.to_string_lossy();
        if text == "--" {
            break;
        }
        if text == "--plugins" {
            found = iter.next().map(PathBuf::from);
        } else if let Some(value) = text.strip_prefix("--plugins=") {
            found = Some(PathBuf::from(value));
        }
    }
    found.or_else(|| std::env::var_os("BREWBLOX_PLUGINS").map(PathBuf::from))
}

/// Names clap must not see twice: the built-ins.
pub fn builtin_names() -> Vec<String> {
    command(&[])
        .get_arguments()
        .map(|a| a.get_id().to_string())
        .collect()
}

fn env_name(id: &str) -> String {
    format!("BREWBLOX_{}", id.to_ascii_uppercase().replace('-', "_"))
}

/// Help texts carry the default as the original's did (`[%(default)s]`), so clap's own
/// `[default: …]` is hidden.
fn opt(id: &'static str, help: &'static str) -> Arg {
    Arg::new(id).long(id).help(help).env(env_name(id))
}

/// The full parser.
pub fn command(plugin_args: &[PluginArgSpec]) -> Command {
    let mut cmd = Command::new("brewblox-host")
        .about("Runs a BrewBlox service from plugin libraries")
        .version(env!("CARGO_PKG_VERSION"))
        .disable_version_flag(true)
        .arg(
            Arg::new("version")
                .long("version")
                .action(ArgAction::Version)
                .help("Print version"),
        )
        .arg(
            opt("host", "Host to which the app binds. [0.0.0.0]")
                .short('H')
                .default_value("0.0.0.0"),
        )
        .arg(
            opt("port", "Port to which the app binds. [5000]")
                .short('p')
                .default_value("5000")
                .value_parser(clap::value_parser!(u16)),
        )
        .arg(opt("output", "Logging output. [None]").short('o'))
        .arg(
            opt(
                "name",
                "Service name. This will be used as prefix for all endpoints. [_service]",
            )
            .short('n')
            .default_value(DEFAULT_NAME)
            .value_parser(parse_name),
        )
        .arg(
            opt(
                "debug",
                "Enable debug logging: DEBUG level, dependency and access logs. [False]",
            )
            .action(ArgAction::SetTrue),
        )
        .arg(
            opt(
                "eventbus-host",
                "Hostname at which the eventbus can be reached [eventbus]",
            )
            .default_value("eventbus"),
        )
        .arg(
            opt(
                "eventbus-port",
                "Port at which the eventbus can be reached [5672]",
            )
            .default_value("5672")
            .value_parser(clap::value_parser!(u16)),
        )
        .arg(opt("eventbus-user", "Eventbus user name [guest]").default_value("guest"))
        .arg(
            opt(
                "eventbus-password",
                "Eventbus password; prefer BREWBLOX_EVENTBUS_PASSWORD [guest]",
            )
            .default_value("guest")
            .hide_env_values(true)
            .hide_default_value(true),
        )
        .arg(opt("eventbus-vhost", "Eventbus virtual host [/]").default_value("/"))
        .arg(
            opt(
                "eventbus-url",
                "AMQP URL (amqp://user:pass@host:port/vhost); overrides the other eventbus options",
            )
            .hide_env_values(true),
        )
        .arg(
            opt(
                "eventbus-reconnect-interval",
                "Seconds between eventbus connection attempts [1]",
            )
            .default_value("1")
            .value_parser(parse_seconds),
        )
        .arg(
            opt(
                "eventbus-heartbeat",
                "AMQP heartbeat in seconds; a silent broker is dropped after two [10]",
            )
            .default_value("10")
            .value_parser(clap::value_parser!(u16)),
        )
        .arg(
            opt(
                "eventbus-prefetch",
                "Unacknowledged messages per subscription, bounding memory [100]",
            )
            .default_value("100")
            .value_parser(clap::value_parser!(u16).range(1..)),
        )
        .arg(
            opt(
                "eventbus-publish-timeout",
                "Seconds a publish may take before it fails [10]",
            )
            .default_value("10")
            .value_parser(parse_seconds),
        )
        .arg(
            opt(
                "eventbus-max-message-size",
                "Largest message in bytes published or delivered to a plugin, 0 for none [16777216]",
            )
            .default_value("16777216")
            .value_parser(clap::value_parser!(usize)),
        )
        .arg(
            opt(
                "plugins",
                "Folder of plugin libraries (*.so) to load [./plugins]",
            )
            .default_value(DEFAULT_PLUGINS),
        )
        .arg(
            opt(
                "max-body-size",
                "Largest accepted request body in bytes [1048576]",
            )
            .default_value("1048576")
            .value_parser(clap::value_parser!(usize)),
        )
        .arg(
            opt(
                "shutdown-timeout",
                "Seconds to wait for in-flight requests at shutdown [60]",
            )
            .default_value("60")
            .value_parser(parse_seconds),
        )
        .arg(
            opt(
                "hook-timeout",
                "Seconds a plugin's shutdown hook may take before it is abandoned [10]",
            )
            .default_value("10")
            .value_parser(parse_seconds),
        );
    for spec in plugin_args {
        cmd = cmd.arg(plugin_arg(spec));
    }
    cmd.hide_possible_values(true)
        .args_override_self(true)
        .mut_args(|arg| {
            if arg.get_action().takes_values() {
                arg.hide_default_value(true)
            } else {
                arg
            }
        })
}

fn plugin_arg(spec: &PluginArgSpec) -> Arg {
    let name = spec.arg.name().to_owned();
    let mut help = spec.arg.help_text().to_owned();
    let default = spec.arg.default_value().map(|value| match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    });
    if let Some(default) = &default {
        help = format!("{help} [{default}]");
    }
    help = format!("{help} (plugin {})", spec.plugin);
    let mut arg = Arg::new(name.clone())
        .long(name.clone())
        .help(help.trim_start().to_owned())
        .env(env_name(&name));
    arg = match spec.arg.kind() {
        ArgKind::Flag => arg.action(ArgAction::SetTrue),
        ArgKind::Int => arg.value_parser(clap::value_parser!(i64)),
        ArgKind::Float => arg.value_parser(ValueParser::new(parse_float)),
        ArgKind::String => arg,
    };
    match (spec.arg.kind(), default) {
        (ArgKind::Flag, _) | (_, None) => arg,
        (_, Some(default)) => arg.default_value(default),
    }
}

/// A finite float: NaN and infinity cannot reach plugins (their config is JSON).
fn parse_float(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(value) if value.is_finite() => Ok(value),
        _ => Err(format!("invalid float value: '{text}'")),
    }
}

fn parse_seconds(text: &str) -> Result<Duration, String> {
    let secs = parse_float(text)?;
    Duration::try_from_secs_f64(secs).map_err(|_| format!("not a duration in seconds: '{text}'"))
}

/// A name that makes a usable prefix: the original failed deep inside aiohttp for `''`,
/// `'/'` or a trailing `/`; we refuse them at parse time.
fn parse_name(text: &str) -> Result<String, String> {
    let name = text.trim_start_matches('/');
    if name.is_empty() || name.ends_with('/') {
        return Err(format!(
            "'{text}' is not a usable service name (empty or ends in '/')"
        ));
    }
    if name.contains(['?', '#', '{', '}', ' ']) {
        return Err(format!(
            "'{text}' is not a usable service name (contains ?, #, {{, }} or a space)"
        ));
    }
    Ok(name.to_owned())
}

/// Parses `args` (program name first). clap errors carry exit code 2, help and version 0.
pub fn parse(args: &[OsString], plugin_args: &[PluginArgSpec]) -> Result<Settings, clap::Error> {
    let matches = command(plugin_args).try_get_matches_from(args)?;
    Ok(settings_from(&matches, plugin_args))
}

fn string(matches: &ArgMatches, id: &str) -> String {
    matches.get_one::<String>(id).cloned().unwrap_or_default()
}

fn settings_from(matches: &ArgMatches, plugin_args: &[PluginArgSpec]) -> Settings {
    let host = string(matches, "host");
    let port = matches.get_one::<u16>("port").copied().unwrap_or(5000);
    let output = matches.get_one::<String>("output").map(PathBuf::from);
    let name = string(matches, "name");
    let debug = matches.get_flag("debug");
    let eventbus_host = string(matches, "eventbus-host");
    let eventbus_port = matches
        .get_one::<u16>("eventbus-port")
        .copied()
        .unwrap_or(5672);

    // Key order of the original's app['config'], then the host's, then the plugins'.
    let mut config = Map::new();
    config.insert("host".into(), host.clone().into());
    config.insert("port".into(), port.into());
    config.insert(
        "output".into(),
        output
            .as_ref()
            .map_or(Value::Null, |p| p.display().to_string().into()),
    );
    config.insert("name".into(), name.clone().into());
    config.insert("debug".into(), debug.into());
    config.insert("eventbus_host".into(), eventbus_host.clone().into());
    config.insert("eventbus_port".into(), eventbus_port.into());
    for spec in plugin_args {
        let id = spec.arg.name();
        let value = match spec.arg.kind() {
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
        };
        config.insert(id.replace('-', "_"), value);
    }

    Settings {
        host,
        port,
        output,
        name,
        debug,
        eventbus_host,
        eventbus_port,
        eventbus_user: string(matches, "eventbus-user"),
        eventbus_password: string(matches, "eventbus-password"),
        eventbus_vhost: string(matches, "eventbus-vhost"),
        eventbus_url: matches.get_one::<String>("eventbus-url").cloned(),
        eventbus_reconnect_interval: matches
            .get_one::<Duration>("eventbus-reconnect-interval")
            .copied()
            .unwrap_or(Duration::from_secs(1)),
        eventbus_heartbeat: matches
            .get_one::<u16>("eventbus-heartbeat")
            .copied()
            .unwrap_or(10),
        eventbus_prefetch: matches
            .get_one::<u16>("eventbus-prefetch")
            .copied()
            .unwrap_or(100),
        eventbus_publish_timeout: matches
            .get_one::<Duration>("eventbus-publish-timeout")
            .copied()
            .unwrap_or(Duration::from_secs(10)),
        eventbus_max_message_size: matches
            .get_one::<usize>("eventbus-max-message-size")
            .copied()
            .unwrap_or(DEFAULT_MAX_MESSAGE_SIZE),
        plugins: PathBuf::from(string(matches, "plugins")),
        max_body_size: matches
            .get_one::<usize>("max-body-size")
            .copied()
            .unwrap_or(1 << 20),
        shutdown_timeout: matches
            .get_one::<Duration>("shutdown-timeout")
            .copied()
            .unwrap_or(Duration::from_secs(60)),
        hook_timeout: matches
            .get_one::<Duration>("hook-timeout")
            .copied()
            .unwrap_or(Duration::from_secs(10)),
        config,
    }
}

/// Whether `--debug` is on before parsing (for how much detail load errors show).
pub fn prescan_debug(args: &[OsString]) -> bool {
    args.iter().any(|a| a.as_os_str() == OsStr::new("--debug"))
        || std::env::var("BREWBLOX_DEBUG")
            .is_ok_and(|v| matches!(v.as_str(), "1" | "true" | "yes" | "on"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<OsString> {
        std::iter::once("brewblox-host")
            .chain(list.iter().copied())
            .map(OsString::from)
            .collect()
    }

    #[test]
    fn defaults_match_the_original() {
        let s = parse(&args(&[]), &[]).unwrap();
        assert_eq!(
            (s.host.as_str(), s.port, s.name.as_str()),
            ("0.0.0.0", 5000, "_service")
        );
        assert!(!s.debug && s.output.is_none());
        assert_eq!(
            (s.eventbus_host.as_str(), s.eventbus_port),
            ("eventbus", 5672)
        );
        let keys: Vec<_> = s.config.keys().cloned().collect();
        assert_eq!(
            keys,
            [
                "host",
                "port",
                "output",
                "name",
                "debug",
                "eventbus_host",
                "eventbus_port"
            ]
        );
    }

    #[test]
    fn short_flags() {
        let s = parse(
            &args(&["-H", "h", "-p", "1234", "-o", "f", "-n", "svc", "--debug"]),
            &[],
        )
        .unwrap();
        assert_eq!(
            (s.host.as_str(), s.port, s.name.as_str(), s.debug),
            ("h", 1234, "svc", true)
        );
        assert_eq!(s.output, Some(PathBuf::from("f")));
    }

    #[test]
    fn names_become_prefixes() {
        assert_eq!(parse(&args(&["-n", "/x"]), &[]).unwrap().name, "x");
        assert_eq!(parse(&args(&["-n", "a/b"]), &[]).unwrap().name, "a/b");
        for bad in ["", "/", "trail/"] {
            assert!(parse(&args(&["-n", bad]), &[]).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_message_size_cap_defaults_to_16_mib_and_0_turns_it_off() {
        let s = parse(&args(&[]), &[]).unwrap();
        assert_eq!(s.eventbus_max_message_size, 16 << 20);
        let s = parse(&args(&["--eventbus-max-message-size", "0"]), &[]).unwrap();
        assert_eq!(s.eventbus_max_message_size, 0);
        let err = parse(&args(&["--eventbus-max-message-size", "-1"]), &[]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
    }

    #[test]
    fn bad_values_are_usage_errors() {
        let err = parse(&args(&["-p", "http"]), &[]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        let err = parse(&args(&["--nope"]), &[]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
    }

    #[test]
    fn plugin_args_are_typed() {
        let specs = vec![
            PluginArgSpec {
                plugin: "p".into(),
                arg: PluginArg::float("update-interval").default(5.0),
            },
            PluginArgSpec {
                plugin: "p".into(),
                arg: PluginArg::flag("dry-run"),
            },
            PluginArgSpec {
                plugin: "p".into(),
                arg: PluginArg::int("count"),
            },
        ];
        let s = parse(&args(&["--update-interval", "2.5", "--dry-run"]), &specs).unwrap();
        assert_eq!(s.config["update_interval"], 2.5);
        assert_eq!(s.config["dry_run"], true);
        assert_eq!(s.config["count"], Value::Null);
        assert!(parse(&args(&["--update-interval", "fast"]), &specs).is_err());
        assert!(parse(&args(&["--update-interval", "NaN"]), &specs).is_err());
        assert!(parse(&args(&["--update-interval", "inf"]), &specs).is_err());
    }

    #[test]
    fn prescan_finds_plugins() {
        assert_eq!(
            prescan_plugins(&args(&["--plugins", "x"])),
            Some(PathBuf::from("x"))
        );
        assert_eq!(
            prescan_plugins(&args(&["--plugins=y"])),
            Some(PathBuf::from("y"))
        );
    }
}
