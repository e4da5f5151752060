//! One log format for the host, every plugin and every dependency, as brewblox-service
//! wrote it: `YYYY/MM/DD HH:MM:SS LEVEL    target(30 wide)  message key=value…`, one line
//! per record, on stderr and optionally in a daily-rotated file. No terminal escape codes,
//! and no control character from a message or value reaches the log as it is ([`escape`]),
//! so a machine can read the log line by line and nothing logged can forge a line.

mod escape;
mod format;

use std::{
    io,
    path::{Path, PathBuf},
};

use time::UtcOffset;
use tracing::Subscriber;
use tracing_subscriber::{
    fmt::MakeWriter, layer::SubscriberExt, registry::LookupSpan, util::SubscriberInitExt,
    EnvFilter, Layer,
};

pub use escape::{escape, Escaping};
pub use format::fit_target;
use format::BrewbloxFormat;

/// Dependencies muted to WARN unless `--debug` (the original muted aioamqp, asyncio and
/// aiohttp.access the same way).
const MUTED: &[&str] = &["lapin", "pinky_swear", "amq_protocol", "hyper", "h2", "mio"];

/// The target of access-log lines, written only with `--debug`.
pub const ACCESS_TARGET: &str = "brewblox_host::access";

/// Why logging could not be set up (the process then stops, saying so on stderr).
#[derive(Debug, thiserror::Error)]
pub enum LoggingError {
    #[error("invalid RUST_LOG: {0}")]
    RustLog(#[from] tracing_subscriber::filter::ParseError),
    #[error("--output {}: not a file name", .0.display())]
    NotAFileName(PathBuf),
    #[error("--output {}: {err}", .path.display())]
    Output {
        path: PathBuf,
        err: tracing_appender::rolling::InitError,
    },
    #[error("cannot install the logger: {0}")]
    Install(#[from] tracing_subscriber::util::TryInitError),
}

/// How the process logs.
pub struct LogSettings<'a> {
    pub debug: bool,
    pub output: Option<&'a Path>,
    /// `RUST_LOG`, whose directives override the defaults per target.
    pub rust_log: Option<String>,
}

/// Builds the filter: the base level, muted dependencies, then `RUST_LOG`.
pub fn filter(settings: &LogSettings<'_>) -> Result<EnvFilter, LoggingError> {
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
    Ok(EnvFilter::builder().parse(directives.join(","))?)
}

/// Installs the global subscriber. Call once, before threads are started, so that the local
/// UTC offset can be read safely.
pub fn init(settings: &LogSettings<'_>) -> Result<(), LoggingError> {
    let offset = UtcOffset::current_local_offset().unwrap_or(UtcOffset::UTC);
    let stderr = layer(offset, io::stderr);
    let file = match settings.output {
        Some(path) => Some(layer(offset, rolling_file(path)?)),
        None => None,
    };
    tracing_subscriber::registry()
        .with(stderr.and_then(file).with_filter(filter(settings)?))
        .try_init()?;
    // A panic of the host's own is a log line too, not std's lines on stderr.
    plugin_abi::panics::install_hook();
    Ok(())
}

/// One output in the brewblox format, the same for a terminal, a pipe and a file.
fn layer<S, W>(offset: UtcOffset, writer: W) -> impl Layer<S>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    tracing_subscriber::fmt::layer()
        .event_format(BrewbloxFormat { offset })
        .with_ansi(false)
        .with_writer(writer)
}

/// A file appender rotated daily, keeping 7 files: `PATH.YYYY-MM-DD`.
fn rolling_file(
    path: &Path,
) -> Result<tracing_appender::rolling::RollingFileAppender, LoggingError> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let prefix = path
        .file_name()
        .ok_or_else(|| LoggingError::NotAFileName(path.to_owned()))?;
    tracing_appender::rolling::Builder::new()
        .rotation(tracing_appender::rolling::Rotation::DAILY)
        .filename_prefix(prefix.to_string_lossy())
        .max_log_files(7)
        .build(dir)
        .map_err(|err| LoggingError::Output {
            path: path.to_owned(),
            err,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::sync::{Arc, Mutex};

    /// The lines a layer built as [`init`] builds it writes for what `emit` logs.
    fn logged(emit: impl FnOnce()) -> String {
        #[derive(Clone, Default)]
        struct Buffer(Arc<Mutex<Vec<u8>>>);
        impl io::Write for Buffer {
            fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(bytes);
                Ok(bytes.len())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let buffer = Buffer::default();
        let writer = buffer.clone();
        let subscriber =
            tracing_subscriber::registry().with(layer(UtcOffset::UTC, move || writer.clone()));
        tracing::subscriber::with_default(subscriber, emit);
        let bytes = buffer.0.lock().unwrap().clone();
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn dependency_fields_follow_the_message_without_escape_codes() {
        let log = logged(|| {
            tracing::warn!(
                target: "pinky_swear",
                promise = "P1",
                count = 3,
                "Failed resolving promise, promise has vanished."
            );
        });
        assert!(!log.contains('\u{1b}'), "{log:?}");
        assert!(
            log.ends_with(
                " WARNING  pinky_swear                     \
                 Failed resolving promise, promise has vanished. promise=\"P1\" count=3\n"
            ),
            "{log:?}"
        );
    }

    #[test]
    fn nothing_logged_can_split_or_forge_a_line() {
        let forged = "2026/01/01 00:00:00 ERROR    brewblox_host::service          forged";
        let log = logged(|| {
            tracing::info!(
                target: "plugin\nX",
                file = "lib\rx.so",
                "refused file a.so\n{forged}\u{1b}[2K"
            );
        });
        assert_eq!(log.lines().count(), 1, "{log:?}");
        assert!(!log.contains('\r') && !log.contains('\u{1b}'), "{log:?}");
        assert!(
            log.contains(&format!(
                " INFO     {:<30}  refused file a.so\\n{forged}\\u{{1b}}[2K file=\"lib\\rx.so\"",
                "plugin\\nX"
            )),
            "{log:?}"
        );
    }

    #[test]
    fn rust_log_is_validated() {
        let settings = LogSettings {
            debug: false,
            output: None,
            rust_log: Some("device_plugin=warn".into()),
        };
        assert!(filter(&settings).is_ok());
        let settings = LogSettings {
            rust_log: Some("a=b=c".into()),
            ..settings
        };
        let err = filter(&settings).expect_err("a bad directive");
        assert!(matches!(err, LoggingError::RustLog(_)), "{err:?}");
        assert!(err.to_string().starts_with("invalid RUST_LOG: "), "{err}");
    }
}
