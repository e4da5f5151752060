//! `POST /{name}/_debug/publish` and `/_debug/subscribe` (the original's), with clear errors:
//! 400 naming the problem for bad input and 503 when the bus cannot be reached, where the
//! original answered everything with 500 (quirk 4 in `docs/brewblox-service-0.20.0.md`).

use std::sync::Arc;

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
fn empty_ok() -> Response {
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
pub async fn publish(bus: EventBus, body: Body) -> Response {
    let body = match super::body::read(body).await {
        Ok(body) => body,
        Err(refused) => return refused,
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
        Err(err) if err.is_unavailable() => {
            errors::text(StatusCode::SERVICE_UNAVAILABLE, &err.to_string())
        }
        Err(err @ BusError::TooLarge { .. }) => {
            errors::text(StatusCode::PAYLOAD_TOO_LARGE, &err.to_string())
        }
        Err(err) => errors::text(StatusCode::INTERNAL_SERVER_ERROR, &err.to_string()),
    }
}

pub async fn subscribe(bus: EventBus, body: Body) -> Response {
    let body = match super::body::read(body).await {
        Ok(body) => body,
        Err(refused) => return refused,
    };
    let (fields, _) = match parse(&body, &["exchange", "routing"], false) {
        Ok(parsed) => parsed,
        Err(bad) => return bad.into_response(),
    };
    if fields[0].is_empty() {
        return bad_request("exchange name must not be empty".into(), Some("exchange"))
            .into_response();
    }
    bus.subscribe(
        &fields[0],
        &fields[1],
        ExchangeKind::Topic,
        Arc::new(LogSink),
    );
    empty_ok()
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
