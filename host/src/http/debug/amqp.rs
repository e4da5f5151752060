//! The AMQP form of `POST /{name}/_debug/publish {"exchange", "routing", "message"}` and
//! `/_debug/subscribe {"exchange", "routing"}`: a topic exchange, the message as JSON.

use std::sync::{Arc, OnceLock};

use axum::response::{IntoResponse, Response};
use futures::{future::BoxFuture, FutureExt};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;

use super::{bus_error, empty_ok, subscribe_once, unused, DebugBus};
use crate::bus::{BusError, EventBus, ExchangeKind};
use crate::eventbus::{Sink, Subscription};
use crate::http::{json_body::BadRequest, shared_wait::SharedWaits};
use crate::plugins::bridge::AMQP_NOT_IN_USE;

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

/// The AMQP form of `POST /_debug/subscribe`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct SubscribeRequest {
    /// Exchange to subscribe to (declared as a topic exchange); not empty.
    pub exchange: String,
    /// Routing pattern (topic wildcards `*` and `#`).
    pub routing: String,
}

pub(super) async fn publish(bus: Option<EventBus>, request: PublishRequest) -> Response {
    let Some(bus) = bus else {
        return unused(AMQP_NOT_IN_USE);
    };
    let payload = match serde_json::to_vec(&request.message) {
        Ok(payload) => payload,
        Err(err) => {
            return BadRequest::new(format!("cannot encode message: {err}"), Some("message"))
                .into_response()
        }
    };
    let topic = ExchangeKind::Topic;
    match bus
        .publish(&request.exchange, &request.routing, payload, topic, true)
        .await
    {
        Ok(()) => empty_ok(),
        Err(err) => bus_error(&err),
    }
}

pub(super) async fn subscribe(bus: Option<EventBus>, request: SubscribeRequest) -> Response {
    let Some(bus) = bus else {
        return unused(AMQP_NOT_IN_USE);
    };
    if request.exchange.is_empty() {
        return BadRequest::new("exchange name must not be empty", Some("exchange"))
            .into_response();
    }
    static WAITS: OnceLock<SharedWaits<BusError>> = OnceLock::new();
    let waits = WAITS.get_or_init(SharedWaits::new);
    subscribe_once(&bus, waits, &request.exchange, &request.routing).await
}

impl DebugBus for EventBus {
    type Error = BusError;

    fn subscriptions(&self) -> Vec<Subscription> {
        EventBus::subscriptions(self)
    }

    fn subscribe(
        &self,
        exchange: &str,
        routing: &str,
        sink: Arc<dyn Sink>,
    ) -> Result<Subscription, BusError> {
        EventBus::subscribe(self, exchange, routing, ExchangeKind::Topic, sink)
    }

    fn ready(&self, sub: Subscription) -> BoxFuture<'static, Result<(), BusError>> {
        let bus = self.clone();
        async move { EventBus::ready(&bus, &sub).await }.boxed()
    }
}
