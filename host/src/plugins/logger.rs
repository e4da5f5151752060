//! Receives a plugin's log events and re-emits them through the host's subscriber.
//!
//! Records go through the `log` facade, which tracing-log bridges into tracing with the
//! plugin's own (dynamic) target. So a plugin's lines carry its module path, are filtered
//! by `RUST_LOG` like any other target, and share the host's format. Each message starts
//! with `plugin <name>: `, like the host's own lines about a plugin, so every line a plugin
//! writes names it.

use abi_stable::std_types::RStr;
use plugin_abi::{level, FfiLogRecord, HostLogger, HostLoggerBox, HostLogger_TO};
use tracing::level_filters::LevelFilter;

struct PluginLogger {
    plugin: String,
}

fn log_level(level: u8) -> log::Level {
    match level {
        level::TRACE => log::Level::Trace,
        level::DEBUG => log::Level::Debug,
        level::INFO => log::Level::Info,
        level::WARN => log::Level::Warn,
        _ => log::Level::Error,
    }
}

impl HostLogger for PluginLogger {
    fn enabled(&self, level: u8, target: RStr<'_>) -> bool {
        log::logger().enabled(
            &log::Metadata::builder()
                .level(log_level(level))
                .target(target.as_str())
                .build(),
        )
    }

    fn max_level(&self) -> u8 {
        match LevelFilter::current() {
            LevelFilter::TRACE => level::TRACE,
            LevelFilter::DEBUG => level::DEBUG,
            LevelFilter::INFO => level::INFO,
            LevelFilter::WARN => level::WARN,
            LevelFilter::ERROR => level::ERROR,
            _ => level::OFF,
        }
    }

    fn log(&self, record: FfiLogRecord) {
        // The SDK's panic hook logs under the fixed target "panic"; name the plugin instead.
        // The target alone does not always tell the plugin (the SDK's repeaters log as
        // `plugin_api::repeater`, a dependency under its own name): the message says it, in
        // the words of the host's own lines about a plugin.
        let panic_target;
        let target = if record.target.as_str() == "panic" {
            panic_target = format!("{}::panic", self.plugin.replace('-', "_"));
            panic_target.as_str()
        } else {
            record.target.as_str()
        };
        let file = (!record.file.is_empty()).then_some(record.file.as_str());
        let module = (!record.module_path.is_empty()).then_some(record.module_path.as_str());
        log::logger().log(
            &log::Record::builder()
                .args(format_args!("plugin {}: {}", self.plugin, record.message))
                .level(log_level(record.level))
                .target(target)
                .module_path(module)
                .file(file)
                .line(Some(record.line))
                .build(),
        );
    }
}

/// The logger handed to plugin `plugin`.
pub fn for_plugin(plugin: &str) -> HostLoggerBox {
    HostLogger_TO::from_value(
        PluginLogger {
            plugin: plugin.to_owned(),
        },
        abi_stable::sabi_trait::TD_Opaque,
    )
}
