//! The command line: brewblox-service's arguments, the host's own, and every argument the
//! loaded plugins declare, in one clap parser.
//!
//! Each option can also come from the environment as `BREWBLOX_<OPTION>`, since these
//! services run in containers; the command line wins. `@file` arguments are expanded first
//! ([`argfiles`]). Every host option is one field of [`Settings`], where its default is
//! written once; help texts show it as the original's did (`[5000]`).

pub mod argfiles;
mod plugin_args;
mod values;

use std::{
    ffi::{OsStr, OsString},
    path::PathBuf,
    time::Duration,
};

use clap::{ArgAction, Args, Command, FromArgMatches};
use serde_json::{Map, Value};

use crate::bus::{BusConfig, DEFAULT_MAX_MESSAGE_SIZE};
use crate::mqtt::{MqttConfig, Protocol};

pub use plugin_args::{add_plugin_args, PluginArgError, PluginArgSpec};
pub use values::FLAG_VALUES;
use values::{
    parse_broker_address, parse_broker_port, parse_client_id, parse_mqtt_path, parse_name,
    parse_seconds, parse_topic,
};

/// The default service name, as `python -m brewblox_service` used.
pub use plugin_abi::config::DEFAULT_NAME;
use plugin_abi::config::{
    AmqpSettings, MqttSettings, PluginConfig, ServiceConfig, DEFAULT_AMQP_PORT,
    DEFAULT_BROKER_HOST, DEFAULT_HISTORY_TOPIC, DEFAULT_HTTP_HOST, DEFAULT_STATE_TOPIC,
};
/// The default plugins folder.
pub const DEFAULT_PLUGINS: &str = "./plugins";
/// The default port, the original's.
pub use plugin_abi::config::DEFAULT_HTTP_PORT as DEFAULT_PORT;
/// The default largest request body: 1 MiB.
pub const DEFAULT_MAX_BODY_SIZE: usize = 1 << 20;

/// Everything the host itself needs from the command line: one field per option, with its
/// flags, default and help text.
#[derive(Debug, Clone, Args)]
pub struct Settings {
    #[arg(
        short = 'H',
        long,
        default_value = DEFAULT_HTTP_HOST,
        help = "Host to which the app binds."
    )]
    pub host: String,
    #[arg(short, long, default_value_t = DEFAULT_PORT, help = "Port to which the app binds.")]
    pub port: u16,
    #[arg(short, long, help = "Logging output.")]
    pub output: Option<PathBuf>,
    #[arg(
        short,
        long,
        default_value = DEFAULT_NAME,
        value_parser = parse_name,
        help = format!(
            "Service name. This will be used as prefix for all endpoints and as routing key: {}.",
            crate::names::SERVICE_NAME_RULE
        )
    )]
    pub name: String,
    #[arg(
        long,
        help = "Enable debug logging: DEBUG level, dependency and access logs."
    )]
    pub debug: bool,
    #[arg(
        long,
        default_value = DEFAULT_BROKER_HOST,
        value_delimiter = ',',
        value_parser = parse_broker_address,
        help = "Hostname at which the eventbus can be reached; several host[:port] brokers, \
                comma-separated or repeated, are tried in turn"
    )]
    pub eventbus_host: Vec<String>,
    #[arg(
        long,
        default_value_t = DEFAULT_AMQP_PORT,
        value_parser = parse_broker_port,
        help = "Port at which the eventbus can be reached"
    )]
    pub eventbus_port: u16,
    #[arg(long, default_value = "guest", help = "Eventbus user name")]
    pub eventbus_user: String,
    #[arg(
        long,
        default_value = "guest",
        hide_env_values = true,
        help = "Eventbus password; prefer BREWBLOX_EVENTBUS_PASSWORD"
    )]
    pub eventbus_password: String,
    #[arg(long, default_value = "/", help = "Eventbus virtual host")]
    pub eventbus_vhost: String,
    #[arg(
        long,
        hide_env_values = true,
        value_delimiter = ',',
        help = "AMQP URL (amqp://user:pass@host:port/vhost); overrides the other eventbus \
                options. Several, comma-separated or repeated, are tried in turn (a ',' in a \
                password as %2C)"
    )]
    pub eventbus_url: Vec<String>,
    #[arg(
        long,
        default_value = "1",
        value_parser = parse_seconds,
        help = "Seconds between eventbus connection attempts"
    )]
    pub eventbus_reconnect_interval: Duration,
    #[arg(
        long,
        default_value_t = 10,
        help = "AMQP heartbeat in seconds; a silent broker is dropped after two"
    )]
    pub eventbus_heartbeat: u16,
    #[arg(
        long,
        default_value_t = 100,
        value_parser = clap::value_parser!(u16).range(1..),
        help = "Unacknowledged messages per subscription, bounding memory"
    )]
    pub eventbus_prefetch: u16,
    #[arg(
        long,
        default_value = "10",
        value_parser = parse_seconds,
        help = "Seconds a publish may take before it fails"
    )]
    pub eventbus_publish_timeout: Duration,
    #[arg(
        long,
        default_value_t = DEFAULT_MAX_MESSAGE_SIZE,
        help = "Largest message in bytes published or delivered to a plugin, 0 for none"
    )]
    pub eventbus_max_message_size: usize,
    #[arg(
        long,
        num_args = 0..=1,
        default_missing_value = crate::broker::DEFAULT_ADDRESS,
        value_parser = clap::value_parser!(std::net::SocketAddr),
        conflicts_with_all = ["mqtt_host", "mqtt_port", "mqtt_protocol", "mqtt_path"],
        help = "Run an MQTT broker inside the host on HOST:PORT (127.0.0.1:1883 without a value) and use it as the MQTT eventbus: for a first run with no broker installed"
    )]
    pub embedded_broker: Option<std::net::SocketAddr>,
    #[arg(
        long,
        default_value = "mqtt",
        value_parser = clap::builder::ValueParser::new(|t: &str| t.parse::<Protocol>()),
        help = "MQTT transport: mqtt, mqtts, ws or wss. Any --mqtt-* option selects the MQTT eventbus"
    )]
    pub mqtt_protocol: Protocol,
    #[arg(
        long,
        default_value = DEFAULT_BROKER_HOST,
        value_delimiter = ',',
        value_parser = parse_broker_address,
        help = "Hostname of the MQTT broker; several host[:port] brokers, comma-separated or \
                repeated, are tried in turn"
    )]
    pub mqtt_host: Vec<String>,
    #[arg(
        long,
        value_parser = parse_broker_port,
        help = "Port of the MQTT broker; by protocol 1883, 8883, 80 or 443"
    )]
    pub mqtt_port: Option<u16>,
    #[arg(
        long,
        default_value = "/eventbus",
        value_parser = parse_mqtt_path,
        help = "Path of the MQTT websocket, starting with '/' (ws and wss only)"
    )]
    pub mqtt_path: String,
    #[arg(long, value_parser = parse_client_id, help = "MQTT user name")]
    pub mqtt_user: Option<String>,
    #[arg(
        long,
        hide_env_values = true,
        value_parser = parse_client_id,
        help = "MQTT password; prefer BREWBLOX_MQTT_PASSWORD"
    )]
    pub mqtt_password: Option<String>,
    #[arg(
        long,
        default_value = "60",
        value_parser = parse_seconds,
        help = "MQTT keepalive in seconds; a silent broker is dropped within it"
    )]
    pub mqtt_keepalive: Duration,
    #[arg(
        long,
        value_parser = parse_client_id,
        help = "MQTT client id; by default a new random one at every start"
    )]
    pub mqtt_client_id: Option<String>,
    #[arg(
        long,
        help = "Check the MQTT broker's TLS certificate (BrewBlox's own is self-signed)"
    )]
    pub mqtt_tls_verify: bool,
    #[arg(
        long,
        default_value = DEFAULT_HISTORY_TOPIC,
        value_parser = parse_topic,
        help = "MQTT topic under which history events are published"
    )]
    pub history_topic: String,
    #[arg(
        long,
        default_value = DEFAULT_STATE_TOPIC,
        value_parser = parse_topic,
        help = "MQTT topic under which state events are published"
    )]
    pub state_topic: String,
    #[arg(
        long,
        default_value = DEFAULT_PLUGINS,
        help = "Folder of plugin libraries (*.so) to load"
    )]
    pub plugins: PathBuf,
    /// Read before the parser exists ([`prescan_plugin_cache`]): here for its help text, its
    /// variable and its place among the names a plugin argument must not take.
    #[arg(
        long,
        default_value_os_t = crate::plugins::copy_cache::default_dir(),
        help = "Folder where private copies of unchanged plugins are kept for the next start ($XDG_RUNTIME_DIR/brewblox-host, else brewblox-host-UID in the temporary folder), or `off`"
    )]
    pub plugin_cache: PathBuf,
    #[arg(
        long,
        default_value_t = DEFAULT_MAX_BODY_SIZE,
        help = "Largest accepted request body in bytes"
    )]
    pub max_body_size: usize,
    #[arg(
        long,
        default_value = "60",
        value_parser = parse_seconds,
        help = "Seconds to wait for in-flight requests at shutdown"
    )]
    pub shutdown_timeout: Duration,
    #[arg(
        long,
        default_value = "10",
        value_parser = parse_seconds,
        help = "Seconds a plugin's shutdown or handover hook (and its startup at a reload) may take before it is abandoned"
    )]
    pub hook_timeout: Duration,
    #[arg(
        long,
        help = "Reload by itself when the plugins folder changes, as SIGHUP does"
    )]
    pub watch: bool,
    #[arg(
        long,
        default_value = "30",
        value_parser = parse_seconds,
        help = "Seconds a client may take to send a request's headers before it is disconnected"
    )]
    pub http_header_timeout: Duration,
    #[arg(
        long,
        default_value = "60",
        value_parser = parse_seconds,
        help = "Seconds a keep-alive connection may wait for its next request before it is closed"
    )]
    pub http_idle_timeout: Duration,
    #[arg(
        long,
        default_value = "60",
        value_parser = parse_seconds,
        help = "Seconds a client may take to send a request's body, from its headers; then 408 and the connection is closed"
    )]
    pub http_body_timeout: Duration,
    #[arg(
        long,
        default_value = "30",
        value_parser = parse_seconds,
        help = "Seconds a client may pause between two parts of a request's body; then 408 and the connection is closed"
    )]
    pub http_body_idle_timeout: Duration,
    /// The configuration handed to plugins: the common settings typed, and the plugins'
    /// argument values.
    #[arg(skip)]
    pub config: PluginConfig,
    /// The eventbuses the options chose.
    #[arg(skip)]
    pub fleet: Fleet,
}

/// Which eventbuses a service uses, chosen by the options it was started with: `--mqtt-*`
/// options select MQTT; `--eventbus-*` options, or neither, select AMQP; both select both.
/// An option counts when it is given on the command line or in the environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Fleet {
    pub amqp: bool,
    pub mqtt: bool,
}

impl Fleet {
    fn from_matches(matches: &clap::ArgMatches) -> Fleet {
        let given = |prefix: &str| {
            matches.ids().any(|id| {
                id.as_str().starts_with(prefix)
                    && matches!(
                        matches.value_source(id.as_str()),
                        Some(clap::parser::ValueSource::CommandLine)
                            | Some(clap::parser::ValueSource::EnvVariable)
                    )
            })
        };
        let mqtt = given("mqtt_") || given("embedded_broker");
        Fleet {
            amqp: given("eventbus_") || !mqtt,
            mqtt,
        }
    }

    /// "AMQP", "MQTT" or "AMQP and MQTT", for logs.
    pub fn describe(&self) -> &'static str {
        match (self.amqp, self.mqtt) {
            (true, true) => "AMQP and MQTT",
            (false, true) => "MQTT",
            _ => "AMQP",
        }
    }
}

impl Settings {
    /// The eventbus settings, with the bus's own defaults for what the command line does not
    /// set.
    pub fn bus_config(&self) -> BusConfig {
        BusConfig {
            host: self.eventbus_host.join(","),
            port: self.eventbus_port,
            user: self.eventbus_user.clone(),
            password: self.eventbus_password.clone(),
            vhost: self.eventbus_vhost.clone(),
            url: (!self.eventbus_url.is_empty()).then(|| self.eventbus_url.join(",")),
            reconnect_interval: self.eventbus_reconnect_interval,
            heartbeat: self.eventbus_heartbeat,
            prefetch: self.eventbus_prefetch,
            connection_name: format!("brewblox-host:{}", self.name),
            publish_timeout: self.eventbus_publish_timeout,
            max_message_size: self.eventbus_max_message_size,
            ..BusConfig::default()
        }
    }

    /// The MQTT settings, with the client's own defaults for what the command line does not
    /// set.
    pub fn mqtt_config(&self) -> MqttConfig {
        MqttConfig {
            protocol: self.mqtt_protocol,
            host: self.mqtt_host.join(","),
            port: self.mqtt_port,
            path: self.mqtt_path.clone(),
            user: self.mqtt_user.clone(),
            password: self.mqtt_password.clone(),
            keepalive: self.mqtt_keepalive,
            client_id: self.mqtt_client_id.clone(),
            tls_verify: self.mqtt_tls_verify,
            service: self.name.clone(),
            ..MqttConfig::default()
        }
    }

    /// The configuration plugins get: the common settings, then the plugins' arguments.
    fn plugin_config(&self, args: Map<String, Value>) -> PluginConfig {
        let service = ServiceConfig {
            name: self.name.clone(),
            host: self.host.clone(),
            port: self.port,
            debug: self.debug,
            amqp: self.fleet.amqp.then(|| self.first_amqp_broker()),
            mqtt: self.fleet.mqtt.then(|| MqttSettings {
                history_topic: self.history_topic.clone(),
                state_topic: self.state_topic.clone(),
            }),
        };
        PluginConfig { service, args }
    }
}

/// Finds `--plugins` before the full parser exists (it decides which arguments exist).
pub fn prescan_plugins(args: &[OsString]) -> Option<PathBuf> {
    prescan(args, "plugins").map(PathBuf::from)
}

/// Finds `--plugin-cache` before the full parser exists (the plugins are loaded first): the
/// folder where private copies of plugins are kept for the next start, or `None` for `off`.
pub fn prescan_plugin_cache(args: &[OsString]) -> Option<PathBuf> {
    match prescan(args, "plugin-cache") {
        None => Some(crate::plugins::copy_cache::default_dir()),
        Some(value) if value == "off" => None,
        Some(value) => Some(PathBuf::from(value)),
    }
}

/// The value of the last `--<long> VALUE` or `--<long>=VALUE` before `--`, else of the
/// option's variable.
fn prescan(args: &[OsString], long: &str) -> Option<OsString> {
    let flag = format!("--{long}");
    let mut iter = args.iter().skip(1);
    let mut found = None;
    while let Some(arg) = iter.next() {
        let bytes = arg.as_encoded_bytes();
        if bytes == b"--" {
            break;
        }
        if bytes == flag.as_bytes() {
            found = iter.next().cloned();
        } else if let Some(value) = bytes
            .strip_prefix(flag.as_bytes())
            .and_then(|rest| rest.strip_prefix(b"="))
        {
            found = Some(<OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(value).to_owned());
        }
    }
    found.or_else(|| std::env::var_os(env_name(long)))
}

/// Whether `--debug` is on before parsing (for how much detail load errors show).
pub fn prescan_debug(args: &[OsString]) -> bool {
    args.iter().any(|a| a.as_os_str() == OsStr::new("--debug"))
        || std::env::var("BREWBLOX_DEBUG").is_ok_and(|v| values::parse_flag(&v) == Some(true))
}

/// Names a plugin argument must not take: every host option's id and long name (clap ids,
/// `--` names, config keys and `BREWBLOX_` variables would clash). Read from the host's
/// parser once per process: building it is ~0.5 M instructions, and every plugin's
/// arguments are checked against these names (at 50 plugins this was half the start-up).
pub fn builtin_names() -> &'static [String] {
    static NAMES: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    NAMES.get_or_init(|| {
        let mut names: Vec<String> = Vec::new();
        for arg in command(&[]).get_arguments() {
            names.push(arg.get_id().to_string());
            if let Some(long) = arg.get_long() {
                names.push(long.to_owned());
            }
        }
        names.sort();
        names.dedup();
        names
    })
}

/// The variable an option is read from when the command line does not give it.
fn env_name(id: &str) -> String {
    format!("BREWBLOX_{}", id.to_ascii_uppercase().replace('-', "_"))
}

/// The full parser: the host's options, then every plugin's.
pub fn command(plugin_args: &[PluginArgSpec]) -> Command {
    let cmd = Command::new("brewblox-host")
        .version(env!("CARGO_PKG_VERSION"))
        .disable_version_flag(true)
        .arg(
            clap::Arg::new("version")
                .long("version")
                .action(ArgAction::Version)
                .help("Print version"),
        );
    // The about text after `augment_args`, which sets `Settings`' doc comment as one.
    let mut cmd = Settings::augment_args(cmd)
        .about("Runs a BrewBlox service from plugin libraries")
        .after_help(format!(
            "Every option can also be set as BREWBLOX_<OPTION> (upper case, '-' as '_'); \
             flags take {FLAG_VALUES} there. @FILE reads arguments from FILE, one per line.\n\n\
             SIGHUP reloads the plugins folder without downtime. \
             `brewblox-host check --plugins DIR` checks a folder without running it.\n\n\
             Eventbus: --mqtt-* options select the MQTT eventbus; --eventbus-* options, or \
             neither, select the AMQP eventbus; both select both.{}",
            active_buses()
        ))
        .mut_args(host_option);
    for spec in plugin_args {
        cmd = cmd.arg(spec.to_arg());
    }
    cmd.hide_possible_values(true)
        .args_override_self(true)
        .mut_args(|arg| {
            // The help text carries the default already.
            if arg.get_action().takes_values() {
                arg.hide_default_value(true)
            } else {
                arg
            }
        })
}

/// "Active now: …" for `--help`, from the environment (the command line is not parsed yet).
fn active_buses() -> String {
    let set = |prefix: &str| {
        std::env::vars_os().any(|(key, _)| key.to_string_lossy().starts_with(prefix))
    };
    let fleet = Fleet {
        mqtt: set("BREWBLOX_MQTT_"),
        amqp: set("BREWBLOX_EVENTBUS_") || !set("BREWBLOX_MQTT_"),
    };
    format!(
        " With this environment and no such option on the command line: {}.",
        fleet.describe()
    )
}

/// Adds the environment variable and the original's `[default]` to a host option's help;
/// makes on/off options flags that read [`FLAG_VALUES`] from the environment.
fn host_option(arg: clap::Arg) -> clap::Arg {
    let Some(long) = arg.get_long().map(str::to_owned) else {
        return arg;
    };
    let is_flag = matches!(arg.get_action(), ArgAction::SetTrue);
    if !is_flag && !arg.get_action().takes_values() {
        return arg; // --version
    }
    let shown = match arg.get_default_values() {
        _ if is_flag => "False".to_owned(),
        [] => "None".to_owned(),
        values => values
            .iter()
            .map(|v| v.to_string_lossy())
            .collect::<Vec<_>>()
            .join(" "),
    };
    let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
    let arg = arg.help(format!("{help} [{shown}]")).env(env_name(&long));
    if is_flag {
        values::flag(arg)
    } else {
        arg.value_name(long)
    }
}

/// Parses `args` (program name first). clap errors carry exit code 2, help and version 0.
pub fn parse(args: &[OsString], plugin_args: &[PluginArgSpec]) -> Result<Settings, clap::Error> {
    let command = command(plugin_args);
    let matches = command
        .clone()
        .try_get_matches_from(args)
        .map_err(|err| name_the_variable(err, &command))?;
    let mut settings = Settings::from_arg_matches(&matches)?;
    settings.fleet = Fleet::from_matches(&matches);
    if let Some(address) = settings.embedded_broker {
        // The host's own client uses the embedded broker (on loopback if it listens on all).
        settings.mqtt_host = vec![match address.ip().is_unspecified() {
            true => "127.0.0.1".to_owned(),
            false => address.ip().to_string(),
        }];
        settings.mqtt_port = Some(address.port());
    }
    settings.config = settings.plugin_config(plugin_args::values(&matches, plugin_args));
    settings.check_eventbus()?;
    settings.check_mqtt_path(&matches)?;
    Ok(settings)
}

/// clap's "invalid UTF-8 was detected" names no argument; when it came from the environment,
/// the error names the variable (never its value).
fn name_the_variable(err: clap::Error, command: &Command) -> clap::Error {
    if err.kind() != clap::error::ErrorKind::InvalidUtf8 {
        return err;
    }
    let culprit = command
        .get_arguments()
        .filter_map(clap::Arg::get_env)
        .find(|var| std::env::var_os(var).is_some_and(|value| value.to_str().is_none()));
    match culprit {
        Some(var) => clap::Error::raw(
            clap::error::ErrorKind::InvalidUtf8,
            format!(
                "environment variable {} is not valid UTF-8\n",
                var.to_string_lossy()
            ),
        ),
        None => err,
    }
}

impl Settings {
    /// `--mqtt-path` only means something for a websocket: given with `mqtt` or `mqtts` it
    /// is a usage error rather than a setting silently ignored.
    fn check_mqtt_path(&self, matches: &clap::ArgMatches) -> Result<(), clap::Error> {
        let given = matches!(
            matches.value_source("mqtt_path"),
            Some(clap::parser::ValueSource::CommandLine | clap::parser::ValueSource::EnvVariable)
        );
        if given && !self.mqtt_protocol.is_websocket() {
            return Err(clap::Error::raw(
                clap::error::ErrorKind::ArgumentConflict,
                format!(
                    "--mqtt-path is the websocket path: it needs --mqtt-protocol ws or wss, not {}\n",
                    self.mqtt_protocol
                ),
            ));
        }
        Ok(())
    }

    /// The eventbus settings make a usable broker address: a malformed `--eventbus-url` is a
    /// usage error at start, not a reconnect loop. Not a `value_parser`: clap's message
    /// would quote the value, password included; this one never does.
    fn check_eventbus(&self) -> Result<(), clap::Error> {
        let invalid = |err: crate::bus::BusError| {
            clap::Error::raw(
                clap::error::ErrorKind::ValueValidation,
                format!("invalid eventbus settings: {err}\n"),
            )
        };
        for (n, url) in self.eventbus_url.iter().enumerate() {
            crate::bus::parse_eventbus_url(url).map_err(|err| {
                let text = match err {
                    crate::bus::BusError::InvalidConfig(text) => text,
                    other => other.to_string(),
                };
                invalid(crate::bus::BusError::InvalidConfig(format!(
                    "URL {}: {text}",
                    n + 1
                )))
            })?;
        }
        self.bus_config().validate().map_err(invalid)
    }

    /// What plugins are told of the AMQP broker: the first of `--eventbus-host` (the
    /// others are the host's business).
    fn first_amqp_broker(&self) -> AmqpSettings {
        let first = self.eventbus_host.first().map(String::as_str);
        match first.map(crate::broker_list::parse_address) {
            Some(Ok(address)) => AmqpSettings {
                port: address.port.unwrap_or(self.eventbus_port),
                host: address.host,
            },
            _ => AmqpSettings {
                host: first.unwrap_or(DEFAULT_BROKER_HOST).to_owned(),
                port: self.eventbus_port,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use plugin_abi::Arg as PluginArg;

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
            (s.eventbus_host.join(","), s.eventbus_port),
            ("eventbus".to_owned(), 5672)
        );
        // The record plugins get is the one plugin-abi describes with the same defaults.
        assert_eq!(s.config.service, ServiceConfig::default());
        assert!(s.config.args.is_empty());
    }

    #[test]
    fn the_options_choose_the_fleet() {
        let fleet = |list: &[&str]| parse(&args(list), &[]).unwrap().fleet;
        let amqp = Fleet {
            amqp: true,
            mqtt: false,
        };
        assert_eq!(fleet(&[]), amqp);
        assert_eq!(fleet(&["--eventbus-host", "h"]), amqp);
        assert_eq!(
            fleet(&["--mqtt-host", "h"]),
            Fleet {
                amqp: false,
                mqtt: true
            }
        );
        assert_eq!(
            fleet(&["--mqtt-port", "1", "--eventbus-port", "2"]),
            Fleet {
                amqp: true,
                mqtt: true
            }
        );
        // The topics are not connection options: they select nothing.
        assert_eq!(fleet(&["--state-topic", "x/state"]), amqp);
        // The embedded broker selects MQTT, and the host's client uses it.
        let s = parse(&args(&["--embedded-broker", "--name", "x"]), &[]).unwrap();
        assert_eq!((s.fleet.mqtt, s.fleet.amqp), (true, false));
        assert_eq!(s.mqtt_config().endpoint(), "mqtt://127.0.0.1:1883");
        let s = parse(&args(&["--embedded-broker", "0.0.0.0:1999"]), &[]).unwrap();
        assert_eq!(s.mqtt_config().endpoint(), "mqtt://127.0.0.1:1999");
        for wrong in [
            &["--embedded-broker", "nowhere"][..],
            &["--embedded-broker", "--mqtt-host", "h"],
        ] {
            assert!(parse(&args(wrong), &[]).is_err(), "{wrong:?}");
        }
        let s = parse(&args(&["--mqtt-protocol", "wss", "--mqtt-host", "h"]), &[]).unwrap();
        assert!(s.config.service.mqtt.is_some() && s.config.service.amqp.is_none());
        let cfg = s.mqtt_config();
        assert_eq!(cfg.endpoint(), "wss://h:443/eventbus");
        assert!(!cfg.tls_verify);
        assert_eq!(cfg.keepalive, Duration::from_secs(60));
    }

    #[test]
    fn broker_lists_are_comma_separated_or_repeated() {
        let s = parse(
            &args(&["--mqtt-host", "a:1884, b", "--mqtt-host", "[::1]:9"]),
            &[],
        )
        .unwrap();
        assert_eq!(
            s.mqtt_config().endpoints(),
            ["mqtt://a:1884", "mqtt://b:1883", "mqtt://[::1]:9"]
        );
        let s = parse(
            &args(&["--eventbus-host", "n1:5701,n2", "--eventbus-port", "5700"]),
            &[],
        )
        .unwrap();
        assert_eq!(
            s.bus_config().endpoints(),
            ["amqp://guest@n1:5701/%2f", "amqp://guest@n2:5700/%2f"]
        );
        let service = s.config.service.amqp.expect("amqp");
        assert_eq!((service.host.as_str(), service.port), ("n1", 5701));
        let s = parse(
            &args(&[
                "--eventbus-url",
                "amqp://u:s3cret@n1/,amqp://u:s3cret@n2:5702/",
                "--eventbus-url",
                "amqp://n3",
            ]),
            &[],
        )
        .unwrap();
        assert_eq!(
            s.bus_config().endpoints(),
            ["amqp://u:***@n1/", "amqp://u:***@n2:5702/", "amqp://n3"]
        );
        for bad in [
            &["--mqtt-host", "a,,b"][..],
            &["--mqtt-host", "a:0"],
            &["--mqtt-host", "a:65536"],
            &["--eventbus-host", "a,b c"],
            &["--eventbus-host", "a:x"],
        ] {
            let err = parse(&args(bad), &[]).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{bad:?}");
            assert!(err.to_string().contains("invalid broker address"), "{err}");
        }
        let err = parse(
            &args(&[
                "--eventbus-url",
                "amqp://u:s3cret@n1/,amqp://u:s3cret@n2:0/",
            ]),
            &[],
        )
        .unwrap_err();
        assert_eq!(err.exit_code(), 2);
        let text = err.to_string();
        assert!(text.contains("URL 2") && !text.contains("s3cret"), "{text}");
        // A raw ',' in a password splits the URL; neither half is printed.
        let err = parse(&args(&["--eventbus-url", "amqp://u:s3c,Ret@n1/%2f"]), &[]).unwrap_err();
        let text = err.to_string();
        assert!(!text.contains("s3c") && !text.contains("Ret"), "{text}");
    }

    #[test]
    fn bad_mqtt_values_are_usage_errors() {
        for bad in [
            &["--mqtt-protocol", "tcp"][..],
            &["--mqtt-host", "a b"],
            &["--mqtt-port", "70000"],
            &["--state-topic", "brewcast/#"],
            &["--history-topic", ""],
            &["--mqtt-client-id", "a\nb"],
            &["--mqtt-keepalive", "soon"],
            &["--mqtt-port", "0"],
            &["--eventbus-port", "0"],
            &["--mqtt-protocol", "ws", "--mqtt-path", "eventbus"],
            &["--mqtt-protocol", "ws", "--mqtt-path", "/a\u{1}"],
            &["--mqtt-path", "/eventbus"],
            &["--mqtt-protocol", "mqtts", "--mqtt-path", "/x"],
        ] {
            assert_eq!(
                parse(&args(bad), &[]).unwrap_err().exit_code(),
                2,
                "{bad:?}"
            );
        }
        let err = parse(&args(&["--mqtt-port", "0"]), &[]).unwrap_err();
        assert!(
            err.to_string().contains("port 0 reaches no broker"),
            "{err}"
        );
        let err = parse(&args(&["--mqtt-path", "/eventbus"]), &[]).unwrap_err();
        assert!(
            err.to_string().contains("needs --mqtt-protocol ws or wss"),
            "{err}"
        );
        let ok = parse(
            &args(&["--mqtt-protocol", "wss", "--mqtt-path", "/mq"]),
            &[],
        )
        .unwrap();
        assert_eq!(ok.mqtt_config().path, "/mq");
        assert!(parse(&args(&["--mqtt-port", "1"]), &[]).is_ok());
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
        for bad in ["", "/", "trail/", "new\nline", "a b", "é", "a/../b"] {
            let err = parse(&args(&["-n", bad]), &[]).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{bad:?}");
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
        assert_eq!(s.config.args["update_interval"], 2.5);
        assert_eq!(s.config.args["dry_run"], true);
        assert_eq!(s.config.args["count"], Value::Null);
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
        assert_eq!(
            prescan_plugins(&args(&[
                "--plugin-cache=z",
                "--plugins",
                "x",
                "--",
                "--plugins=y"
            ])),
            Some(PathBuf::from("x"))
        );
    }

    #[test]
    fn prescan_finds_the_plugin_cache_or_off() {
        assert_eq!(
            prescan_plugin_cache(&args(&["--plugin-cache", "c", "--plugins=p"])),
            Some(PathBuf::from("c"))
        );
        assert_eq!(prescan_plugin_cache(&args(&["--plugin-cache=off"])), None);
    }

    #[test]
    fn help_texts_show_the_defaults_and_the_environment() {
        let cmd = command(&[]);
        let help = |id: &str| {
            let arg = cmd.get_arguments().find(|a| a.get_id() == id).unwrap();
            let env = arg.get_env().map(|e| e.to_string_lossy().into_owned());
            (arg.get_help().unwrap().to_string(), env)
        };
        assert_eq!(
            help("port"),
            (
                format!("Port to which the app binds. [{DEFAULT_PORT}]"),
                Some("BREWBLOX_PORT".to_owned())
            )
        );
        assert!(help("debug").0.ends_with(" [False]"));
        assert!(help("output").0.ends_with(" [None]"));
        assert_eq!(
            help("eventbus_max_message_size").1.as_deref(),
            Some("BREWBLOX_EVENTBUS_MAX_MESSAGE_SIZE")
        );
        assert!(help("eventbus_max_message_size").0.ends_with(" [16777216]"));
    }

    #[test]
    fn builtin_names_hold_ids_and_long_names() {
        let names = builtin_names();
        for name in ["eventbus-host", "eventbus_host", "port", "version"] {
            assert!(names.iter().any(|n| n == name), "{name}: {names:?}");
        }
    }

    #[test]
    fn the_bus_config_takes_every_eventbus_option() {
        let s = parse(
            &args(&[
                "-n",
                "svc",
                "--eventbus-port",
                "5673",
                "--eventbus-prefetch",
                "7",
            ]),
            &[],
        )
        .unwrap();
        let bus = s.bus_config();
        assert_eq!((bus.port, bus.prefetch), (5673, 7));
        assert_eq!(bus.connection_name, "brewblox-host:svc");
        assert_eq!(bus.connect_timeout, BusConfig::default().connect_timeout);
    }

    #[test]
    fn watch_and_http_timeouts() {
        let s = parse(&args(&[]), &[]).unwrap();
        assert!(!s.watch);
        assert_eq!(s.http_header_timeout, Duration::from_secs(30));
        assert_eq!(s.http_idle_timeout, Duration::from_secs(60));
        assert_eq!(s.http_body_timeout, Duration::from_secs(60));
        assert_eq!(s.http_body_idle_timeout, Duration::from_secs(30));
        let s = parse(
            &args(&[
                "--watch",
                "--http-header-timeout",
                "2.5",
                "--http-idle-timeout",
                "5",
                "--http-body-timeout",
                "7",
                "--http-body-idle-timeout",
                "0.5",
            ]),
            &[],
        )
        .unwrap();
        assert!(s.watch);
        assert_eq!(s.http_header_timeout, Duration::from_millis(2500));
        assert_eq!(s.http_idle_timeout, Duration::from_secs(5));
        assert_eq!(s.http_body_timeout, Duration::from_secs(7));
        assert_eq!(s.http_body_idle_timeout, Duration::from_millis(500));
        for bad in [
            "--http-header-timeout=-1",
            "--http-idle-timeout=soon",
            "--http-body-timeout=-2",
        ] {
            assert_eq!(
                parse(&args(&[bad]), &[]).unwrap_err().exit_code(),
                2,
                "{bad}"
            );
        }
    }
}
