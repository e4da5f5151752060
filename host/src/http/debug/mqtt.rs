//! The MQTT form of `POST /{name}/_debug/publish {"topic", "message", "retain"?}` and
//! `/_debug/subscribe {"topic"}`: the message is published as its JSON text (QoS 1), and a
//! subscription (QoS 1) logs what arrives.

use std::sync::{Arc, OnceLock};

use axum::response::Response;
use futures::{future::BoxFuture, FutureExt};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;

use super::{bus_error, empty_ok, subscribe_once, unused, DebugBus};
use crate::eventbus::{Sink, Subscription};
use crate::http::shared_wait::SharedWaits;
use crate::mqtt::{MqttBus, MqttError, QoS};
use crate::plugins::bridge::MQTT_NOT_IN_USE;

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

/// Publishes `message` as JSON to `topic`, retained if asked.
pub(super) async fn publish(mqtt: Option<MqttBus>, request: MqttPublishRequest) -> Response {
    let Some(mqtt) = mqtt else {
        return unused(MQTT_NOT_IN_USE);
    };
    let payload = request.message.to_string().into_bytes();
    let retain = request.retain.unwrap_or(false);
    match mqtt
        .publish(&request.topic, payload, QoS::AtLeastOnce, retain)
        .await
    {
        Ok(()) => empty_ok(),
        Err(err) => bus_error(&err),
    }
}

pub(super) async fn subscribe(mqtt: Option<MqttBus>, request: MqttSubscribeRequest) -> Response {
    let Some(mqtt) = mqtt else {
        return unused(MQTT_NOT_IN_USE);
    };
    static WAITS: OnceLock<SharedWaits<MqttError>> = OnceLock::new();
    let waits = WAITS.get_or_init(SharedWaits::new);
    subscribe_once(&mqtt, waits, "", &request.topic).await
}

impl DebugBus for MqttBus {
    type Error = MqttError;

    fn subscriptions(&self) -> Vec<Subscription> {
        MqttBus::subscriptions(self)
    }

    fn subscribe(
        &self,
        _exchange: &str,
        filter: &str,
        sink: Arc<dyn Sink>,
    ) -> Result<Subscription, MqttError> {
        MqttBus::subscribe(self, filter, QoS::AtLeastOnce, sink)
    }

    fn ready(&self, sub: Subscription) -> BoxFuture<'static, Result<(), MqttError>> {
        let bus = self.clone();
        async move { MqttBus::ready(&bus, &sub).await }.boxed()
    }
}
