//! Broker address lists, for both eventbuses: parsing a `host[:port]` entry, the order the
//! brokers are tried in, and which one is in use (what health and metrics show).
//!
//! A connection tries the brokers in the order given, starting with the first. When a
//! connection attempt is refused, or a connection is lost, it moves to the next broker at
//! once; only when every broker of the list failed in a row (a full round) does the caller
//! pause, with its usual back-off. With one broker this is exactly the old behaviour:
//! the pause comes after every failure.
//!
//! The list holds only what may be shown: each transport keeps its own connect targets
//! (with credentials) by the same index, and gives [`Brokers`] the labels without them.

use std::sync::Mutex;

use crate::metrics::bus::BusMetrics;
use crate::sync::Unpoisoned;

/// The most brokers one list may name.
pub const MAX_BROKERS: usize = 16;
/// The longest host name (DNS's limit).
pub const MAX_HOST_BYTES: usize = 255;
/// The longest entry of an address list (a URL with credentials, or `host:port`).
pub const MAX_ENTRY_BYTES: usize = 2048;

/// One `host[:port]` entry of `--eventbus-host` or `--mqtt-host`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address {
    /// A name or an IP address (IPv6 without brackets).
    pub host: String,
    /// `None`: the port option's value (or the protocol's default).
    pub port: Option<u16>,
}

impl Address {
    /// `host:port`, with an IPv6 address in brackets.
    pub fn authority(&self, default_port: u16) -> String {
        let port = self.port.unwrap_or(default_port);
        if self.host.contains(':') {
            format!("[{}]:{port}", self.host)
        } else {
            format!("{}:{port}", self.host)
        }
    }
}

/// Why a broker list was refused. Counts are 1-based, as a person counts the entries; the
/// list's own entries are never quoted (one may hold a password).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ListError {
    #[error("{0} brokers in the list; at most {MAX_BROKERS}")]
    TooMany(usize),
    #[error("broker {0} of the list is empty")]
    Empty(usize),
    #[error("broker {0} of the list is longer than {MAX_ENTRY_BYTES} bytes")]
    TooLong(usize),
    /// A `host[:port]` entry that does not parse (never one of a URL list).
    #[error(transparent)]
    Address(#[from] AddressError),
}

/// A `host[:port]` entry that does not parse, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid broker address '{}': {problem}", .text.escape_debug())]
pub struct AddressError {
    /// The entry as given.
    pub text: String,
    pub problem: AddressProblem,
}

/// What is wrong with a `host[:port]` entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressProblem {
    #[error("'[' without ']'")]
    UnclosedBracket,
    #[error("expected ':port' after ']'")]
    AfterBracket,
    #[error(
        "the host must be 1 to 255 letters, digits, '-', '.', '_' (or an IPv6 address, \
         in [brackets] when a port follows)"
    )]
    Host,
    #[error(transparent)]
    Port(#[from] PortError),
}

/// A port that is not a number from 1 to 65535 (as given).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("port '{}' is not a number from 1 to 65535", .0.escape_debug())]
pub struct PortError(pub String);

/// The entries of a comma-separated list (spaces around an entry are ignored). Errors: an
/// empty entry, more than [`MAX_BROKERS`] entries, an entry over [`MAX_ENTRY_BYTES`]. The
/// error never quotes an entry (it may hold a password).
pub fn split_list(text: &str) -> Result<Vec<&str>, ListError> {
    let entries: Vec<&str> = text.split(',').map(str::trim).collect();
    if entries.len() > MAX_BROKERS {
        return Err(ListError::TooMany(entries.len()));
    }
    for (n, entry) in entries.iter().enumerate() {
        if entry.is_empty() {
            return Err(ListError::Empty(n + 1));
        }
        if entry.len() > MAX_ENTRY_BYTES {
            return Err(ListError::TooLong(n + 1));
        }
    }
    Ok(entries)
}

/// Parses one `host[:port]` entry: `name`, `name:1883`, `10.0.0.1:1883`, `::1` or
/// `[::1]:1883`. The host is 1 to 255 letters, digits, `-`, `.` and `_` (and `:` in a bare
/// or bracketed IPv6 address); the port 1 to 65535.
pub fn parse_address(text: &str) -> Result<Address, AddressError> {
    let invalid = |problem: AddressProblem| AddressError {
        text: text.to_owned(),
        problem,
    };
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or_else(|| invalid(AddressProblem::UnclosedBracket))?;
        match after {
            "" => (host, None),
            _ => match after.strip_prefix(':') {
                Some(port) => (host, Some(port)),
                None => return Err(invalid(AddressProblem::AfterBracket)),
            },
        }
    } else if text.matches(':').count() == 1 {
        let (host, port) = text.split_once(':').unwrap_or((text, ""));
        (host, Some(port))
    } else {
        (text, None)
    };
    let host_ok = (1..=MAX_HOST_BYTES).contains(&host.len())
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._:".contains(&b));
    if !host_ok {
        return Err(invalid(AddressProblem::Host));
    }
    let port = match port {
        None => None,
        Some(port) => Some(parse_port(port).map_err(|err| invalid(err.into()))?),
    };
    Ok(Address {
        host: host.to_owned(),
        port,
    })
}

/// A port: 1 to 65535, digits only.
pub fn parse_port(text: &str) -> Result<u16, PortError> {
    match text.parse::<u16>() {
        Ok(port) if port > 0 && text.bytes().all(|b| b.is_ascii_digit()) => Ok(port),
        _ => Err(PortError(text.to_owned())),
    }
}

/// A comma-separated list of `host[:port]` entries (see [`parse_address`]).
pub fn parse_addresses(text: &str) -> Result<Vec<Address>, ListError> {
    split_list(text)?
        .into_iter()
        .map(|entry| parse_address(entry).map_err(ListError::from))
        .collect()
}

/// Where a connection is in its list.
#[derive(Debug, Default)]
struct Cursor {
    /// The broker tried next (or in use).
    next: usize,
    /// Brokers that failed in a row since the last connection or full round.
    failed_in_round: usize,
    /// Whether the broker at `next` is connected.
    in_use: bool,
}

/// One connection's broker list: the labels, the cursor, and the broker in use.
#[derive(Debug)]
pub struct Brokers {
    bus: &'static str,
    /// The metrics to record into and their `connection` label; `None` for a connection
    /// without metrics (a will's).
    recorded: Option<(BusMetrics, String)>,
    labels: Vec<String>,
    cursor: Mutex<Cursor>,
}

impl Brokers {
    /// A list of `labels` (what health and metrics show: never a password); an empty list
    /// counts as one unnamed broker, so the cursor always points somewhere.
    pub fn new(
        bus: &'static str,
        recorded: Option<(&BusMetrics, &str)>,
        mut labels: Vec<String>,
    ) -> Self {
        if labels.is_empty() {
            labels.push("<none>".to_owned());
        }
        Brokers {
            bus,
            recorded: recorded
                .map(|(metrics, connection)| (metrics.clone(), connection.to_owned())),
            labels,
            cursor: Mutex::new(Cursor::default()),
        }
    }

    /// Every broker of the list, in order.
    pub fn labels(&self) -> &[String] {
        &self.labels
    }

    /// The index of the broker to try now (or the one in use).
    pub fn current(&self) -> usize {
        self.cursor.locked().next
    }

    /// The label of the broker to try now (or the one in use).
    pub fn current_label(&self) -> &str {
        &self.labels[self.current()]
    }

    /// The broker in use, while connected.
    pub fn in_use(&self) -> Option<String> {
        let cursor = self.cursor.locked();
        cursor.in_use.then(|| self.labels[cursor.next].clone())
    }

    /// The current broker answered: it is in use, and a new round starts.
    pub fn connected(&self) {
        let next = {
            let mut cursor = self.cursor.locked();
            cursor.in_use = true;
            cursor.failed_in_round = 0;
            cursor.next
        };
        self.record(next, true);
    }

    /// The current broker refused, or its connection was lost: move to the next one.
    /// Returns true when every broker of the list failed in a row (a full round): the
    /// caller then pauses before the next attempt.
    pub fn failed(&self) -> bool {
        let (was_in_use, index, round_done) = {
            let mut cursor = self.cursor.locked();
            let was_in_use = std::mem::take(&mut cursor.in_use);
            let index = cursor.next;
            cursor.next = (cursor.next + 1) % self.labels.len();
            cursor.failed_in_round += 1;
            let round_done = cursor.failed_in_round >= self.labels.len();
            if round_done {
                cursor.failed_in_round = 0;
            }
            (was_in_use, index, round_done)
        };
        if was_in_use {
            self.record(index, false);
        }
        round_done
    }

    fn record(&self, index: usize, in_use: bool) {
        if let Some((metrics, connection)) = &self.recorded {
            metrics.broker(self.bus, connection, &self.labels[index], in_use);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(n: usize) -> Brokers {
        Brokers::new("test", None, (0..n).map(|i| format!("b{i}")).collect())
    }

    #[test]
    fn addresses_parse_with_and_without_port() {
        let a = |host: &str, port: Option<u16>| Address {
            host: host.into(),
            port,
        };
        assert_eq!(parse_address("broker"), Ok(a("broker", None)));
        assert_eq!(parse_address("broker:1884"), Ok(a("broker", Some(1884))));
        assert_eq!(parse_address("10.0.0.1:1"), Ok(a("10.0.0.1", Some(1))));
        assert_eq!(parse_address("::1"), Ok(a("::1", None)));
        assert_eq!(parse_address("[::1]:5672"), Ok(a("::1", Some(5672))));
        assert_eq!(parse_address("[::1]"), Ok(a("::1", None)));
        assert_eq!(a("::1", Some(1)).authority(2), "[::1]:1");
        assert_eq!(a("h", None).authority(2), "h:2");
        assert_eq!(
            parse_addresses("a, b:2 ,c"),
            Ok(vec![a("a", None), a("b", Some(2)), a("c", None)])
        );
    }

    #[test]
    fn bad_addresses_are_refused_with_a_reason() {
        for (text, why) in [
            ("broker:0", "1 to 65535"),
            ("broker:65536", "1 to 65535"),
            ("broker:+1", "1 to 65535"),
            ("broker:", "1 to 65535"),
            (":1883", "the host must be"),
            ("a b", "the host must be"),
            ("bröker", "the host must be"),
            ("[::1", "without ']'"),
            ("[::1]x", "':port'"),
        ] {
            let err = parse_address(text).expect_err(text).to_string();
            assert!(err.contains(why), "{text}: {err}");
        }
        assert!(parse_address(&"h".repeat(256)).is_err());
        assert!(parse_address(&"h".repeat(255)).is_ok());
        let err = parse_addresses("a,,b").expect_err("empty entry");
        assert_eq!(err.to_string(), "broker 2 of the list is empty");
        let many = vec!["h"; MAX_BROKERS + 1].join(",");
        assert_eq!(
            parse_addresses(&many).expect_err("too many").to_string(),
            format!(
                "{} brokers in the list; at most {MAX_BROKERS}",
                MAX_BROKERS + 1
            )
        );
        assert_eq!(
            parse_address("b:x").expect_err("port").to_string(),
            "invalid broker address 'b:x': port 'x' is not a number from 1 to 65535"
        );
        assert_eq!(
            split_list(&"h".repeat(MAX_ENTRY_BYTES + 1)),
            Err(ListError::TooLong(1))
        );
        assert!(parse_addresses(&vec!["h"; MAX_BROKERS].join(",")).is_ok());
    }

    #[test]
    fn one_broker_pauses_after_every_failure() {
        let b = list(1);
        assert_eq!(b.current(), 0);
        assert!(b.failed());
        assert!(b.failed());
        b.connected();
        assert_eq!(b.in_use().as_deref(), Some("b0"));
        assert!(b.failed(), "a loss ends the round of a one-broker list");
        assert_eq!(b.in_use(), None);
    }

    #[test]
    fn a_list_is_tried_round_robin_and_pauses_after_a_full_round() {
        let b = list(3);
        assert_eq!(b.current_label(), "b0");
        assert!(!b.failed());
        assert_eq!(b.current_label(), "b1");
        assert!(!b.failed());
        assert_eq!(b.current_label(), "b2");
        assert!(b.failed(), "all three refused");
        assert_eq!(b.current_label(), "b0");
        assert!(!b.failed());
        b.connected();
        assert_eq!(b.in_use().as_deref(), Some("b1"));
        // The broker in use is lost: the next one is tried at once, then the rest.
        assert!(!b.failed());
        assert_eq!(b.current_label(), "b2");
        assert_eq!(b.in_use(), None);
        assert!(!b.failed());
        assert_eq!(b.current_label(), "b0");
        assert!(b.failed(), "b1, b2 and b0 failed in a row");
        assert_eq!(b.current_label(), "b1");
    }

    #[test]
    fn the_broker_in_use_is_recorded_in_the_registry_given_only() {
        let (ours, other) = (
            crate::metrics::Metrics::new(),
            crate::metrics::Metrics::new(),
        );
        let b = Brokers::new("test", Some((&ours.bus, "conn")), vec!["b0".into()]);
        b.connected();
        let series = "eventbus_broker_info{bus=\"test\",connection=\"conn\",broker=\"b0\"} 1";
        let scrape = ours.encode(crate::metrics::Format::Prometheus);
        assert!(scrape.contains(series), "{scrape}");
        let scrape = other.encode(crate::metrics::Format::Prometheus);
        assert!(!scrape.contains("connection=\"conn\""), "{scrape}");
    }

    #[test]
    fn an_empty_list_still_has_a_current_broker() {
        let b = Brokers::new("test", None, Vec::new());
        assert_eq!(b.labels().len(), 1);
        assert!(b.failed());
        assert_eq!(b.current(), 0);
    }
}
