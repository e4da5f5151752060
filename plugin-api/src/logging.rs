//! Forwards the plugin's `tracing` events to the host.
//!
//! Statics are per cdylib, so the plugin has its own `tracing` dispatcher that the host's
//! subscriber never sees. This small subscriber is installed as that dispatcher: it asks the
//! host once per call site whether the level/target is enabled (so disabled events cost
//! nothing and never cross) and hands the formatted event over; the host adds the plugin's
//! name to each. Spans are not forwarded.

use std::fmt::{self, Write};

use tracing_core::{
    field::{Field, Visit},
    span, Event, Interest, Level, LevelFilter, Metadata, Subscriber,
};

use crate::abi::{level, FfiLogRecord, HostLoggerBox};

struct Forwarder {
    host: HostLoggerBox,
}

fn level_number(level: &Level) -> u8 {
    match *level {
        Level::TRACE => level::TRACE,
        Level::DEBUG => level::DEBUG,
        Level::INFO => level::INFO,
        Level::WARN => level::WARN,
        _ => level::ERROR,
    }
}

impl Subscriber for Forwarder {
    fn register_callsite(&self, metadata: &'static Metadata<'static>) -> Interest {
        if self.enabled(metadata) {
            Interest::always()
        } else {
            Interest::never()
        }
    }

    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.is_event()
            && self
                .host
                .enabled(level_number(metadata.level()), metadata.target().into())
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        Some(match self.host.max_level() {
            level::TRACE => LevelFilter::TRACE,
            level::DEBUG => LevelFilter::DEBUG,
            level::INFO => LevelFilter::INFO,
            level::WARN => LevelFilter::WARN,
            level::ERROR => LevelFilter::ERROR,
            _ => LevelFilter::OFF,
        })
    }

    fn new_span(&self, _: &span::Attributes<'_>) -> span::Id {
        span::Id::from_u64(1)
    }

    fn record(&self, _: &span::Id, _: &span::Record<'_>) {}

    fn record_follows_from(&self, _: &span::Id, _: &span::Id) {}

    fn event(&self, event: &Event<'_>) {
        let metadata = event.metadata();
        let mut visitor = MessageVisitor::default();
        event.record(&mut visitor);
        self.host.log(FfiLogRecord {
            level: level_number(metadata.level()),
            target: metadata.target().into(),
            message: visitor.finish().into(),
            module_path: metadata.module_path().unwrap_or_default().into(),
            file: metadata.file().unwrap_or_default().into(),
            line: metadata.line().unwrap_or_default(),
        });
    }

    fn enter(&self, _: &span::Id) {}

    fn exit(&self, _: &span::Id) {}
}

/// Renders `message` first, then the other fields as `key=value`.
#[derive(Default)]
struct MessageVisitor {
    text: String,
    fields: String,
}

impl Visit for MessageVisitor {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.text.push_str(value);
        } else {
            let _ = write!(self.fields, " {}={value:?}", field.name());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.text, "{value:?}");
        } else {
            let _ = write!(self.fields, " {}={value:?}", field.name());
        }
    }
}

impl MessageVisitor {
    fn finish(mut self) -> String {
        self.text.push_str(&self.fields);
        self.text
    }
}

/// Installs the forwarder and the one-line panic hook ([`panics`](crate::abi::panics)), which
/// logs through it the panics no guard reports.
pub(crate) fn init(host: HostLoggerBox) {
    let _ = tracing::subscriber::set_global_default(Forwarder { host });
    crate::abi::panics::install_hook();
}
