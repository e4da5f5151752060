//! The line format: Python's `%(asctime)s %(levelname)-8s %(name)-30s  %(message)s`, then
//! the record's fields as ` key=value`, on one line, without terminal escape codes, for our
//! records and for every dependency's alike.

use std::fmt::{self, Write as _};

use time::{format_description::FormatItem, macros::format_description, OffsetDateTime, UtcOffset};
use tracing::{
    field::{Field, Visit},
    Event, Level, Subscriber,
};
use tracing_log::NormalizeEvent;
use tracing_subscriber::{
    fmt::{format::Writer, FmtContext, FormatEvent, FormatFields},
    registry::LookupSpan,
};

use super::escape::{escape, Escaping};

const DATE_FORMAT: &[FormatItem<'static>] =
    format_description!("[year]/[month]/[day] [hour]:[minute]:[second]");

/// The brewblox line format, with timestamps in `offset`.
pub(super) struct BrewbloxFormat {
    pub(super) offset: UtcOffset,
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
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let normalized = event.normalized_metadata();
        let meta = normalized.as_ref().unwrap_or_else(|| event.metadata());
        let now = OffsetDateTime::now_utc().to_offset(self.offset);
        let stamp = now.format(DATE_FORMAT).map_err(|_| fmt::Error)?;
        write!(writer, "{stamp} {:<8} ", level_name(meta.level()))?;
        // A plugin's target is its own choice: escaped like everything else it sends.
        let target = fit_target(meta.target());
        write!(writer, "{:<30}  ", escape(&target))?;
        let mut fields = Fields {
            out: Escaping(&mut writer),
            rest: String::new(),
            result: Ok(()),
        };
        event.record(&mut fields);
        fields.finish()?;
        writeln!(writer)
    }
}

/// Writes the message at once and gathers the other fields, which follow it.
struct Fields<W> {
    out: Escaping<W>,
    rest: String,
    result: fmt::Result,
}

impl<W: fmt::Write> Fields<W> {
    fn finish(mut self) -> fmt::Result {
        self.result?;
        self.out.write_str(&self.rest)
    }
}

impl<W: fmt::Write> Visit for Fields<W> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.result = self.result.and_then(|()| self.out.write_str(value));
        } else {
            self.record_debug(field, &value);
        }
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.record_debug(field, &format_args!("{value}"));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let name = field.name();
        let written = if name == "message" {
            write!(self.out, "{value:?}")
        } else if name.starts_with("log.") {
            // tracing-log's copies of the record's metadata, already in the line.
            Ok(())
        } else {
            // The fields go through the same escaping when the line is finished.
            write!(self.rest, " {name}={value:?}")
        };
        self.result = self.result.and(written);
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
}
