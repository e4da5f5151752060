//! Plain data that crosses the boundary.

use abi_stable::{
    std_types::{ROption, RString, RVec},
    StableAbi,
};

/// A byte range `start..end` of a request's or response's `text` buffer.
///
/// Requests and responses carry all their short strings (method, path, query, parameter and
/// header names and values) back to back in one buffer, indexed by spans: one allocation
/// for all of them instead of two per header, which is most of what a plugin route costs
/// over a native one.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FfiSpan {
    pub start: u32,
    pub end: u32,
}

impl FfiSpan {
    /// The bytes of `text` this span covers (empty if it lies outside).
    pub fn get(self, text: &[u8]) -> &[u8] {
        text.get(self.start as usize..self.end as usize)
            .unwrap_or_default()
    }

    /// As [`get`](FfiSpan::get), as text; empty if not UTF-8.
    pub fn str(self, text: &[u8]) -> &str {
        std::str::from_utf8(self.get(text)).unwrap_or_default()
    }

    /// Appends `bytes` to `text` and returns their span. Buffers are built as a `Vec` (a
    /// `memcpy` per string; `RVec` copies byte by byte) and handed over as an `RVec`
    /// (`RVec::from(Vec)` moves the buffer, no copy).
    ///
    /// ```
    /// use plugin_abi::FfiSpan;
    /// let mut text = Vec::new();
    /// let a = FfiSpan::push(&mut text, b"GET");
    /// let b = FfiSpan::push(&mut text, b"/x");
    /// assert_eq!((a.str(&text), b.str(&text)), ("GET", "/x"));
    /// ```
    pub fn push(text: &mut Vec<u8>, bytes: &[u8]) -> FfiSpan {
        let start = u32::try_from(text.len()).unwrap_or(u32::MAX);
        text.extend_from_slice(bytes);
        let end = u32::try_from(text.len()).unwrap_or(u32::MAX);
        FfiSpan { start, end }
    }
}

/// A (name, value) pair: two spans of the same `text` buffer.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FfiPair {
    pub name: FfiSpan,
    pub value: FfiSpan,
}

/// An HTTP request handed to a plugin route.
#[repr(C)]
#[derive(StableAbi, Debug)]
pub struct FfiRequest {
    /// Every string below, back to back. All are UTF-8 except header values.
    pub text: RVec<u8>,
    /// Upper-case method, e.g. `GET`.
    pub method: FfiSpan,
    /// The full request path, service prefix included.
    pub path: FfiSpan,
    /// The raw query string, without `?`.
    pub query: FfiSpan,
    /// The path parameters captured by `{name}` segments, in route order, then the headers
    /// as (lower-case name, raw value), in the order received: one array for both, so a
    /// request with parameters costs no allocation more than one without.
    pub pairs: RVec<FfiPair>,
    /// How many of `pairs` are path parameters.
    pub params: u32,
    pub body: RVec<u8>,
}

impl FfiRequest {
    /// The path parameters: the first [`params`](FfiRequest::params) of `pairs`.
    pub fn params(&self) -> &[FfiPair] {
        self.split().0
    }

    /// The headers: the rest of `pairs`.
    ///
    /// ```
    /// use plugin_abi::{FfiPair, FfiRequest, FfiSpan};
    /// let mut text = Vec::new();
    /// let mut pair = |n: &str, v: &str| FfiPair {
    ///     name: FfiSpan::push(&mut text, n.as_bytes()),
    ///     value: FfiSpan::push(&mut text, v.as_bytes()),
    /// };
    /// let pairs = vec![pair("id", "7"), pair("host", "x"), pair("accept", "*/*")];
    /// let request = FfiRequest {
    ///     text: text.into(),
    ///     method: FfiSpan::default(),
    ///     path: FfiSpan::default(),
    ///     query: FfiSpan::default(),
    ///     pairs: pairs.into(),
    ///     params: 1,
    ///     body: Vec::new().into(),
    /// };
    /// assert_eq!((request.params().len(), request.headers().len()), (1, 2));
    /// assert_eq!(request.headers()[0].value.str(&request.text), "x");
    /// ```
    pub fn headers(&self) -> &[FfiPair] {
        self.split().1
    }

    /// `pairs` split after the parameters (a count past the end, from a careless sender,
    /// makes every pair a parameter).
    fn split(&self) -> (&[FfiPair], &[FfiPair]) {
        self.pairs
            .split_at((self.params as usize).min(self.pairs.len()))
    }
}

/// A complete HTTP response from a plugin route.
#[repr(C)]
#[derive(StableAbi, Debug)]
pub struct FfiResponse {
    pub status: u16,
    /// The response's content type when it is one of the SDK's own ([`content_type`]),
    /// sent before `headers`: the common response then crosses without a header to copy,
    /// and the host needs no header parsing for it. [`content_type::NONE`]: only `headers`.
    pub content_type: u8,
    /// Header names and values, back to back.
    pub text: RVec<u8>,
    pub headers: RVec<FfiPair>,
    pub body: RVec<u8>,
}

/// The codes of [`FfiResponse::content_type`]: the content types the SDK's responses name
/// without a header.
pub mod content_type {
    /// No content type of its own: whatever `headers` carry.
    pub const NONE: u8 = 0;
    /// `application/json`.
    pub const JSON: u8 = 1;
    /// `text/plain; charset=utf-8`.
    pub const TEXT: u8 = 2;

    /// The header value a code stands for: `Ok(None)` for [`NONE`], `Err` for a code this
    /// version does not know (the host answers such a response 500).
    ///
    /// ```
    /// use plugin_abi::content_type;
    /// assert_eq!(content_type::value(content_type::JSON), Ok(Some("application/json")));
    /// assert_eq!(content_type::value(content_type::NONE), Ok(None));
    /// assert!(content_type::value(9).is_err());
    /// ```
    pub const fn value(code: u8) -> Result<Option<&'static str>, u8> {
        match code {
            NONE => Ok(None),
            JSON => Ok(Some("application/json")),
            TEXT => Ok(Some("text/plain; charset=utf-8")),
            other => Err(other),
        }
    }
}

/// An error crossing the boundary: a machine-readable code and a one-line message.
#[repr(C)]
#[derive(StableAbi, Debug, Clone)]
pub struct FfiError {
    pub code: u32,
    pub message: RString,
}

/// Error codes of [`FfiError`].
pub mod error_code {
    /// Anything else; the message says what.
    pub const OTHER: u32 = 0;
    /// A resource (the eventbus) cannot be reached now; retrying later may work.
    pub const UNAVAILABLE: u32 = 1;
    /// The request was refused as invalid (bad route path, bad exchange type, …).
    pub const INVALID: u32 = 2;
    /// Something with that name exists already.
    pub const CONFLICT: u32 = 3;
    /// Nothing with that name exists.
    pub const NOT_FOUND: u32 = 4;
    /// The peer (broker) refused the operation.
    pub const REJECTED: u32 = 5;
    /// The operation did not finish in time.
    pub const TIMEOUT: u32 = 6;
    /// Not allowed in the current lifecycle phase.
    pub const WRONG_PHASE: u32 = 7;
}

impl FfiError {
    pub fn new(code: u32, message: impl Into<String>) -> Self {
        FfiError {
            code,
            message: RString::from(message.into()),
        }
    }
}

/// Why a plugin's handler (route, message or feature) did not succeed, in a type: the host
/// counts and logs by [`kind`](FfiFailure::kind), never by the message's wording.
#[repr(C)]
#[derive(StableAbi, Debug, Clone)]
pub struct FfiFailure {
    /// One of [`failure`].
    pub kind: u8,
    /// What went wrong; its code is the SDK error's kind (a panic's is
    /// [`error_code::OTHER`]).
    pub error: FfiError,
}

/// The kinds of [`FfiFailure`].
pub mod failure {
    /// The handler ran and returned an error.
    pub const FAILED: u8 = 0;
    /// The handler panicked; the SDK caught it.
    pub const PANICKED: u8 = 1;
    /// The input was refused before the handler ran: an extractor could not read it (a
    /// message that is not JSON, or not of the handler's type).
    pub const REFUSED: u8 = 2;
}

impl FfiFailure {
    pub fn new(kind: u8, error: FfiError) -> Self {
        FfiFailure { kind, error }
    }

    /// A panic the SDK caught, described by `report` (`panicked: …`).
    pub fn panicked(report: impl Into<String>) -> Self {
        FfiFailure::new(failure::PANICKED, FfiError::new(error_code::OTHER, report))
    }

    /// Whether the handler panicked.
    pub fn is_panic(&self) -> bool {
        self.kind == failure::PANICKED
    }

    /// Whether the input was refused before the handler ran.
    pub fn is_refusal(&self) -> bool {
        self.kind == failure::REFUSED
    }
}

/// A log event forwarded from a plugin to the host's subscriber.
#[repr(C)]
#[derive(StableAbi, Debug)]
pub struct FfiLogRecord {
    /// 0 = TRACE … 4 = ERROR.
    pub level: u8,
    pub target: RString,
    pub message: RString,
    pub module_path: RString,
    pub file: RString,
    pub line: u32,
}

/// What a plugin is, read before any of the author's code runs.
#[repr(C)]
#[derive(StableAbi, Debug, Clone)]
pub struct PluginInfo {
    /// Unique within a host; routes, logs and errors name the plugin by it.
    pub name: RString,
    /// The plugin crate's own version.
    pub version: RString,
    /// The `plugin-api` version the plugin was built against.
    pub api_version: RString,
    /// `cfg!(panic = "unwind")` in the plugin build: an aborting plugin cannot be isolated.
    pub panic_unwind: bool,
}

/// Options of a publish.
#[repr(C)]
#[derive(StableAbi, Debug)]
pub struct FfiPublish {
    pub exchange: RString,
    pub routing: RString,
    pub body: RVec<u8>,
    /// `topic`, `fanout` or `direct`.
    pub exchange_type: RString,
    /// Declare the exchange first (false for pre-declared ones such as `amq.topic`).
    pub declare_exchange: bool,
}

/// What to subscribe to.
#[repr(C)]
#[derive(StableAbi, Debug)]
pub struct FfiSubscribe {
    pub exchange: RString,
    pub routing: RString,
    /// `topic`, `fanout` or `direct`.
    pub exchange_type: RString,
    /// Shared with a group, kept while the service is away: see [`crate::sharing`]. The
    /// default is a plain subscription (the service's own transient queue).
    pub sharing: FfiSharing,
}

/// An MQTT subscription to make.
#[repr(C)]
#[derive(StableAbi, Debug)]
pub struct FfiMqttSubscribe {
    pub filter: RString,
    /// 0 or 1.
    pub qos: u8,
    /// As for AMQP; only `group` and `durable` apply (see [`crate::sharing`]).
    pub sharing: FfiSharing,
}

/// How a subscription is shared and kept, as a plugin asks for it. The rules (what goes
/// with what, the names on the wire) are [`crate::sharing`]'s, applied by every host.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, Default, PartialEq, Eq)]
pub struct FfiSharing {
    /// The group whose instances split the messages; empty: none.
    pub group: RString,
    /// Keep what is published while the service is away (without a group: the service's
    /// name is the group).
    pub durable: bool,
    /// AMQP: a classic queue rather than a quorum queue.
    pub classic: bool,
    /// AMQP: messages a consumer holds unacknowledged at most; 0: the host's prefetch.
    pub prefetch: u16,
    /// AMQP quorum queues: deliveries after which a message goes to the dead-letter
    /// exchange (or is dropped); 0: no limit.
    pub delivery_limit: u32,
    /// AMQP: where the broker sends a message over the delivery limit; empty: none.
    pub dead_letter_exchange: RString,
}

/// A message delivered to a plugin's handler.
#[repr(C)]
#[derive(StableAbi, Debug)]
pub struct FfiMessage {
    /// The AMQP routing key or the MQTT topic.
    pub routing_key: RString,
    pub body: RVec<u8>,
    /// The broker delivered it before (to this consumer or another) without an
    /// acknowledgement: AMQP's `redelivered`, MQTT's `dup`.
    pub redelivered: bool,
    /// How many times the broker delivered it before, where it counts (the
    /// `x-delivery-count` header of a quorum queue's redelivery).
    pub delivery_count: ROption<u32>,
}

/// Level numbers used by [`FfiLogRecord::level`] and the host logger.
pub mod level {
    pub const TRACE: u8 = 0;
    pub const DEBUG: u8 = 1;
    pub const INFO: u8 = 2;
    pub const WARN: u8 = 3;
    pub const ERROR: u8 = 4;
    /// Returned by `max_level` when everything is off.
    pub const OFF: u8 = 5;
}

/// Kinds of [`FfiMetric`].
pub mod metric_kind {
    pub const COUNTER: u8 = 0;
    pub const GAUGE: u8 = 1;
    pub const HISTOGRAM: u8 = 2;
}

/// One series of a metric a plugin registers with the host (`HostContext::metric`). The
/// host prefixes `name` with the plugin's (`plugin_<plugin>_<name>`) and checks every name
/// and label.
#[repr(C)]
#[derive(StableAbi, Debug, Clone)]
pub struct FfiMetric {
    /// One of [`metric_kind`].
    pub kind: u8,
    pub name: RString,
    pub help: RString,
    /// This series' labels: names and values, pairwise.
    pub label_names: RVec<RString>,
    pub label_values: RVec<RString>,
    /// A histogram's bucket bounds, ascending; empty: the host's default.
    pub buckets: RVec<f64>,
}

/// An MQTT message to publish (or the will to set).
#[repr(C)]
#[derive(StableAbi, Debug)]
pub struct FfiMqttPublish {
    pub topic: RString,
    pub payload: RVec<u8>,
    /// 0 or 1.
    pub qos: u8,
    pub retain: bool,
}

/// The state one generation of a plugin hands to the next at a hot swap: the plugin's own
/// serialisation of it and the version of that format (the plugin's to choose and check).
#[repr(C)]
#[derive(StableAbi, Debug, Clone)]
pub struct FfiHandover {
    pub version: u32,
    pub data: RVec<u8>,
}

/// The most bytes a handover may hold (16 MiB): a larger one is refused by the host (the
/// new generation starts empty, the reload goes on) rather than held twice in memory.
pub const MAX_HANDOVER_BYTES: usize = 16 << 20;

/// What the new generation made of a handover, as it reports it with
/// `HostContext::handover_outcome` (for the log and the reload's health).
pub mod handover_outcome {
    /// Read and used.
    pub const ACCEPTED: u8 = 0;
    /// Not used: another version, or data the new generation cannot read. The detail says why.
    pub const REFUSED: u8 = 1;
}

/// Where a generation of plugins is in its life (`HostContext::phase`). A generation starts
/// in `STARTING`, is `SERVING` once the HTTP listener is bound and it is the generation
/// requests go to, `RETIRING` once a reload took its state and started the next one (it may
/// go back to `SERVING` if that reload fails), and `STOPPED` after its `shutdown`.
pub mod phase {
    pub const STARTING: u8 = 0;
    pub const SERVING: u8 = 1;
    pub const RETIRING: u8 = 2;
    pub const STOPPED: u8 = 3;
}
