//! The last and recent messages of the eventbus, kept in memory and served over HTTP: the
//! in-process cousin of brewblox-history.
//!
//! At startup it subscribes to `--history-exchange` (default `brewcast`, where brewblox
//! services broadcast their state with their service name as routing key) with routing
//! pattern `--history-routing` (default `#`: everything), as brewblox-history did. Every
//! message is kept under its routing key, at most `--history-size` per key, within the
//! bounds described in [`store`]. AMQP messages are JSON (any value): one that is not never
//! reaches the store, and the host logs it. MQTT payloads are raw, so one that is not JSON
//! is kept as a JSON string of its text.
//!
//! Routes (under `/{name}`; the service's OpenAPI document shows what each takes and answers):
//! - `GET /history/last`: the last message of every routing key;
//! - `GET /history/keys`: the routing keys, sorted;
//! - `GET /history/recent/{key}[?limit=N]`: the recent messages of one key, oldest first;
//!   a key with `/` in it is percent-encoded (`%2F`), dots need nothing;
//! - `POST /history/subscribe`: subscribes to another exchange at runtime, as
//!   brewblox-history allowed, or (`{"filter"}`) to another MQTT topic filter;
//! - `GET /history/subscriptions`: the startup subscription, then those added.
//!
//! Shared and durable (see `docs/several-instances.md`): `--history-group NAME` makes the
//! startup subscriptions in a group, so that history instances in it split the messages
//! (each keeps what it received); `--history-durable` makes them durable (on AMQP a durable
//! queue, on MQTT the service's persistent session), so that what is published while the
//! service is stopped or reloading is recorded when it is back. `POST /history/subscribe`
//! takes `group` and `durable` fields for the same.
//!
//! Two subscriptions whose patterns overlap (`#` and `a.#` on one exchange) each get a copy
//! of a matching message, as with the original; both copies are recorded.
//!
//! Handlers that read or record messages have only the `Messages` as their state, so that
//! they can be called without a host; only the subscription routes hold a context.
//!
//! At a hot swap the history is handed to the new generation (see `src/handover.rs`): its
//! messages, with the times they were received, and the subscriptions added with
//! `POST /history/subscribe`, which the new generation makes again.

mod handover;

pub mod store;

use std::{
    num::NonZeroUsize,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex, MutexGuard, PoisonError,
    },
    time::SystemTime,
};

use plugin_api::{prelude::*, rfc3339};
use serde::{de, Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

use crate::store::{Evictions, Store};

/// Default for `--history-exchange`: where brewblox services broadcast their state.
pub const DEFAULT_EXCHANGE: &str = "brewcast";

/// Default for `--history-routing`: every routing key.
pub const DEFAULT_ROUTING: &str = "#";

/// Default for `--history-mqtt-filter`: everything BrewBlox services broadcast.
pub const DEFAULT_MQTT_FILTER: &str = "brewcast/#";

/// Default for `--history-size`: messages kept per routing key.
pub const DEFAULT_SIZE: i64 = 100;

/// Most subscriptions `POST /history/subscribe` may add. Each one is a queue on the broker
/// and a consumer in the host; an HTTP client must not be able to create them without end.
pub const MAX_SUBSCRIPTIONS: usize = 100;

/// AMQP names (exchange, routing key) are short strings: at most 255 bytes.
const MAX_NAME_LEN: usize = 255;

/// One entry of `GET /history/recent/{key}`.
#[derive(Debug, Serialize, JsonSchema)]
struct RecentEntry {
    /// When the plugin received the message, RFC 3339 in UTC with milliseconds.
    received: String,
    /// The message: any JSON value.
    message: Value,
}

/// The query of `GET /history/recent/{key}`: the one type that both reads the query and
/// documents it.
#[derive(Debug, Deserialize, JsonSchema)]
struct RecentQuery {
    /// Keep only the newest N messages (a positive integer); all when absent.
    #[serde(default, deserialize_with = "positive_limit")]
    limit: Option<NonZeroUsize>,
}

/// Reads `limit` with an error that says what it must be: serde's own ("invalid digit
/// found in string") would not name the parameter. Surrounding blanks are allowed.
fn positive_limit<'de, D: Deserializer<'de>>(de: D) -> Result<Option<NonZeroUsize>, D::Error> {
    let text = String::deserialize(de)?;
    match text.trim().parse() {
        Ok(limit) => Ok(Some(limit)),
        Err(_) => Err(de::Error::custom(format!(
            "limit must be a positive integer, not \"{text}\""
        ))),
    }
}

/// The body of `POST /history/subscribe`, and one entry of `GET /history/subscriptions`:
/// AMQP (`exchange` and `routing`) or MQTT (`filter`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
struct SubscribeRequest {
    /// AMQP: the exchange name: not empty, not starting with `amq.`, at most 255 bytes, no
    /// control characters. Absent in the MQTT form.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    exchange: String,
    /// AMQP: the routing pattern (topic wildcards `*` and `#`), at most 255 bytes, no control
    /// characters. Absent in the MQTT form.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    routing: String,
    /// MQTT: the topic filter (wildcards `+` and `#`) instead of `exchange` and `routing`;
    /// its messages are keyed by topic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    filter: Option<String>,
    /// Share the subscription in this group: the history instances subscribed in it split
    /// the messages (a named, durable queue on the broker). ASCII letters, digits, `-`, `_`
    /// and `.`, at most 64 bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    group: Option<String>,
    /// Keep what is published while the service is stopped or reloading (AMQP: a named,
    /// durable queue of the service's own, or of the group's; MQTT: the service's persistent
    /// session).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    durable: bool,
}

impl SubscribeRequest {
    /// The sharing options, if any are asked for.
    fn shared(&self) -> Option<Shared> {
        match (&self.group, self.durable) {
            (None, false) => None,
            (None, true) => Some(Shared::durable()),
            (Some(group), false) => Some(Shared::group(group)),
            (Some(group), true) => Some(Shared::group(group).and_durable()),
        }
    }
}

/// The answer to `POST /history/subscribe`.
#[derive(Debug, Serialize, JsonSchema)]
struct SubscribeResponse {
    #[serde(flatten)]
    subscription: SubscribeRequest,
    /// False when the plugin was subscribed to this already.
    added: bool,
}

/// The locks are never held across an await or user code; a poisoned one can only come
/// from a bug in the store, and its data is still the best there is.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The recorded messages: the state of the handlers that record and read them.
struct Messages {
    store: Mutex<Store>,
    /// Whether a key has been forgotten yet: the first time is worth a warning.
    forgot_before: AtomicBool,
}

impl Messages {
    /// Keeps `size` messages per key (at least 1), within the store's bounds.
    fn new(size: usize) -> Self {
        Messages {
            store: Mutex::new(Store::new(size)),
            forgot_before: AtomicBool::new(false),
        }
    }

    fn record(&self, key: &str, message: Value) {
        let evictions = lock(&self.store).record(key, message, SystemTime::now());
        if !evictions.is_empty() {
            self.log_evictions(&evictions);
        }
    }

    /// Warns the first time the bounds make the plugin forget a key; later ones are debug
    /// lines, so that a flood of keys does not become a flood of log lines.
    fn log_evictions(&self, evictions: &Evictions) {
        let first_forget =
            !evictions.keys.is_empty() && !self.forgot_before.swap(true, Ordering::Relaxed);
        if first_forget {
            tracing::warn!(
                "History is full: forgot routing key(s) {:?} to stay within {} keys and {} MiB \
                 (the least recently updated go first; further evictions are logged at debug \
                 level)",
                evictions.keys,
                store::MAX_KEYS,
                store::MAX_BYTES / (1024 * 1024)
            );
        } else {
            tracing::debug!(
                "History bounds: forgot keys {:?}, trimmed {} older message(s)",
                evictions.keys,
                evictions.trimmed
            );
        }
    }

    fn recent(&self, key: &str, limit: Option<NonZeroUsize>) -> Result<Vec<RecentEntry>> {
        let entries = lock(&self.store)
            .recent(key, limit.map(NonZeroUsize::get))
            .ok_or_else(|| Error::not_found(format!("no messages with routing key \"{key}\"")))?;
        Ok(entries
            .into_iter()
            .map(|entry| RecentEntry {
                received: rfc3339(entry.received),
                message: entry.message,
            })
            .collect())
    }
}

/// Records an AMQP message under its routing key. A payload that is not JSON never gets
/// here: the `Json` extractor refuses it and the host logs that.
async fn record(
    State(messages): State<Arc<Messages>>,
    Topic(key): Topic,
    Json(message): Json<Value>,
) {
    messages.record(&key, message);
}

/// Records an MQTT message under its topic: the payload as JSON or, when it is not JSON
/// (MQTT payloads are raw), as a JSON string of its text (invalid UTF-8 replaced by U+FFFD).
async fn record_mqtt(State(messages): State<Arc<Messages>>, message: Message) {
    let value = message
        .json::<Value>()
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(message.payload()).into_owned()));
    messages.record(message.topic(), value);
}

async fn last(State(messages): State<Arc<Messages>>) -> Json<Map<String, Value>> {
    Json(lock(&messages.store).last())
}

async fn keys(State(messages): State<Arc<Messages>>) -> Json<Vec<String>> {
    Json(lock(&messages.store).keys())
}

async fn recent(
    State(messages): State<Arc<Messages>>,
    Path(key): Path<String>,
    Query(query): Query<RecentQuery>,
) -> Result<Json<Vec<RecentEntry>>> {
    messages.recent(&key, query.limit).map(Json)
}

/// The eventbus subscriptions that record: the startup one and those
/// `POST /history/subscribe` adds. The state of the subscription routes.
struct Subscriptions {
    /// Subscribes [`record`] with the messages as its state.
    ctx: Context<Arc<Messages>>,
    made: Mutex<Vec<Made>>,
}

/// One subscription made, and the broker's answer to it.
struct Made {
    request: SubscribeRequest,
    subscription: Subscription,
    /// Set once, by the first caller that waits for the broker; every caller that asked for
    /// the same subscription meanwhile waits for it and gets the same answer, so a refusal
    /// reaches them all (none is told "subscribed already" of what was never made).
    bound: Arc<tokio::sync::OnceCell<Bound>>,
}

/// The broker's answer: bound, or the error (its kind and message) every caller gets.
type Bound = std::result::Result<(), (ErrorKind, String)>;

impl Subscriptions {
    /// Subscribes to `request` unless subscribed already; returns the subscription, its
    /// shared answer, and whether it was made now.
    fn subscribe(
        &self,
        request: SubscribeRequest,
    ) -> Result<(Subscription, Arc<tokio::sync::OnceCell<Bound>>, bool)> {
        let mut made = lock(&self.made);
        if let Some(known) = made.iter().find(|known| known.request == request) {
            return Ok((known.subscription.clone(), known.bound.clone(), false));
        }
        if made.len() >= MAX_SUBSCRIPTIONS {
            return Err(Error::conflict(format!(
                "already {MAX_SUBSCRIPTIONS} subscriptions, the most this plugin keeps"
            )));
        }
        let (exchange, routing) = (&request.exchange, &request.routing);
        let subscription = match (&request.filter, request.shared()) {
            (Some(filter), Some(shared)) => {
                self.ctx.mqtt_subscribe_shared(filter, shared, record_mqtt)
            }
            (Some(filter), None) => self.ctx.mqtt_subscribe(filter, record_mqtt),
            (None, Some(shared)) => self.ctx.subscribe_shared(exchange, routing, shared, record),
            (None, None) => self.ctx.subscribe(exchange, routing, record),
        }
        .map_err(|err| subscribe_error(&request, &err))?;
        tracing::info!("History subscribed to {subscription}");
        let bound = Arc::new(tokio::sync::OnceCell::new());
        made.push(Made {
            request,
            subscription: subscription.clone(),
            bound: bound.clone(),
        });
        Ok((subscription, bound, true))
    }

    /// Subscribes as [`Subscriptions::subscribe`] and waits until the broker bound it; if
    /// it refuses, nothing stays behind and every caller waiting for it gets the refusal.
    /// Returns whether it was added by this call.
    async fn subscribe_bound(&self, request: SubscribeRequest) -> Result<bool> {
        let (subscription, bound, added) = self.subscribe(request.clone())?;
        let outcome = bound
            .get_or_init(|| async {
                let Err(err) = subscription.ready().await else {
                    return Ok(());
                };
                subscription.cancel();
                lock(&self.made).retain(|known| !Arc::ptr_eq(&known.bound, &bound));
                tracing::warn!("History subscription to {subscription} not made: {err}");
                let err = subscribe_error(&request, &err);
                Err((err.kind(), err.message().to_owned()))
            })
            .await;
        match outcome {
            Ok(()) => Ok(added),
            Err((kind, message)) => Err(Error::new(*kind, message)),
        }
    }
}

async fn subscribe(
    State(subscriptions): State<Arc<Subscriptions>>,
    Json(request): Json<SubscribeRequest>,
) -> Result<Json<SubscribeResponse>> {
    check_form(&request)?;
    let added = subscriptions.subscribe_bound(request.clone()).await?;
    Ok(Json(SubscribeResponse {
        subscription: request,
        added,
    }))
}

async fn subscription_list(
    State(subscriptions): State<Arc<Subscriptions>>,
) -> Json<Vec<SubscribeRequest>> {
    let made = lock(&subscriptions.made);
    Json(made.iter().map(|known| known.request.clone()).collect())
}

/// Checks a request's form: an MQTT filter alone, or an AMQP exchange and routing key; the
/// error names the field. The filter's syntax is the host's to check (at subscribe).
fn check_form(request: &SubscribeRequest) -> Result<()> {
    match &request.filter {
        Some(_) if !request.exchange.is_empty() || !request.routing.is_empty() => Err(
            Error::invalid("give an MQTT filter, or an AMQP exchange and routing, not both")
                .field("filter"),
        ),
        Some(filter) if filter.is_empty() => {
            Err(Error::invalid("filter must not be empty").field("filter"))
        }
        Some(_) => Ok(()),
        None => {
            check_name("exchange", &request.exchange, true)?;
            if request.routing.is_empty() {
                let message = "routing is missing (an MQTT subscription takes a filter instead)";
                return Err(Error::invalid(message).field("routing"));
            }
            check_name("routing", &request.routing, false)
        }
    }
}

/// The answer for a subscription that could not be made: 400 for a name the bus refuses,
/// 409 for a broker's refusal, 503/504 when the broker cannot be reached in time.
fn subscribe_error(request: &SubscribeRequest, err: &Error) -> Error {
    let message = match &request.filter {
        Some(filter) => format!("cannot subscribe to MQTT filter \"{filter}\": {err}"),
        None => format!(
            "cannot subscribe to exchange \"{}\" with routing \"{}\": {err}",
            request.exchange, request.routing
        ),
    };
    match err.kind() {
        ErrorKind::Conflict | ErrorKind::Rejected => Error::conflict(message),
        kind => Error::new(kind, message),
    }
}

/// Checks an exchange name or routing key from the command line or a request; the error
/// names the field.
fn check_name(field: &str, value: &str, is_exchange: bool) -> Result<()> {
    let problem = if value.len() > MAX_NAME_LEN {
        format!(
            "{field} is {} bytes long; AMQP allows at most {MAX_NAME_LEN}",
            value.len()
        )
    } else if let Some(c) = value.chars().find(|c| c.is_control()) {
        format!("{field} contains the control character {c:?}")
    } else if is_exchange && value.is_empty() {
        format!("{field} must not be empty (the default exchange cannot be subscribed to)")
    } else if is_exchange && value.starts_with("amq.") {
        format!(
            "{field} \"{value}\" is reserved by the broker (\"amq.\" prefix) and cannot be \
             declared the way brewblox declares exchanges"
        )
    } else {
        return Ok(());
    };
    Err(Error::invalid(problem).field(field))
}

/// Reads `--history-size`; anything below 1 is a startup error.
fn history_size(size: i64) -> Result<usize> {
    if size < 1 {
        return Err(Error::msg(format!(
            "--history-size must be at least 1 (got {size})"
        )));
    }
    usize::try_from(size).map_err(|_| Error::msg(format!("--history-size {size} is too large")))
}

/// The routes that read the messages.
fn message_routes(ctx: &Context<Arc<Messages>>) -> Result<()> {
    ctx.route(
        Route::get("/history/last")
            .summary("Last message per routing key")
            .status(
                StatusCode::OK,
                "Every routing key held → the last message received with it (any JSON value)",
            ),
        last,
    )?;
    ctx.route(
        Route::get("/history/keys")
            .summary("Routing keys with history")
            .status(
                StatusCode::OK,
                "The routing keys of all messages held, sorted",
            ),
        keys,
    )?;
    ctx.route(
        Route::get("/history/recent/{key}")
            .summary("Recent messages of one routing key")
            .description(
                "Oldest first, at most --history-size of them. Dots in the key need no \
                 escaping; a '/' is written %2F.",
            )
            .path_param("key", "The routing key ('/' written %2F)")
            .status(StatusCode::OK, "The messages, oldest first")
            .error_response(StatusCode::BAD_REQUEST, "`limit` is not a positive integer")
            .error_response(StatusCode::NOT_FOUND, "No messages with this routing key"),
        recent,
    )
}

/// The routes that add and list subscriptions.
fn subscription_routes(ctx: &Context<Arc<Subscriptions>>) -> Result<()> {
    ctx.route(
        Route::post("/history/subscribe")
            .summary("Subscribe to another exchange or MQTT filter")
            .description(
                "Messages matching it are recorded from now on, like those of the startup \
                 subscription: AMQP with exchange and routing, MQTT with filter (keyed by \
                 topic). Answers once the broker bound it; if the broker refuses it (e.g. \
                 the exchange exists with another type), nothing is kept.",
            )
            .status(StatusCode::OK, "Subscribed, or subscribed already")
            .error_response(
                StatusCode::BAD_REQUEST,
                "A field is missing, mistyped or not a usable name",
            )
            .error_response(
                StatusCode::CONFLICT,
                "The most subscriptions the plugin keeps are reached, or the eventbus \
                 refused the subscription",
            )
            .error_response(
                StatusCode::SERVICE_UNAVAILABLE,
                "The eventbus cannot be reached; nothing is kept",
            ),
        subscribe,
    )?;
    ctx.route(
        Route::get("/history/subscriptions")
            .summary("Subscriptions of the history")
            .status(
                StatusCode::OK,
                "The startup subscription first, then those added with POST /history/subscribe",
            ),
        subscription_list,
    )
}

/// The plugin: its state lives in what `startup` hands to routes and handlers, and is kept
/// here too for the handover at a hot swap.
#[derive(Default)]
pub struct HistoryPlugin {
    /// The messages, the subscriptions, and how many of those `startup` made from the
    /// command line (the others were added over HTTP).
    kept: std::sync::OnceLock<(Arc<Messages>, Arc<Subscriptions>, usize)>,
}

impl Plugin for HistoryPlugin {
    fn args() -> Vec<Arg> {
        vec![
            Arg::string("history-exchange")
                .default(DEFAULT_EXCHANGE)
                .help("Eventbus exchange the history subscribes to at startup"),
            Arg::string("history-routing")
                .default(DEFAULT_ROUTING)
                .help("Routing pattern of that subscription (topic wildcards * and #)"),
            Arg::string("history-mqtt-filter")
                .default(DEFAULT_MQTT_FILTER)
                .help("MQTT topic filter the history subscribes to when the service uses MQTT"),
            Arg::int("history-size")
                .default(DEFAULT_SIZE)
                .help("Recent messages kept per routing key (at least 1)"),
            Arg::string("history-group")
                .default("")
                .help("Share the startup subscriptions in this group: the history instances in it split the messages"),
            Arg::flag("history-durable")
                .help("Keep what is published to the startup subscriptions while the service is away (AMQP: a durable queue; MQTT: a persistent session)"),
        ]
    }

    async fn startup(self: Arc<Self>, ctx: &Context) -> Result<()> {
        let config = ctx.config();
        let size = history_size(config.get("history-size")?)?;
        let group: String = config.get("history-group")?;
        let startup = SubscribeRequest {
            exchange: config.get("history-exchange")?,
            routing: config.get("history-routing")?,
            filter: None,
            group: (!group.is_empty()).then_some(group),
            durable: config.get("history-durable")?,
        };
        let mqtt_shared = startup.shared();
        check_name("--history-exchange", &startup.exchange, true)
            .and(check_name("--history-routing", &startup.routing, false))
            .map_err(|err| Error::msg(err.message()))?;
        let recorder = ctx.with_state(Arc::new(Messages::new(size)));
        let subscriptions = Arc::new(Subscriptions {
            ctx: recorder.clone(),
            made: Mutex::new(Vec::new()),
        });
        let added = handover::take(ctx, recorder.state(), size);

        // Each eventbus the service uses: AMQP messages are keyed by routing key, MQTT
        // messages by topic.
        if config.amqp().is_some() {
            subscriptions
                .subscribe(startup)
                .map_err(|err| Error::msg(err.message()))?;
        }
        if config.mqtt().is_some() {
            let filter: String = config.get("history-mqtt-filter")?;
            let subscription = match mqtt_shared {
                Some(shared) => recorder.mqtt_subscribe_shared(&filter, shared, record_mqtt),
                None => recorder.mqtt_subscribe(&filter, record_mqtt),
            }
            .map_err(|err| Error::msg(format!("--history-mqtt-filter: {}", err.message())))?;
            tracing::info!("History subscribed to MQTT {subscription}");
        }

        let from_startup = lock(&subscriptions.made).len();
        // The subscriptions the previous generation had added: the host waits until they
        // are bound before the swap.
        for request in added {
            if let Err(err) = subscriptions.subscribe(request) {
                tracing::warn!("History subscription not made again: {}", err.message());
            }
        }
        let _ = self.kept.set((
            Arc::clone(recorder.state()),
            Arc::clone(&subscriptions),
            from_startup,
        ));
        message_routes(&recorder)?;
        subscription_routes(&recorder.with_state(subscriptions))?;
        tracing::info!(
            "History keeps {size} message(s) per routing key, at most {} keys and about {} MiB",
            store::MAX_KEYS,
            store::MAX_BYTES / (1024 * 1024)
        );
        Ok(())
    }

    async fn handover(&self, _ctx: &Context) -> Result<Option<Handover>> {
        let Some((messages, subscriptions, from_startup)) = self.kept.get() else {
            return Ok(None);
        };
        let added: Vec<SubscribeRequest> = lock(&subscriptions.made)
            .iter()
            .skip(*from_startup)
            .map(|known| known.request.clone())
            .collect();
        handover::give(messages, added).map(Some)
    }
}

export_plugin!(HistoryPlugin);

#[cfg(test)]
mod plugin_tests;

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use plugin_api::Extract;
    use serde_json::json;

    use super::*;

    #[test]
    fn size_must_be_positive() {
        for bad in [0, -1, i64::MIN] {
            let err = history_size(bad).unwrap_err();
            assert!(err.message().contains("--history-size"), "{err}");
        }
        assert_eq!(history_size(1).unwrap(), 1);
        assert_eq!(history_size(100).unwrap(), 100);
    }

    #[test]
    fn the_query_type_reads_limit() {
        let limit = |query: &str| {
            let req = Request::builder("GET", "/svc/history/recent/k")
                .query(query)
                .build();
            Query::<RecentQuery>::extract(&req, &()).map(|Query(q)| q.limit.map(usize::from))
        };
        assert_eq!(limit("").unwrap(), None);
        assert_eq!(limit("limit=3").unwrap(), Some(3));
        assert_eq!(limit("limit=%203%20").unwrap(), Some(3));
        assert_eq!(limit("other=1").unwrap(), None);
        for bad in ["0", "-1", "x", "", "1.5", "99999999999999999999999"] {
            let err = limit(&format!("limit={bad}")).unwrap_err();
            assert_eq!(err.status(), StatusCode::BAD_REQUEST, "{bad}");
            assert_eq!(err.field_name(), Some("limit"), "{bad}");
            let expected = format!("limit must be a positive integer, not \"{bad}\"");
            assert!(err.message().contains(&expected), "{bad}: {err}");
        }
    }

    #[test]
    fn subscribe_body_errors_name_the_field() {
        for (body, field) in [
            ("{}", "exchange"),
            (r##"{"exchange": 1, "routing": "#"}"##, "exchange"),
            (r#"{"exchange": "e"}"#, "routing"),
            (r#"{"exchange": "e", "routing": null}"#, "routing"),
            (r#"{"filter": ""}"#, "filter"),
            (
                r##"{"filter": "a", "exchange": "e", "routing": "#"}"##,
                "filter",
            ),
        ] {
            let req = Request::builder("POST", "/svc/history/subscribe")
                .body(body)
                .build();
            // A field of the wrong type fails the decoding; a missing or empty one the form.
            let err = match Json::<SubscribeRequest>::extract(&req, &()) {
                Ok(Json(request)) => check_form(&request).unwrap_err(),
                Err(err) => err,
            };
            assert_eq!(err.status(), StatusCode::BAD_REQUEST, "{body}");
            assert_eq!(err.field_name(), Some(field), "{body}");
        }
        let mqtt: SubscribeRequest = serde_json::from_str(r#"{"filter": "a/#"}"#).unwrap();
        assert!(check_form(&mqtt).is_ok());
    }

    #[test]
    fn names_are_checked() {
        assert!(check_name("exchange", "brewcast", true).is_ok());
        assert!(check_name("routing", "", false).is_ok());
        assert!(check_name("routing", "a.*.#", false).is_ok());
        for (value, is_exchange) in [("", true), ("amq.topic", true), ("e\nx", false)] {
            let err = check_name("exchange", value, is_exchange).unwrap_err();
            assert_eq!(err.status(), StatusCode::BAD_REQUEST);
            assert_eq!(err.field_name(), Some("exchange"));
        }
        let long = "r".repeat(256);
        let err = check_name("routing", &long, false).unwrap_err();
        assert_eq!(err.field_name(), Some("routing"));
    }

    #[test]
    fn recent_entries_have_the_documented_shape() {
        let messages = Messages::new(2);
        messages.record("a.b", json!({"v": 1}));
        messages.record("a.b", json!(null));
        let entries = serde_json::to_value(messages.recent("a.b", None).unwrap()).unwrap();
        let list = entries.as_array().unwrap();
        assert_eq!(list.len(), 2);
        assert_eq!(list[0]["message"], json!({"v": 1}));
        assert_eq!(list[1]["message"], Value::Null);
        let received = list[0]["received"].as_str().unwrap();
        assert!(received.ends_with('Z') && received.as_bytes()[10] == b'T');
        let err = messages.recent("nope", None).unwrap_err();
        assert_eq!(err.status(), StatusCode::NOT_FOUND);
    }

    #[test]
    fn timestamps_are_rfc3339_utc_with_millis() {
        let time = SystemTime::UNIX_EPOCH + Duration::from_nanos(1_700_000_000_123_456_789);
        assert_eq!(rfc3339(time), "2023-11-14T22:13:20.123Z");
    }
}
