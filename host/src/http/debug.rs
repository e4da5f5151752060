//! `POST /{name}/_debug/publish` and `/_debug/subscribe` (the original's), with clear errors:
//! 400 naming the problem for bad input, 409 for a broker's refusal and 503 when the bus
//! cannot be reached, where the original answered everything with 500 (quirk 4 in
//! `docs/brewblox-service-0.20.0.md`). A body with a `topic` is the MQTT form
//! ([`super::debug_mqtt`]).

use std::sync::{Arc, OnceLock};

use axum::{
    body::Body,
    http::{header, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    Json,
};
use futures::{future::BoxFuture, FutureExt};
use serde_json::{json, Map, Value};

use super::errors;
use crate::bus::{BusError, EventBus, ExchangeKind, MessageSink, Subscription};

/// The original's empty 200: `application/octet-stream`, no body.
pub(super) fn empty_ok() -> Response {
    let mut response = Response::new(Body::empty());
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    response
}

/// A 400 answer: what is wrong, and with which field.
struct BadRequest {
    message: String,
    field: Option<&'static str>,
}

fn bad_request(message: String, field: Option<&'static str>) -> BadRequest {
    BadRequest { message, field }
}

impl IntoResponse for BadRequest {
    fn into_response(self) -> Response {
        let mut body = json!({ "error": self.message });
        if let Some(field) = self.field {
            body["field"] = Value::String(field.to_owned());
        }
        (StatusCode::BAD_REQUEST, Json(body)).into_response()
    }
}

/// The body as a JSON object with the string fields `names` (and `message` if asked).
fn parse(
    body: &[u8],
    names: &[&'static str],
    need_message: bool,
) -> Result<(Vec<String>, Option<Value>), BadRequest> {
    let object: Map<String, Value> = match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(object)) => object,
        Ok(other) => {
            let kind = match other {
                Value::Array(_) => "an array",
                Value::String(_) => "a string",
                Value::Number(_) => "a number",
                Value::Bool(_) => "a boolean",
                _ => "null",
            };
            return Err(bad_request(
                format!("body must be a JSON object, not {kind}"),
                None,
            ));
        }
        Err(err) => return Err(bad_request(format!("invalid JSON body: {err}"), None)),
    };
    let mut values = Vec::new();
    for name in names {
        match object.get(*name) {
            Some(Value::String(text)) => values.push(text.clone()),
            Some(_) => {
                return Err(bad_request(
                    format!("field `{name}` must be a string"),
                    Some(name),
                ))
            }
            None => return Err(bad_request(format!("missing field `{name}`"), Some(name))),
        }
    }
    let message = if need_message {
        match object.get("message") {
            Some(value) => Some(value.clone()),
            None => {
                return Err(bad_request(
                    "missing field `message`".into(),
                    Some("message"),
                ))
            }
        }
    } else {
        None
    };
    Ok((values, message))
}

/// `body` is read here, not by axum's `Bytes` extractor: that one has a 2 MiB limit of its
/// own, below what `--max-body-size` may allow.
pub async fn publish(buses: DebugBuses, body: Body) -> Response {
    let body = match super::body::read(body).await {
        Ok(body) => body,
        Err(refused) => return refused,
    };
    if super::debug_mqtt::is_mqtt_form(&body) {
        return super::debug_mqtt::publish(buses.mqtt, &body).await;
    }
    let Some(bus) = buses.amqp else {
        return amqp_unused();
    };
    let (fields, message) = match parse(&body, &["exchange", "routing"], true) {
        Ok(parsed) => parsed,
        Err(bad) => return bad.into_response(),
    };
    let payload = match serde_json::to_vec(&message.unwrap_or(Value::Null)) {
        Ok(payload) => payload,
        Err(err) => {
            return bad_request(format!("cannot encode message: {err}"), Some("message"))
                .into_response()
        }
    };
    match bus
        .publish(&fields[0], &fields[1], payload, ExchangeKind::Topic, true)
        .await
    {
        Ok(()) => empty_ok(),
        Err(err) => bus_error(err),
    }
}

/// The eventbuses the `_debug` routes reach: the AMQP form (`exchange`, `routing`) goes to
/// `amqp`, the MQTT form (`topic`) to `mqtt`; `None` when the options did not select it.
#[derive(Clone)]
pub struct DebugBuses {
    pub amqp: Option<EventBus>,
    pub mqtt: Option<crate::mqtt::MqttBus>,
}

fn amqp_unused() -> Response {
    errors::text(
        StatusCode::SERVICE_UNAVAILABLE,
        crate::plugins::bus_bridge::AMQP_NOT_IN_USE,
    )
}

/// The answer for a bus error: 400 naming the field for a name AMQP cannot carry, 503 when
/// the bus cannot be reached, 413 for a message over the limit, 409 for a broker refusal.
fn bus_error(err: BusError) -> Response {
    match err {
        BusError::InvalidName { field, .. } => {
            bad_request(err.to_string(), Some(field)).into_response()
        }
        err if err.is_unavailable() => {
            errors::text(StatusCode::SERVICE_UNAVAILABLE, &err.to_string())
        }
        err @ BusError::TooLarge { .. } => {
            errors::text(StatusCode::PAYLOAD_TOO_LARGE, &err.to_string())
        }
        err @ BusError::Channel { .. } => errors::text(StatusCode::CONFLICT, &err.to_string()),
        err => errors::text(StatusCode::INTERNAL_SERVER_ERROR, &err.to_string()),
    }
}

/// Most subscriptions `/_debug/subscribe` keeps: each is a queue on the broker and a task in
/// the host, and an HTTP client must not be able to make them without end.
pub const MAX_DEBUG_SUBSCRIPTIONS: usize = 100;

/// Subscribes (once per exchange and routing key) and answers when the broker bound it:
/// 200 when bound (or bound already), 409 when the broker refused it (e.g. the exchange
/// exists with another type) or the cap is reached, 503 when the bus cannot be reached. On
/// an error nothing stays subscribed.
pub async fn subscribe(buses: DebugBuses, body: Body) -> Response {
    let body = match super::body::read(body).await {
        Ok(body) => body,
        Err(refused) => return refused,
    };
    if super::debug_mqtt::is_mqtt_form(&body) {
        return super::debug_mqtt::subscribe(buses.mqtt, &body).await;
    }
    let Some(bus) = buses.amqp else {
        return amqp_unused();
    };
    let (fields, _) = match parse(&body, &["exchange", "routing"], false) {
        Ok(parsed) => parsed,
        Err(bad) => return bad.into_response(),
    };
    if fields[0].is_empty() {
        return bad_request("exchange name must not be empty".into(), Some("exchange"))
            .into_response();
    }
    let (sub, added) = match find_or_add(&bus, &fields[0], &fields[1]).await {
        Ok(found) => found,
        Err(response) => return response,
    };
    match bus.ready(&sub).await {
        Ok(()) => empty_ok(),
        Err(err) => {
            if added {
                sub.cancel();
            }
            bus_error(err)
        }
    }
}

/// The `/_debug/subscribe` subscription to `exchange` and `routing`, made if there is none
/// (and the cap allows); `true` if made now.
async fn find_or_add(
    bus: &EventBus,
    exchange: &str,
    routing: &str,
) -> Result<(Subscription, bool), Response> {
    // Finding and adding are one step: two identical requests make one subscription.
    static ADDING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let _adding = ADDING.lock().await;
    let sink = log_sink();
    let mine: Vec<Subscription> = bus
        .subscriptions()
        .into_iter()
        .filter(|sub| sub.has_sink(&sink))
        .collect();
    if let Some(sub) = mine
        .iter()
        .find(|sub| sub.exchange() == exchange && sub.routing() == routing)
    {
        return Ok((sub.clone(), false));
    }
    if mine.len() >= MAX_DEBUG_SUBSCRIPTIONS {
        return Err(errors::text(
            StatusCode::CONFLICT,
            &format!(
                "already {MAX_DEBUG_SUBSCRIPTIONS} subscriptions made with /_debug/subscribe, \
                 the most kept"
            ),
        ));
    }
    match bus.subscribe(exchange, routing, ExchangeKind::Topic, sink) {
        Ok(sub) => Ok((sub, true)),
        Err(err) => Err(bus_error(err)),
    }
}

/// The one sink of every `/_debug/subscribe` subscription: it tells them from the others.
fn log_sink() -> Arc<dyn MessageSink> {
    static SINK: OnceLock<Arc<dyn MessageSink>> = OnceLock::new();
    SINK.get_or_init(|| Arc::new(LogSink)).clone()
}

/// The original's default handler: log what arrives.
struct LogSink;

impl MessageSink for LogSink {
    fn deliver(
        &self,
        sub: &Subscription,
        routing_key: &str,
        body: Vec<u8>,
    ) -> BoxFuture<'static, Result<(), String>> {
        let result = match serde_json::from_slice::<Value>(&body) {
            Ok(message) => {
                tracing::info!(
                    "Unhandled event: subscription={sub}, key={routing_key}, message={message}"
                );
                Ok(())
            }
            Err(err) => Err(format!("message is not JSON: {err}")),
        };
        async move { result }.boxed()
    }
}
