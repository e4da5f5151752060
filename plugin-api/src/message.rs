//! A message from the eventbus, as a subscription's handler receives it.

use abi_stable::std_types::{RString, RVec};
use serde::de::DeserializeOwned;

use crate::{abi, Error, Result, Subscription};

/// A received message: where it was published (the AMQP routing key or the MQTT topic) and
/// its payload, readable as bytes, text or JSON. Payloads are passed through untouched, as
/// brewblox-service 2.0 and later do: an empty payload or one that is not JSON still
/// reaches the handler, and only an extractor that needs JSON ([`Json`](crate::Json))
/// turns it down — with an error the host logs, before the next message.
///
/// Handlers usually take its parts with extractors ([`Topic`](crate::Topic),
/// [`Json`](crate::Json), `String`, `Vec<u8>`); taking the whole `Message` as the last
/// argument gives the raw form.
///
/// ```
/// let m = plugin_api::Message::new("brewcast/state/x", br#"{"key": "x"}"#.to_vec());
/// let v: serde_json::Value = m.json().unwrap();
/// assert_eq!(v["key"], "x");
/// assert_eq!(m.text().unwrap(), r#"{"key": "x"}"#);
/// assert!(plugin_api::Message::new("t", vec![0xff]).text().is_err());
/// ```
#[derive(Debug, Clone)]
pub struct Message {
    // As the host handed them over: taking them into a `String` and a `Vec` would copy both,
    // since memory from the other library's allocator is never adopted.
    topic: RString,
    payload: RVec<u8>,
    subscription: Option<Subscription>,
    redelivered: bool,
    delivery_count: Option<u32>,
}

impl Message {
    /// A message on `topic`, for tests.
    ///
    /// ```
    /// let m = plugin_api::Message::new("brewcast/history/x", b"{}".to_vec());
    /// assert_eq!(m.topic(), "brewcast/history/x");
    /// ```
    pub fn new(topic: impl Into<String>, payload: Vec<u8>) -> Self {
        Message {
            topic: topic.into().into(),
            payload: payload.into(),
            subscription: None,
            redelivered: false,
            delivery_count: None,
        }
    }

    /// This message as a redelivery, for tests: [`redelivered`](Message::redelivered) is
    /// true, and [`delivery_count`](Message::delivery_count) is `count`.
    ///
    /// ```
    /// let m = plugin_api::Message::new("t", vec![]).redelivery(Some(1));
    /// assert!(m.redelivered());
    /// assert_eq!(m.delivery_count(), Some(1));
    /// ```
    pub fn redelivery(mut self, count: Option<u32>) -> Self {
        self.redelivered = true;
        self.delivery_count = count;
        self
    }

    pub(crate) fn received(message: abi::FfiMessage, subscription: Subscription) -> Self {
        Message {
            topic: message.routing_key,
            payload: message.body,
            subscription: Some(subscription),
            redelivered: message.redelivered,
            delivery_count: message.delivery_count.into(),
        }
    }

    /// Whether the broker delivered this message before without an acknowledgement — to an
    /// instance that died or stopped while handling it — so that it may have been handled
    /// (in part) already. Only [shared and durable](crate::Shared) subscriptions, which
    /// acknowledge after the handler, see redeliveries.
    ///
    /// ```
    /// assert!(!plugin_api::Message::new("t", vec![]).redelivered());
    /// ```
    pub fn redelivered(&self) -> bool {
        self.redelivered
    }

    /// How many times the broker delivered this message before, where it counts them (an
    /// AMQP quorum queue's `x-delivery-count`, on a redelivery); `None` otherwise.
    ///
    /// ```
    /// assert_eq!(plugin_api::Message::new("t", vec![]).delivery_count(), None);
    /// ```
    pub fn delivery_count(&self) -> Option<u32> {
        self.delivery_count
    }

    /// The AMQP routing key or the MQTT topic it was published with.
    ///
    /// ```
    /// assert_eq!(plugin_api::Message::new("a.b", vec![]).topic(), "a.b");
    /// ```
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The raw payload.
    ///
    /// ```
    /// assert_eq!(plugin_api::Message::new("t", vec![1]).payload(), [1]);
    /// ```
    pub fn payload(&self) -> &[u8] {
        &self.payload
    }

    /// The payload, taken out.
    ///
    /// ```
    /// assert_eq!(plugin_api::Message::new("t", vec![1]).into_payload(), vec![1]);
    /// ```
    pub fn into_payload(self) -> Vec<u8> {
        self.payload.into_vec()
    }

    /// The subscription it arrived on (`None` for a message made with [`Message::new`]).
    ///
    /// ```
    /// assert!(plugin_api::Message::new("t", vec![]).subscription().is_none());
    /// ```
    pub fn subscription(&self) -> Option<&Subscription> {
        self.subscription.as_ref()
    }

    /// The payload as UTF-8 text; an `Invalid` error when it is not.
    ///
    /// ```
    /// assert_eq!(plugin_api::Message::new("t", b"hi".to_vec()).text().unwrap(), "hi");
    /// ```
    pub fn text(&self) -> Result<&str> {
        std::str::from_utf8(&self.payload)
            .map_err(|err| Error::invalid(format!("payload is not UTF-8: {err}")))
    }

    /// The payload as JSON; an `Invalid` error (naming the field) when it is not.
    ///
    /// ```
    /// let m = plugin_api::Message::new("t", br#"{"n": "x"}"#.to_vec());
    /// #[derive(serde::Deserialize, Debug)]
    /// struct N { n: u32 }
    /// assert_eq!(m.json::<N>().unwrap_err().field_name(), Some("n"));
    /// ```
    pub fn json<T: DeserializeOwned>(&self) -> Result<T> {
        if self.payload.is_empty() {
            return Err(Error::invalid("empty message body, not JSON"));
        }
        crate::decode::message_json(&self.payload)
    }
}
