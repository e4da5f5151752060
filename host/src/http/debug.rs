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
};
use futures::{future::BoxFuture, FutureExt};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;

use super::{
    debug_mqtt::{MqttPublishRequest, MqttSubscribeRequest},
    errors,
    json_body::{self, BadRequest},
    shared_wait::{Joined, SharedWaits},
};
use crate::bus::{BusError, EventBus, ExchangeKind, MessageSink, Subscription};
use crate::delivery::{Delivered, DeliveryError};

/// The original's empty 200: `application/octet-stream`, no body.
pub(super) fn empty_ok() -> Response {
    let mut response = Response::new(Body::empty());
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    response
}

/// The body of `POST /_debug/publish`: the AMQP form, or the MQTT form (it has a `topic`).
#[derive(Debug, JsonSchema)]
#[serde(untagged)]
pub enum PublishBody {
    Amqp(PublishRequest),
    Mqtt(MqttPublishRequest),
}

/// The AMQP form of `POST /_debug/publish`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct PublishRequest {
    /// Exchange to publish to (declared as a topic exchange).
    pub exchange: String,
    /// Routing key.
    pub routing: String,
    /// Any JSON value: the message body.
    pub message: Value,
}

/// The body of `POST /_debug/subscribe`: the AMQP form, or the MQTT form (it has a
/// `topic`).
#[derive(Debug, JsonSchema)]
#[serde(untagged)]
pub enum SubscribeBody {
    Amqp(SubscribeRequest),
    Mqtt(MqttSubscribeRequest),
}

/// The AMQP form of `POST /_debug/subscribe`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct SubscribeRequest {
    /// Exchange to subscribe to (declared as a topic exchange); not empty.
    pub exchange: String,
    /// Routing pattern (topic wildcards `*` and `#`).
    pub routing: String,
}

/// Whether the body object is the MQTT form.
fn is_mqtt_form(object: &serde_json::Map<String, Value>) -> bool {
    object.contains_key("topic")
}

impl PublishBody {
    pub fn parse(body: &[u8]) -> Result<Self, BadRequest> {
        let object = json_body::object(body)?;
        Ok(if is_mqtt_form(&object) {
            PublishBody::Mqtt(json_body::read(object)?)
        } else {
            PublishBody::Amqp(json_body::read(object)?)
        })
    }
}

impl SubscribeBody {
    pub fn parse(body: &[u8]) -> Result<Self, BadRequest> {
        let object = json_body::object(body)?;
        Ok(if is_mqtt_form(&object) {
            SubscribeBody::Mqtt(json_body::read(object)?)
        } else {
            SubscribeBody::Amqp(json_body::read(object)?)
        })
    }
}

/// `body` is read here, not by axum's `Bytes` extractor: that one has a 2 MiB limit of its
/// own, below what `--max-body-size` may allow.
pub async fn publish(buses: DebugBuses, body: Body) -> Response {
    let body = match super::body::read(body).await {
        Ok(body) => body,
        Err(refused) => return refused,
    };
    let request = match PublishBody::parse(&body) {
        Ok(PublishBody::Amqp(request)) => request,
        Ok(PublishBody::Mqtt(request)) => {
            return super::debug_mqtt::publish(buses.mqtt, request).await
        }
        Err(bad) => return bad.into_response(),
    };
    let Some(bus) = buses.amqp else {
        return amqp_unused();
    };
    let payload = match serde_json::to_vec(&request.message) {
        Ok(payload) => payload,
        Err(err) => {
            return BadRequest::new(format!("cannot encode message: {err}"), Some("message"))
                .into_response()
        }
    };
    match bus
        .publish(
            &request.exchange,
            &request.routing,
            payload,
            ExchangeKind::Topic,
            true,
        )
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
            BadRequest::new(err.to_string(), Some(field)).into_response()
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
    let request = match SubscribeBody::parse(&body) {
        Ok(SubscribeBody::Amqp(request)) => request,
        Ok(SubscribeBody::Mqtt(request)) => {
            return super::debug_mqtt::subscribe(buses.mqtt, request).await
        }
        Err(bad) => return bad.into_response(),
    };
    let Some(bus) = buses.amqp else {
        return amqp_unused();
    };
    if request.exchange.is_empty() {
        return BadRequest::new("exchange name must not be empty", Some("exchange"))
            .into_response();
    }
    let (sub, joined) = match find_or_add(&bus, &request.exchange, &request.routing).await {
        Ok(found) => found,
        Err(response) => return response,
    };
    match joined.answer(bus.ready(&sub), || sub.cancel()).await {
        Ok(()) => empty_ok(),
        Err(err) => bus_error(err),
    }
}

/// The waits of `/_debug/subscribe`'s AMQP subscriptions.
fn waits() -> &'static SharedWaits<BusError> {
    static WAITS: OnceLock<SharedWaits<BusError>> = OnceLock::new();
    WAITS.get_or_init(SharedWaits::new)
}

/// The `/_debug/subscribe` subscription to `exchange` and `routing`, made if there is none
/// (and the cap allows), and the wait for it this request joined.
async fn find_or_add(
    bus: &EventBus,
    exchange: &str,
    routing: &str,
) -> Result<(Subscription, Joined<'static, BusError>), Response> {
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
        return Ok((sub.clone(), waits().join(sub.id(), false)));
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
        Ok(sub) => {
            let joined = waits().join(sub.id(), true);
            Ok((sub, joined))
        }
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
    ) -> BoxFuture<'static, Delivered> {
        let result = match serde_json::from_slice::<Value>(&body) {
            Ok(message) => {
                tracing::info!(
                    "Unhandled event: subscription={sub}, key={routing_key}, message={message}"
                );
                Ok(())
            }
            Err(err) => Err(DeliveryError::Refused(format!(
                "message is not JSON: {err}"
            ))),
        };
        async move { result }.boxed()
    }
}
