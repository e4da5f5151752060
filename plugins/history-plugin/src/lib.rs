//! The last and recent messages of the eventbus, kept in memory and served over HTTP: the
//! in-process cousin of brewblox-history.
//!
//! At startup it subscribes to `--history-exchange` (default `brewcast`, where brewblox
//! services broadcast their state with their service name as routing key) with routing
//! pattern `--history-routing` (default `#`: everything), as brewblox-history did. Every
//! message is kept under its routing key, at most `--history-size` per key, within the
//! bounds described in [`store`]. Messages are JSON (any value); the host drops anything
//! else before it reaches the plugin.
//!
//! Routes (under `/{name}`):
//! - `GET /history/last` → `{"<routing key>": <last message>, …}`;
//! - `GET /history/keys` → `["<routing key>", …]`, sorted;
//! - `GET /history/recent/{key}[?limit=N]` → `[{"received": "<RFC 3339>", "message": …}, …]`,
//!   oldest first, the newest `N` if given; an unknown key → 404, a `limit` that is not a
//!   positive integer → 400 naming `limit`. A key with `/` in it is percent-encoded (`%2F`);
//!   dots need nothing;
//! - `POST /history/subscribe` with `{"exchange": "...", "routing": "..."}` → subscribes at
//!   runtime, as brewblox-history allowed; answers
//!   `{"exchange": ..., "routing": ..., "added": true}` (`false` if it was subscribed
//!   already); a missing or mistyped field → 400 naming it;
//! - `GET /history/subscriptions` → `[{"exchange": ..., "routing": ...}, …]`.
//!
//! Two subscriptions whose patterns overlap (`#` and `a.#` on one exchange) each get a copy
//! of a matching message, as with the original; both copies are recorded.

pub mod store;

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex, MutexGuard, PoisonError,
    },
    time::SystemTime,
};

use plugin_api::{
    export_plugin, rfc3339, Arg, Context, Error, ErrorKind, Json, JsonSchema, MqttMessage, Plugin,
    Request, Result, Route, Subscription,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;

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
#[schemars(crate = "plugin_api::schemars")]
struct RecentEntry {
    /// When the plugin received the message, RFC 3339 in UTC with milliseconds.
    received: String,
    /// The message: any JSON value.
    message: Value,
}

/// The query of `GET /history/recent/{key}`, for its documentation ([`parse_limit`] reads
/// it, with an error naming `limit`).
#[derive(JsonSchema)]
#[schemars(crate = "plugin_api::schemars")]
#[allow(dead_code)]
struct RecentQuery {
    /// Keep only the newest N messages (a positive integer); all when absent.
    #[schemars(range(min = 1))]
    limit: Option<u64>,
}

/// The body of `POST /history/subscribe`, and one entry of `GET /history/subscriptions`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[schemars(crate = "plugin_api::schemars")]
struct SubscribeRequest {
    /// Exchange name: not empty, not starting with `amq.`, at most 255 bytes, no control
    /// characters.
    exchange: String,
    /// Routing pattern (topic wildcards `*` and `#`), at most 255 bytes, no control characters.
    routing: String,
}

/// The answer to `POST /history/subscribe`.
#[derive(Debug, Serialize, JsonSchema)]
#[schemars(crate = "plugin_api::schemars")]
struct SubscribeResponse {
    exchange: String,
    routing: String,
    /// False when the plugin was subscribed to this already.
    added: bool,
}

/// The store and the subscriptions, shared by the message handler and the routes.
struct History {
    store: Mutex<Store>,
    subscriptions: Mutex<Vec<(SubscribeRequest, Subscription)>>,
    /// Whether a key has been forgotten yet: the first time is worth a warning.
    forgot_before: AtomicBool,
}

/// The locks are never held across an await or user code; a poisoned one can only come
/// from a bug in the store, and its data is still the best there is.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl History {
    fn new(size: usize) -> Self {
        History {
            store: Mutex::new(Store::new(size)),
            subscriptions: Mutex::new(Vec::new()),
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

    /// Subscribes to `request` unless subscribed already; returns the new subscription, or
    /// `None` if it was subscribed already.
    fn subscribe(
        self: &Arc<Self>,
        ctx: &Context,
        request: SubscribeRequest,
    ) -> Result<Option<Subscription>> {
        let mut subscriptions = lock(&self.subscriptions);
        if subscriptions.iter().any(|(known, _)| *known == request) {
            return Ok(None);
        }
        if subscriptions.len() >= MAX_SUBSCRIPTIONS {
            return Err(Error::new(
                409,
                format!("already {MAX_SUBSCRIPTIONS} subscriptions, the most this plugin keeps"),
            ));
        }
        let history = Arc::clone(self);
        let subscription = ctx
            .subscribe(
                &request.exchange,
                &request.routing,
                move |_sub: Subscription, key: String, message: Value| {
                    let history = Arc::clone(&history);
                    async move {
                        history.record(&key, message);
                        Ok(())
                    }
                },
            )
            .map_err(|err| subscribe_error(&request, &err))?;
        tracing::info!("History subscribed to {subscription}");
        subscriptions.push((request, subscription.clone()));
        Ok(Some(subscription))
    }

    /// Records every MQTT message matching `filter`, keyed by its topic: the payload as
    /// JSON, or, when it is not JSON (MQTT payloads are raw), as a JSON string of its text
    /// (invalid UTF-8 replaced by U+FFFD).
    fn subscribe_mqtt(self: &Arc<Self>, ctx: &Context, filter: &str) -> Result<()> {
        let history = Arc::clone(self);
        let subscription = ctx
            .mqtt_subscribe(filter, move |_sub: Subscription, message: MqttMessage| {
                let history = Arc::clone(&history);
                async move {
                    let value = message.json::<Value>().unwrap_or_else(|_| {
                        Value::String(String::from_utf8_lossy(message.bytes()).into_owned())
                    });
                    history.record(message.topic(), value);
                    Ok(())
                }
            })
            .map_err(|err| Error::msg(format!("--history-mqtt-filter: {}", err.message())))?;
        tracing::info!("History subscribed to MQTT {subscription}");
        Ok(())
    }

    /// Subscribes as [`History::subscribe`] and waits until the broker bound it; if it
    /// refuses, nothing stays behind. Returns whether it was added.
    async fn subscribe_bound(
        self: &Arc<Self>,
        ctx: &Context,
        request: SubscribeRequest,
    ) -> Result<bool> {
        let Some(subscription) = self.subscribe(ctx, request.clone())? else {
            return Ok(false);
        };
        if let Err(err) = subscription.ready().await {
            subscription.cancel();
            lock(&self.subscriptions).retain(|(known, _)| *known != request);
            tracing::warn!("History subscription to {subscription} not made: {err}");
            return Err(subscribe_error(&request, &err));
        }
        Ok(true)
    }

    fn subscription_list(&self) -> Vec<SubscribeRequest> {
        lock(&self.subscriptions)
            .iter()
            .map(|(request, _)| request.clone())
            .collect()
    }

    fn recent(&self, key: &str, limit: Option<usize>) -> Result<Vec<RecentEntry>> {
        let entries = lock(&self.store)
            .recent(key, limit)
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

/// The answer for a subscription that could not be made: 400 for a name the bus refuses,
/// 409 for a broker's refusal, 503/504 when the broker cannot be reached in time.
fn subscribe_error(request: &SubscribeRequest, err: &Error) -> Error {
    let message = format!(
        "cannot subscribe to exchange \"{}\" with routing \"{}\": {err}",
        request.exchange, request.routing
    );
    match err.kind() {
        ErrorKind::Invalid => Error::bad_request(message),
        ErrorKind::Conflict | ErrorKind::Rejected => Error::new(409, message),
        _ => Error::new(err.status(), message),
    }
}

/// Checks an exchange name or routing key from the command line or a request; the error
/// names the field.
fn check_name(field: &str, value: &str, is_exchange: bool) -> Result<()> {
    let problem = if value.len() > MAX_NAME_LEN {
        Some(format!(
            "{field} is {} bytes long; AMQP allows at most {MAX_NAME_LEN}",
            value.len()
        ))
    } else if let Some(c) = value.chars().find(|c| c.is_control()) {
        Some(format!("{field} contains the control character {c:?}"))
    } else if is_exchange && value.is_empty() {
        Some(format!(
            "{field} must not be empty (the default exchange cannot be subscribed to)"
        ))
    } else if is_exchange && value.starts_with("amq.") {
        Some(format!(
            "{field} \"{value}\" is reserved by the broker (\"amq.\" prefix) and cannot be \
             declared the way brewblox declares exchanges"
        ))
    } else {
        None
    };
    match problem {
        Some(problem) => Err(Error::bad_request(problem).field(field)),
        None => Ok(()),
    }
}

/// Reads `?limit=`: absent → all; otherwise a positive integer, or a 400 naming `limit`.
fn parse_limit(req: &Request) -> Result<Option<usize>> {
    let Some(text) = req.query_param("limit") else {
        return Ok(None);
    };
    match text.trim().parse::<usize>() {
        Ok(limit) if limit >= 1 => Ok(Some(limit)),
        _ => Err(
            Error::bad_request(format!("limit must be a positive integer, not \"{text}\""))
                .field("limit"),
        ),
    }
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

/// The plugin: all of its state lives in what `startup` hands to routes and handlers.
#[derive(Default)]
pub struct HistoryPlugin;

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
        ]
    }

    async fn startup(&self, ctx: &Context) -> Result<()> {
        let config = ctx.config();
        let size = history_size(config.get("history-size")?)?;
        let exchange: String = config.get("history-exchange")?;
        let routing: String = config.get("history-routing")?;
        for (name, value, is_exchange) in [
            ("--history-exchange", &exchange, true),
            ("--history-routing", &routing, false),
        ] {
            check_name(name, value, is_exchange).map_err(|err| Error::msg(err.message()))?;
        }
        let history = Arc::new(History::new(size));

        // Each eventbus the service uses: AMQP messages are keyed by routing key, MQTT
        // messages by topic.
        if config.get::<Option<bool>>("amqp")?.unwrap_or(true) {
            history
                .subscribe(ctx, SubscribeRequest { exchange, routing })
                .map_err(|err| Error::msg(err.message()))?;
        }
        if config.get::<Option<bool>>("mqtt")?.unwrap_or(false) {
            let filter: String = config.get("history-mqtt-filter")?;
            history.subscribe_mqtt(ctx, &filter)?;
        }

        let last = Arc::clone(&history);
        ctx.route(
            Route::get("/history/last")
                .summary("Last message per routing key")
                .description(
                    "A JSON object: every routing key seen (and still held) → the last message \
                     received with it, which can be any JSON value.",
                )
                .response::<serde_json::Map<String, Value>>(200, "Routing key → last message"),
            move |_req: Request| {
                let history = Arc::clone(&last);
                async move { Ok(Json(Value::Object(lock(&history.store).last()))) }
            },
        )?;

        let keys = Arc::clone(&history);
        ctx.route(
            Route::get("/history/keys")
                .summary("Routing keys with history")
                .description("The routing keys of all messages held, sorted.")
                .response::<Vec<String>>(200, "The routing keys, sorted"),
            move |_req: Request| {
                let history = Arc::clone(&keys);
                async move { Ok(Json(lock(&history.store).keys())) }
            },
        )?;

        let recent = Arc::clone(&history);
        ctx.route(
            Route::get("/history/recent/{key}")
                .summary("Recent messages of one routing key")
                .description(
                    "A list of {\"received\": <RFC 3339 time>, \"message\": <JSON>}, oldest \
                     first, at most --history-size long. `?limit=N` (a positive integer) keeps \
                     the newest N. Dots in the key need no escaping; a '/' is written %2F. \
                     An unknown key is a 404, a bad limit a 400 naming `limit`.",
                )
                .path_param("key", "The routing key ('/' written %2F)")
                .query::<RecentQuery>()
                .response::<Vec<RecentEntry>>(200, "The messages, oldest first")
                .error_response(400, "`limit` is not a positive integer")
                .error_response(404, "No messages with this routing key"),
            move |req: Request| {
                let history = Arc::clone(&recent);
                async move {
                    let limit = parse_limit(&req)?;
                    let key = req.param("key").unwrap_or_default();
                    Ok(Json(history.recent(key, limit)?))
                }
            },
        )?;

        let subscribe = Arc::clone(&history);
        let subscribe_ctx = ctx.clone();
        ctx.route(
            Route::post("/history/subscribe")
                .summary("Subscribe to another exchange")
                .description(
                    "Body: {\"exchange\": <string>, \"routing\": <string, topic pattern>}. \
                     Messages matching it are recorded from now on, like those of the startup \
                     subscription. Answers {\"exchange\", \"routing\", \"added\"}; `added` is \
                     false if that subscription existed already. Answers once the broker \
                     bound it; if the broker refuses it (e.g. the exchange exists with another \
                     type) the answer is a 409 with the broker's reason and nothing is kept. \
                     A missing or mistyped field is a 400 naming it.",
                )
                .request_body::<SubscribeRequest>()
                .response::<SubscribeResponse>(200, "Subscribed, or subscribed already")
                .error_response(400, "A field is missing, mistyped or not a usable name")
                .error_response(
                    409,
                    "The most subscriptions the plugin keeps are reached, or the eventbus \
                     refused the subscription",
                )
                .error_response(503, "The eventbus cannot be reached; nothing is kept"),
            move |req: Request| {
                let history = Arc::clone(&subscribe);
                let ctx = subscribe_ctx.clone();
                async move {
                    let request: SubscribeRequest = req.json()?;
                    check_name("exchange", &request.exchange, true)?;
                    check_name("routing", &request.routing, false)?;
                    let added = history.subscribe_bound(&ctx, request.clone()).await?;
                    Ok(Json(SubscribeResponse {
                        exchange: request.exchange,
                        routing: request.routing,
                        added,
                    }))
                }
            },
        )?;

        let list = Arc::clone(&history);
        ctx.route(
            Route::get("/history/subscriptions")
                .summary("Subscriptions of the history")
                .description(
                    "A list of {\"exchange\", \"routing\"}: the startup subscription first, \
                     then those added with POST /history/subscribe.",
                )
                .response::<Vec<SubscribeRequest>>(200, "The subscriptions"),
            move |_req: Request| {
                let history = Arc::clone(&list);
                async move { Ok(Json(history.subscription_list())) }
            },
        )?;

        tracing::info!(
            "History keeps {size} message(s) per routing key, at most {} keys and about {} MiB",
            store::MAX_KEYS,
            store::MAX_BYTES / (1024 * 1024)
        );
        Ok(())
    }
}

export_plugin!(HistoryPlugin);

#[cfg(test)]
mod tests {
    use std::time::Duration;

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
    fn limit_parsing() {
        let req = |query: &str| Request::builder("GET", "/svc/history/recent/k").query(query);
        assert_eq!(parse_limit(&req("").build()).unwrap(), None);
        assert_eq!(parse_limit(&req("limit=3").build()).unwrap(), Some(3));
        assert_eq!(parse_limit(&req("other=1").build()).unwrap(), None);
        for bad in ["limit=0", "limit=-1", "limit=x", "limit=", "limit=1.5"] {
            let err = parse_limit(&req(bad).build()).unwrap_err();
            assert_eq!(err.status(), 400, "{bad}");
            assert_eq!(err.field_name(), Some("limit"), "{bad}");
        }
    }

    #[test]
    fn subscribe_body_errors_name_the_field() {
        for (body, field) in [
            ("{}", "exchange"),
            (r##"{"exchange": 1, "routing": "#"}"##, "exchange"),
            (r#"{"exchange": "e"}"#, "routing"),
            (r#"{"exchange": "e", "routing": null}"#, "routing"),
        ] {
            let req = Request::builder("POST", "/svc/history/subscribe")
                .body(body)
                .build();
            let err = req.json::<SubscribeRequest>().unwrap_err();
            assert_eq!(err.status(), 400, "{body}");
            assert_eq!(err.field_name(), Some(field), "{body}");
        }
    }

    #[test]
    fn names_are_checked() {
        assert!(check_name("exchange", "brewcast", true).is_ok());
        assert!(check_name("routing", "", false).is_ok());
        assert!(check_name("routing", "a.*.#", false).is_ok());
        for (value, is_exchange) in [("", true), ("amq.topic", true)] {
            let err = check_name("exchange", value, is_exchange).unwrap_err();
            assert_eq!(err.status(), 400);
            assert_eq!(err.field_name(), Some("exchange"));
        }
        let long = "r".repeat(256);
        let err = check_name("routing", &long, false).unwrap_err();
        assert_eq!(err.field_name(), Some("routing"));
    }

    #[test]
    fn recent_entries_have_the_documented_shape() {
        let history = History::new(2);
        history.record("a.b", serde_json::json!({"v": 1}));
        history.record("a.b", serde_json::json!(null));
        let entries = serde_json::to_value(history.recent("a.b", None).unwrap()).unwrap();
        let list = entries.as_array().unwrap();
        assert_eq!(list.len(), 2);
        assert_eq!(list[0]["message"], serde_json::json!({"v": 1}));
        assert_eq!(list[1]["message"], Value::Null);
        let received = list[0]["received"].as_str().unwrap();
        assert!(received.ends_with('Z') && received.as_bytes()[10] == b'T');
        let err = history.recent("nope", None).unwrap_err();
        assert_eq!(err.status(), 404);
    }

    #[test]
    fn timestamps_are_rfc3339_utc_with_millis() {
        let time = SystemTime::UNIX_EPOCH + Duration::from_nanos(1_700_000_000_123_456_789);
        assert_eq!(rfc3339(time), "2023-11-14T22:13:20.123Z");
    }
}
