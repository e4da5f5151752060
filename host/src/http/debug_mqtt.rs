//! The MQTT form of `POST /{name}/_debug/publish {"topic", "message", "retain"?}` and
//! `/_debug/subscribe {"topic"}`: the message is published as its JSON text (QoS 1), and a
//! subscription logs what arrives. 400 naming the field for bad input, 503 when the service
//! does not use MQTT or the broker is down, 409 when the broker refuses a subscription.

use std::sync::{Arc, OnceLock};

use axum::{
    http::StatusCode,
    response::{IntoResponse, Response},
};
use futures::{future::BoxFuture, FutureExt};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;

use super::{errors, json_body::BadRequest, shared_wait::SharedWaits};
use crate::mqtt::{MqttBus, MqttError, MqttMessage, MqttSink, MqttSubscription, QoS};

/// The MQTT form of `POST /_debug/publish`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct MqttPublishRequest {
    /// Topic to publish to (no wildcards).
    pub topic: String,
    /// Any JSON value, published as its JSON text (QoS 1).
    pub message: Value,
    /// Whether the broker retains the message; false when absent or null.
    #[serde(default)]
    pub retain: Option<bool>,
}

/// The MQTT form of `POST /_debug/subscribe`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct MqttSubscribeRequest {
    /// Topic filter (wildcards `+` and `#`).
    pub topic: String,
}

fn bad(message: String, field: &str) -> Response {
    BadRequest::new(message, Some(field)).into_response()
}

fn unused() -> Response {
    errors::text(
        StatusCode::SERVICE_UNAVAILABLE,
        "the MQTT eventbus is not in use: start the service with --mqtt-* options",
    )
}

fn mqtt_error(err: MqttError) -> Response {
    match err {
        MqttError::Invalid(message) => bad(message, "topic"),
        MqttError::Rejected(_) => errors::text(StatusCode::CONFLICT, &err.to_string()),
        MqttError::Unavailable(_) | MqttError::ShuttingDown | MqttError::Timeout => {
            errors::text(StatusCode::SERVICE_UNAVAILABLE, &err.to_string())
        }
        MqttError::Cancelled => errors::text(StatusCode::CONFLICT, &err.to_string()),
    }
}

/// Publishes `message` as JSON to `topic`, retained if asked.
pub async fn publish(mqtt: Option<MqttBus>, request: MqttPublishRequest) -> Response {
    let Some(mqtt) = mqtt else {
        return unused();
    };
    let payload = request.message.to_string().into_bytes();
    let retain = request.retain.unwrap_or(false);
    match mqtt
        .publish(&request.topic, payload, QoS::AtLeastOnce, retain)
        .await
    {
        Ok(()) => super::debug::empty_ok(),
        Err(MqttError::Invalid(message)) if message.contains("bytes is larger") => {
            errors::text(StatusCode::PAYLOAD_TOO_LARGE, &message)
        }
        Err(err) => mqtt_error(err),
    }
}

/// Subscribes (once per filter, at most [`super::debug::MAX_DEBUG_SUBSCRIPTIONS`]) and
/// answers once the broker acknowledged it; on an error nothing stays subscribed.
pub async fn subscribe(mqtt: Option<MqttBus>, request: MqttSubscribeRequest) -> Response {
    let filter = request.topic;
    let Some(mqtt) = mqtt else {
        return unused();
    };
    static ADDING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let adding = ADDING.lock().await;
    let mine: Vec<MqttSubscription> = mqtt
        .subscriptions()
        .into_iter()
        .filter(|sub| sub.owner() == Some(DEBUG_OWNER))
        .collect();
    let (sub, added) = match mine.iter().find(|sub| sub.filter() == filter) {
        Some(sub) => (sub.clone(), false),
        None if mine.len() >= super::debug::MAX_DEBUG_SUBSCRIPTIONS => {
            return errors::text(
                StatusCode::CONFLICT,
                "already 100 subscriptions made with /_debug/subscribe, the most kept",
            )
        }
        None => match mqtt.subscribe(&filter, QoS::AtLeastOnce, log_sink()) {
            Ok(sub) => (sub, true),
            Err(err) => return mqtt_error(err),
        },
    };
    // Joined under the lock: no request finds the subscription before its wait exists.
    let joined = waits().join(sub.id(), added);
    drop(adding);
    match joined.answer(mqtt.ready(&sub), || sub.cancel()).await {
        Ok(()) => super::debug::empty_ok(),
        Err(err) => mqtt_error(err),
    }
}

/// The waits of `/_debug/subscribe`'s MQTT subscriptions: concurrent requests for one filter
/// share one answer.
fn waits() -> &'static SharedWaits<MqttError> {
    static WAITS: OnceLock<SharedWaits<MqttError>> = OnceLock::new();
    WAITS.get_or_init(SharedWaits::new)
}

/// The owner name that marks `/_debug/subscribe`'s subscriptions.
pub(crate) const DEBUG_OWNER: &str = "_debug";

fn log_sink() -> Arc<dyn MqttSink> {
    static SINK: OnceLock<Arc<dyn MqttSink>> = OnceLock::new();
    SINK.get_or_init(|| Arc::new(LogSink)).clone()
}

/// Logs what arrives, as the original's default handler did; any payload is logged, as
/// text (invalid UTF-8 replaced).
struct LogSink;

impl MqttSink for LogSink {
    fn deliver(
        &self,
        sub: &MqttSubscription,
        message: MqttMessage,
    ) -> BoxFuture<'static, crate::delivery::Delivered> {
        tracing::info!(
            "Unhandled event: subscription={sub}, topic={}, message={}",
            message.topic,
            String::from_utf8_lossy(&message.payload)
        );
        async { Ok(()) }.boxed()
    }

    fn owner(&self) -> Option<&str> {
        Some(DEBUG_OWNER)
    }
}
