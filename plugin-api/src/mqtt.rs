//! The MQTT eventbus for plugins: publish to a topic, subscribe with a topic filter, and the
//! service's will. The host owns the connection; see [`Context::mqtt_publish`](crate::Context::mqtt_publish).

use std::{future::Future, sync::Arc};

use abi_stable::std_types::{RResult, RString, RVec};
use async_ffi::FfiFuture;
use serde::{de::DeserializeOwned, Serialize};

use crate::{abi, runtime, Error, Result, Subscription};

/// MQTT quality of service: the host supports 0 and 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum QoS {
    /// At most once: `Ok` once the message was sent.
    #[default]
    AtMostOnce,
    /// At least once: `Ok` once the broker acknowledged it.
    AtLeastOnce,
}

impl QoS {
    pub(crate) fn level(self) -> u8 {
        match self {
            QoS::AtMostOnce => 0,
            QoS::AtLeastOnce => 1,
        }
    }
}

/// A received MQTT message: its topic and its payload, readable as bytes, text or JSON.
/// Payloads are passed through untouched, as brewblox-service 2.0 and later do: an empty
/// payload or one that is not JSON still reaches the handler.
///
/// ```
/// let m = plugin_api::MqttMessage::new("brewcast/state/x", br#"{"key": "x"}"#.to_vec());
/// let v: serde_json::Value = m.json().unwrap();
/// assert_eq!(v["key"], "x");
/// assert_eq!(m.text().unwrap(), r#"{"key": "x"}"#);
/// assert!(plugin_api::MqttMessage::new("t", vec![0xff]).text().is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MqttMessage {
    topic: String,
    payload: Vec<u8>,
}

impl MqttMessage {
    pub fn new(topic: impl Into<String>, payload: Vec<u8>) -> Self {
        MqttMessage {
            topic: topic.into(),
            payload,
        }
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }

    pub fn bytes(&self) -> &[u8] {
        &self.payload
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.payload
    }

    /// The payload as UTF-8 text; an `Invalid` error when it is not.
    pub fn text(&self) -> Result<&str> {
        std::str::from_utf8(&self.payload)
            .map_err(|err| Error::bad_request(format!("MQTT payload is not UTF-8: {err}")))
    }

    /// The payload as JSON; an `Invalid` error (naming the field) when it is not.
    ///
    /// Decoded with plain `serde_json` first: tracking the path makes a decode about 40 %
    /// dearer (it copies every key), and only a failure needs it, so only a failure decodes
    /// a second time to name the field.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T> {
        if self.payload.is_empty() {
            return Err(Error::bad_request("MQTT payload is empty, not JSON"));
        }
        if let Ok(value) = serde_json::from_slice(&self.payload) {
            return Ok(value);
        }
        let mut de = serde_json::Deserializer::from_slice(&self.payload);
        serde_path_to_error::deserialize(&mut de).map_err(|err| {
            let path = err.path().to_string();
            let error = Error::bad_request(format!("MQTT payload: {}", err.inner()));
            if path == "." {
                error
            } else {
                error.field(path)
            }
        })
    }
}

/// An MQTT message handler: `async fn(Subscription, MqttMessage) -> Result<()>`. An `Err` or a
/// panic is logged by the host, and the next message is delivered.
pub trait MqttFn: Send + Sync + 'static {
    fn call(
        &self,
        sub: Subscription,
        message: MqttMessage,
    ) -> impl Future<Output = Result<()>> + Send + 'static;
}

impl<F, Fut> MqttFn for F
where
    F: Fn(Subscription, MqttMessage) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<()>> + Send + 'static,
{
    fn call(
        &self,
        sub: Subscription,
        message: MqttMessage,
    ) -> impl Future<Output = Result<()>> + Send + 'static {
        self(sub, message)
    }
}

struct MqttHandlerImpl<H> {
    handler: Arc<H>,
}

impl<H: MqttFn> abi::MessageHandler for MqttHandlerImpl<H> {
    fn on_message(
        &self,
        subscription: abi::HostSubscriptionArc,
        topic: RString,
        payload: RVec<u8>,
    ) -> FfiFuture<RResult<(), RString>> {
        let handler = Arc::clone(&self.handler);
        runtime::into_ffi(async move {
            let message = MqttMessage::new(topic.into_string(), payload.into_vec());
            handler
                .call(Subscription::new(subscription), message)
                .await
                .map_err(|err| err.to_string())
        })
    }
}

pub(crate) fn mqtt_handler_box<H: MqttFn>(handler: H) -> abi::MessageHandlerBox {
    abi::MessageHandler_TO::from_value(
        MqttHandlerImpl {
            handler: Arc::new(handler),
        },
        abi_stable::sabi_trait::TD_Opaque,
    )
}

/// JSON for an MQTT payload.
pub(crate) fn json_payload<T: Serialize + ?Sized>(message: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(message)
        .map_err(|err| Error::bad_request(format!("message cannot be JSON: {err}")))
}

pub(crate) fn ffi(topic: &str, payload: Vec<u8>, qos: QoS, retain: bool) -> abi::FfiMqttPublish {
    abi::FfiMqttPublish {
        topic: topic.into(),
        payload: payload.into(),
        qos: qos.level(),
        retain,
    }
}
