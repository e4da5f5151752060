//! One log format for the host and every plugin, the original's (docs/brewblox-service-0.20.0.md):
//! `YYYY/MM/DD HH:MM:SS LEVEL    target(30 wide)  message`, on stderr and optionally in a
//! daily-rotated file.

use std::{fmt, io, path::Path};

use time::{format_description::FormatItem, macros::format_description, OffsetDateTime, UtcOffset};
use tracing::{Event, Level, Subscriber};
use tracing_log::NormalizeEvent;
use tracing_subscriber::{
    fmt::{format::Writer, FmtContext, FormatEvent, FormatFields},
    layer::SubscriberExt,
    registry::LookupSpan,
    util::SubscriberInitExt,
    EnvFilter, Layer,
};

/// Dependencies muted to WARN unless `--debug` (the original muted aioamqp, asyncio and
/// aiohttp.access the same way).
const MUTED: &[&str] = &["lapin", "pinky_swear", "amq_protocol", "hyper", "h2", "mio"];

/// The target of access-log lines, written only with `--debug`.
pub const ACCESS_TARGET: &str = "brewblox_host::access";

/// How the process logs.
pub struct LogSettings<'a> {
    pub debug: bool,
    pub output: Option<&'a Path>,
    /// `RUST_LOG`, whose directives override the defaults per target.
    pub rust_log: Option<String>,
}

/// Builds the filter: the base level, muted dependencies, then `RUST_LOG`.
pub fn filter(settings: &LogSettings<'_>) -> Result<EnvFilter, String> {
    let mut directives = vec![if settings.debug { "debug" } else { "info" }.to_owned()];
    if !settings.debug {
        directives.extend(MUTED.iter().map(|target| format!("{target}=warn")));
        // lapin logs every lost connection as an ERROR of its own; the bus reports the same
        // event once, with context.
        directives.push("lapin=off".to_owned());
        directives.push(format!("{ACCESS_TARGET}=warn"));
    }
    if let Some(extra) = settings
        .rust_log
        .as_deref()
        .filter(|s| !s.trim().is_empty())
    {
        directives.push(extra.to_owned());
    }
    EnvFilter::builder()
        .parse(directives.join(","))
        .map_err(|err| format!("invalid RUST_LOG: {err}"))
}

/// Installs the global subscriber. Call once, before threads are started, so that the local
/// UTC offset can be read safely.
pub fn init(settings: &LogSettings<'_>) -> Result<(), String> {
    let offset = UtcOffset::current_local_offset().unwrap_or(UtcOffset::UTC);
    let stderr = tracing_subscriber::fmt::layer()
        .event_format(BrewbloxFormat { offset })
        .with_writer(io::stderr);
    let file = match settings.output {
        Some(path) => Some(
            tracing_subscriber::fmt::layer()
                .event_format(BrewbloxFormat { offset })
                .with_ansi(false)
                .with_writer(rolling_file(path)?),
        ),
        None => None,
    };
    tracing_subscriber::registry()
        .with(stderr.and_then(file).with_filter(filter(settings)?))
        .try_init()
        .map_err(|err| format!("cannot install the logger: {err}"))
}

/// A file appender rotated daily, keeping 7 files: `PATH.YYYY-MM-DD`.
fn rolling_file(path: &Path) -> Result<tracing_appender::rolling::RollingFileAppender, String> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let prefix = path
        .file_name()
        .ok_or_else(|| format!("--output {}: not a file name", path.display()))?;
    tracing_appender::rolling::Builder::new()
        .rotation(tracing_appender::rolling::Rotation::DAILY)
        .filename_prefix(prefix.to_string_lossy())
        .max_log_files(7)
        .build(dir)
        .map_err(|err| format!("--output {}: {err}", path.display()))
}

const DATE_FORMAT: &[FormatItem<'static>] =
    format_description!("[year]/[month]/[day] [hour]:[minute]:[second]");

/// Python's `%(asctime)s %(levelname)-8s %(name)-30s  %(message)s`.
struct BrewbloxFormat {
    offset: UtcOffset,
}

/// Python's level names, so log scrapers of the original keep working.
fn level_name(level: &Level) -> &'static str {
    match *level {
        Level::TRACE => "TRACE",
        Level::DEBUG => "DEBUG",
        Level::INFO => "INFO",
        Level::WARN => "WARNING",
        _ => "ERROR",
    }
}

/// Targets longer than the column keep their tail, like `brewblox_logger` does.
pub fn fit_target(target: &str) -> std::borrow::Cow<'_, str> {
    let len = target.chars().count();
    if len <= 30 {
        target.into()
    } else {
        let tail: String = target.chars().skip(len - 27).collect();
        format!("...{tail}").into()
    }
}

impl<S, N> FormatEvent<S, N> for BrewbloxFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let normalized = event.normalized_metadata();
        let meta = normalized.as_ref().unwrap_or_else(|| event.metadata());
        let now = OffsetDateTime::now_utc().to_offset(self.offset);
        let stamp = now.format(DATE_FORMAT).map_err(|_| fmt::Error)?;
        write!(
            writer,
            "{stamp} {:<8} {:<30}  ",
            level_name(meta.level()),
            fit_target(meta.target())
        )?;
        ctx.format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_targets_keep_their_tail() {
        assert_eq!(fit_target("short"), "short");
        let long = "brewblox_service.couchdb_client";
        assert_eq!(fit_target(long), "...blox_service.couchdb_client");
        assert_eq!(fit_target(long).len(), 30);
    }

    #[test]
    fn rust_log_is_validated() {
        let settings = LogSettings {
            debug: false,
            output: None,
            rust_log: Some("device_plugin=warn".into()),
        };
        assert!(filter(&settings).is_ok());
    }
}
