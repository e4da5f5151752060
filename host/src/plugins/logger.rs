//! Receives a plugin's log events and re-emits them through the host's subscriber.
//!
//! Records go through the `log` facade, which tracing-log bridges into tracing with the
//! plugin's own (dynamic) target. So a plugin's lines carry its module path, are filtered
//! by `RUST_LOG` like any other target, and share the host's format. Each message starts
//! with `plugin <name>: `, like the host's own lines about a plugin, so every line a plugin
//! writes names it.
//!
//! The SDK's own lines (its repeaters' errors, under `plugin_api::repeater`) and its panic
//! hook's (`panic`) are put under the plugin's target (`device_plugin::plugin_api::repeater`,
//! `device_plugin::panic`), so that `RUST_LOG=device_plugin=debug` shows everything the
//! plugin logs, the SDK's lines on its behalf included.

use std::borrow::Cow;

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

impl PluginLogger {
    /// The target a plugin's record is logged under (see the module docs).
    fn target<'a>(&self, target: &'a str) -> Cow<'a, str> {
        let crate_name = || self.plugin.replace('-', "_");
        if target == "panic" {
            Cow::Owned(format!("{}::panic", crate_name()))
        } else if target == "plugin_api" || target.starts_with("plugin_api::") {
            Cow::Owned(format!("{}::{target}", crate_name()))
        } else {
            Cow::Borrowed(target)
        }
    }
}

impl HostLogger for PluginLogger {
    fn enabled(&self, level: u8, target: RStr<'_>) -> bool {
        log::logger().enabled(
            &log::Metadata::builder()
                .level(log_level(level))
                .target(&self.target(target.as_str()))
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
        let target = self.target(record.target.as_str());
        let file = (!record.file.is_empty()).then_some(record.file.as_str());
        let module = (!record.module_path.is_empty()).then_some(record.module_path.as_str());
        log::logger().log(
            &log::Record::builder()
                .args(format_args!("plugin {}: {}", self.plugin, record.message))
                .level(log_level(record.level))
                .target(&target)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sdks_lines_go_under_the_plugins_target() {
        let logger = PluginLogger {
            plugin: "device-plugin".into(),
        };
        assert_eq!(
            logger.target("plugin_api::repeater"),
            "device_plugin::plugin_api::repeater"
        );
        assert_eq!(logger.target("panic"), "device_plugin::panic");
        assert_eq!(
            logger.target("device_plugin::chamber"),
            "device_plugin::chamber"
        );
        assert_eq!(logger.target("plugin_apis"), "plugin_apis");
    }
}
