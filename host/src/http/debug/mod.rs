//! `POST /{name}/_debug/publish` and `/_debug/subscribe` (the original's), for both
//! eventbuses: a body with a `topic` is the MQTT form ([`mqtt`]), any other the AMQP form
//! ([`amqp`]). Clear errors, from the eventbus error's kind: 400 naming the problem for bad
//! input, 413 for a message over the limit, 409 for a broker's refusal and 503 when the bus
//! cannot be reached or is not in use, where the original answered everything with 500
//! (see "Debug routes" in `docs/brewblox-service-0.20.0.md`).

pub mod amqp;
pub mod mqtt;

use std::sync::{Arc, OnceLock};

use axum::{
    body::Body,
    http::{header, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
};
use bytes::Bytes;
use futures::future::BoxFuture;
use schemars::JsonSchema;
use serde_json::Value;

use super::{
    errors,
    json_body::{self, BadRequest},
    shared_wait::SharedWaits,
};
use crate::bus::EventBus;
use crate::eventbus::{
    Delivery, DeliveryError, ErrorKind, EventbusError, Redelivery, Sink, Subscription, Transport,
};
use crate::mqtt::MqttBus;
pub use amqp::{PublishRequest, SubscribeRequest};
pub use mqtt::{MqttPublishRequest, MqttSubscribeRequest};

/// The eventbuses the `_debug` routes reach: the AMQP form (`exchange`, `routing`) goes to
/// `amqp`, the MQTT form (`topic`) to `mqtt`; `None` when the options did not select it.
#[derive(Clone)]
pub struct DebugBuses {
    pub amqp: Option<EventBus>,
    pub mqtt: Option<MqttBus>,
}

/// The body of `POST /_debug/publish`: the AMQP form, or the MQTT form (it has a `topic`).
#[derive(Debug, JsonSchema)]
#[serde(untagged)]
pub enum PublishBody {
    Amqp(PublishRequest),
    Mqtt(MqttPublishRequest),
}

/// The body of `POST /_debug/subscribe`: the AMQP form, or the MQTT form (it has a
/// `topic`).
#[derive(Debug, JsonSchema)]
#[serde(untagged)]
pub enum SubscribeBody {
    Amqp(SubscribeRequest),
    Mqtt(MqttSubscribeRequest),
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
    match PublishBody::parse(&body) {
        Ok(PublishBody::Amqp(request)) => amqp::publish(buses.amqp, request).await,
        Ok(PublishBody::Mqtt(request)) => mqtt::publish(buses.mqtt, request).await,
        Err(bad) => bad.into_response(),
    }
}

/// Subscribes (once per exchange and routing key, or filter) and answers when the broker
/// bound it: 200 when bound (or bound already), 409 when the broker refused it (e.g. the
/// exchange exists with another type) or the cap is reached, 503 when the bus cannot be
/// reached. On an error nothing stays subscribed.
pub async fn subscribe(buses: DebugBuses, body: Body) -> Response {
    let body = match super::body::read(body).await {
        Ok(body) => body,
        Err(refused) => return refused,
    };
    match SubscribeBody::parse(&body) {
        Ok(SubscribeBody::Amqp(request)) => amqp::subscribe(buses.amqp, request).await,
        Ok(SubscribeBody::Mqtt(request)) => mqtt::subscribe(buses.mqtt, request).await,
        Err(bad) => bad.into_response(),
    }
}

/// The original's empty 200: `application/octet-stream`, no body.
pub(super) fn empty_ok() -> Response {
    let mut response = Response::new(Body::empty());
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    response
}

/// The answer for an eventbus error, from its kind: 400 naming the field for a name or topic
/// the bus cannot carry, 413 for a message over the limit, 503 when the bus cannot be
/// reached, 409 for a broker's refusal (or a subscription cancelled meanwhile).
fn bus_error(err: &impl EventbusError) -> Response {
    let status = match err.kind() {
        ErrorKind::Invalid => return BadRequest::new(err.to_string(), err.field()).into_response(),
        ErrorKind::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorKind::Unavailable | ErrorKind::Timeout => StatusCode::SERVICE_UNAVAILABLE,
        ErrorKind::Refused | ErrorKind::Cancelled => StatusCode::CONFLICT,
        ErrorKind::Nacked | ErrorKind::Other => StatusCode::INTERNAL_SERVER_ERROR,
    };
    errors::text(status, &err.to_string())
}

/// 503 for a bus the options did not select.
fn unused(why: &str) -> Response {
    errors::text(StatusCode::SERVICE_UNAVAILABLE, why)
}

/// Most subscriptions `/_debug/subscribe` keeps per bus: each is a queue on the broker and a
/// task in the host, and an HTTP client must not be able to make them without end.
pub const MAX_DEBUG_SUBSCRIPTIONS: usize = 100;

/// What `/_debug/subscribe` needs of a bus.
trait DebugBus {
    type Error: EventbusError + Clone + Send + Sync + 'static;

    fn subscriptions(&self) -> Vec<Subscription>;
    fn subscribe(
        &self,
        exchange: &str,
        routing: &str,
        sink: Arc<dyn Sink>,
    ) -> Result<Subscription, Self::Error>;
    fn ready(&self, sub: Subscription) -> BoxFuture<'static, Result<(), Self::Error>>;
}

/// The `/_debug/subscribe` subscription to `exchange` and `routing` (or an MQTT filter, with
/// an empty exchange), made if there is none and the cap allows; answers once the broker
/// bound it. Concurrent requests for one subscription share one answer (`waits`).
async fn subscribe_once<B: DebugBus>(
    bus: &B,
    waits: &SharedWaits<B::Error>,
    exchange: &str,
    routing: &str,
) -> Response {
    // Finding and adding are one step: two identical requests make one subscription.
    static ADDING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let adding = ADDING.lock().await;
    let sink = log_sink();
    let mine: Vec<Subscription> = bus
        .subscriptions()
        .into_iter()
        .filter(|sub| sub.has_sink(&sink))
        .collect();
    let found = mine
        .iter()
        .find(|sub| sub.exchange() == exchange && sub.routing() == routing);
    let (sub, added) = match found {
        Some(sub) => (sub.clone(), false),
        None if mine.len() >= MAX_DEBUG_SUBSCRIPTIONS => {
            return errors::text(
                StatusCode::CONFLICT,
                &format!(
                    "already {MAX_DEBUG_SUBSCRIPTIONS} subscriptions made with \
                     /_debug/subscribe, the most kept"
                ),
            )
        }
        None => match bus.subscribe(exchange, routing, sink) {
            Ok(sub) => (sub, true),
            Err(err) => return bus_error(&err),
        },
    };
    // Joined under the lock: no request finds the subscription before its wait exists.
    let joined = waits.join(sub.id(), added);
    drop(adding);
    match joined.answer(bus.ready(sub.clone()), || sub.cancel()).await {
        Ok(()) => empty_ok(),
        Err(err) => bus_error(&err),
    }
}

/// The one sink of every `/_debug/subscribe` subscription: it tells them from the others.
fn log_sink() -> Arc<dyn Sink> {
    static SINK: OnceLock<Arc<dyn Sink>> = OnceLock::new();
    SINK.get_or_init(|| Arc::new(LogSink)).clone()
}

/// The original's default handler: log what arrives. An AMQP message must be JSON (as the
/// original's); an MQTT one is logged as text (invalid UTF-8 replaced).
struct LogSink;

impl Sink for LogSink {
    fn deliver(&self, sub: &Subscription, topic: &str, payload: Bytes, _: Redelivery) -> Delivery {
        let result = match sub.transport() {
            Transport::Amqp => match serde_json::from_slice::<Value>(&payload) {
                Ok(message) => {
                    tracing::info!(
                        "Unhandled event: subscription={sub}, key={topic}, message={message}"
                    );
                    Ok(())
                }
                Err(err) => Err(DeliveryError::Refused(format!(
                    "message is not JSON: {err}"
                ))),
            },
            Transport::Mqtt => {
                tracing::info!(
                    "Unhandled event: subscription={sub}, topic={topic}, message={}",
                    String::from_utf8_lossy(&payload)
                );
                Ok(())
            }
        };
        Delivery::Ready(Some(result))
    }
}
