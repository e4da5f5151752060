//! What a test sees of the eventbuses: the plugin's publishes and subscriptions, and
//! messages delivered to its handlers.

use std::sync::atomic::Ordering;

use serde::{de::DeserializeOwned, Serialize};

use crate::{abi::FfiMqttPublish, Plugin, QoS, Result};

use super::{host::lock, TestHost};

/// A message the plugin published to an AMQP exchange.
///
/// ```
/// # use plugin_api::{testing::TestHost, Context, Plugin, Result};
/// #[derive(Default)]
/// struct Announcer;
/// impl Plugin for Announcer {
///     async fn startup(self: std::sync::Arc<Self>, ctx: &Context) -> Result<()> {
///         ctx.publish("brewcast", "fermenter", &serde_json::json!({ "temp": 20.5 })).await
///     }
/// }
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<()> {
/// let host = TestHost::start(Announcer).await?;
/// let [message] = host.published().try_into().unwrap();
/// assert_eq!((message.exchange.as_str(), message.routing.as_str()), ("brewcast", "fermenter"));
/// assert_eq!(message.json::<serde_json::Value>()?["temp"], 20.5);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Published {
    pub exchange: String,
    pub routing: String,
    pub body: Vec<u8>,
    /// `topic`, `fanout` or `direct`.
    pub exchange_type: String,
    /// Whether the plugin asked for the exchange to be declared first.
    pub declare_exchange: bool,
}

impl Published {
    /// The body decoded as JSON.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T> {
        crate::decode::json(&self.body)
    }
}

/// A message the plugin published on MQTT, or its will.
///
/// ```
/// # use plugin_api::{testing::TestHost, Context, Plugin, QoS, Result};
/// #[derive(Default)]
/// struct State;
/// impl Plugin for State {
///     async fn startup(self: std::sync::Arc<Self>, ctx: &Context) -> Result<()> {
///         ctx.mqtt_set_will("brewcast/state/me", "", true)?;
///         ctx.mqtt_publish_json("brewcast/state/me", &1, QoS::AtLeastOnce, true).await
///     }
/// }
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<()> {
/// let host = TestHost::start(State).await?;
/// let [state] = host.mqtt_published().try_into().unwrap();
/// assert_eq!((state.topic.as_str(), state.qos, state.retain), ("brewcast/state/me", QoS::AtLeastOnce, true));
/// assert_eq!(state.json::<i32>()?, 1);
/// assert_eq!(host.mqtt_will().map(|will| will.payload), Some(Vec::new()));
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct MqttPublished {
    pub topic: String,
    pub payload: Vec<u8>,
    pub qos: QoS,
    pub retain: bool,
}

impl MqttPublished {
    /// The payload decoded as JSON.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T> {
        crate::decode::json(&self.payload)
    }

    pub(super) fn from_ffi(message: FfiMqttPublish) -> Self {
        MqttPublished {
            topic: message.topic.into_string(),
            payload: message.payload.into_vec(),
            qos: if message.qos == 0 {
                QoS::AtMostOnce
            } else {
                QoS::AtLeastOnce
            },
            retain: message.retain,
        }
    }
}

/// A subscription the plugin made, as [`TestHost::subscriptions`] lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TestSubscription {
    /// The exchange; empty for MQTT.
    pub exchange: String,
    /// `topic`, `fanout`, `direct`, or `mqtt` for an MQTT subscription.
    pub exchange_type: String,
    /// The binding key, or the MQTT topic filter as subscribed (a shared one's
    /// `$share/<group>/<filter>`).
    pub routing: String,
    /// The named queue a shared or durable AMQP subscription consumes
    /// ([`abi::sharing::amqp_queue`](crate::abi::sharing::amqp_queue)); `None` for a plain
    /// one and for MQTT.
    pub queue: Option<String>,
    /// The client id of the persistent session a durable MQTT subscription is made on
    /// ([`abi::sharing::mqtt_session_id`](crate::abi::sharing::mqtt_session_id)); `None`
    /// otherwise.
    pub session: Option<String>,
    pub cancelled: bool,
}

/// JSON for a message a test delivers.
fn json_bytes<T: Serialize + ?Sized>(message: &T) -> Vec<u8> {
    serde_json::to_vec(message)
        .unwrap_or_else(|err| panic!("the test's message cannot be JSON: {err}"))
}

impl<P: Plugin> TestHost<P> {
    /// Delivers `message` as JSON to every AMQP subscription of the plugin that a message
    /// published to `exchange` with `routing_key` reaches (topic bindings with `*` and `#`,
    /// fanout, direct), one after the other. Returns each handler's result, in the order the
    /// subscriptions were made: empty when none matched.
    ///
    /// # Panics
    ///
    /// When `message` cannot be JSON (a map with non-text keys): a mistake in the test.
    ///
    /// ```
    /// # use plugin_api::{testing::TestHost, Context, Error, Json, Plugin, Result};
    /// #[derive(Default)]
    /// struct Listener;
    /// impl Plugin for Listener {
    ///     async fn startup(self: std::sync::Arc<Self>, ctx: &Context) -> Result<()> {
    ///         ctx.subscribe("brewcast", "fermenter.#", |Json(message): Json<serde_json::Value>| async move {
    ///             match message.as_f64() {
    ///                 Some(_) => Ok(()),
    ///                 None => Err(Error::msg("not a temperature")),
    ///             }
    ///         })?;
    ///         Ok(())
    ///     }
    /// }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<()> {
    /// let host = TestHost::start(Listener).await?;
    /// let results = host.deliver("brewcast", "fermenter.temp", &20.5).await;
    /// assert!(matches!(results.as_slice(), [Ok(())]));
    /// let results = host.deliver("brewcast", "fermenter.temp", &"hot").await;
    /// assert_eq!(results[0].as_ref().unwrap_err().message(), "not a temperature");
    /// assert!(host.deliver("brewcast", "kettle.temp", &1).await.is_empty());
    /// # Ok(()) }
    /// ```
    pub async fn deliver<T: Serialize + ?Sized>(
        &self,
        exchange: &str,
        routing_key: &str,
        message: &T,
    ) -> Vec<Result<()>> {
        self.deliver_bytes(exchange, routing_key, json_bytes(message))
            .await
    }

    /// [`deliver`](TestHost::deliver) with a raw body, e.g. one that is not JSON.
    pub async fn deliver_bytes(
        &self,
        exchange: &str,
        routing_key: &str,
        body: impl Into<Vec<u8>>,
    ) -> Vec<Result<()>> {
        let bus = &self.state.bus;
        bus.deliver(false, exchange, routing_key, body.into()).await
    }

    /// Delivers `payload` to every MQTT subscription whose filter matches `topic` (`+`, `#`,
    /// `a/b/#` matching `a/b`), one after the other; returns each handler's result.
    ///
    /// ```
    /// # use plugin_api::{testing::TestHost, Context, Message, Plugin, Result};
    /// #[derive(Default)]
    /// struct Watcher;
    /// impl Plugin for Watcher {
    ///     async fn startup(self: std::sync::Arc<Self>, ctx: &Context) -> Result<()> {
    ///         ctx.mqtt_subscribe("brewcast/state/#", |message: Message| async move {
    ///             message.json::<serde_json::Value>().map(|_| ())
    ///         })?;
    ///         Ok(())
    ///     }
    /// }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<()> {
    /// let host = TestHost::start(Watcher).await?;
    /// assert!(host.mqtt_deliver("brewcast/state", "{}").await[0].is_ok());
    /// assert!(host.mqtt_deliver("brewcast/state/x", "not json").await[0].is_err());
    /// assert!(host.mqtt_deliver("brewcast/history/x", "{}").await.is_empty());
    /// # Ok(()) }
    /// ```
    pub async fn mqtt_deliver(&self, topic: &str, payload: impl Into<Vec<u8>>) -> Vec<Result<()>> {
        self.state
            .bus
            .deliver(true, "", topic, payload.into())
            .await
    }

    /// [`mqtt_deliver`](TestHost::mqtt_deliver) with `message` as JSON.
    ///
    /// # Panics
    ///
    /// When `message` cannot be JSON: a mistake in the test.
    pub async fn mqtt_deliver_json<T: Serialize + ?Sized>(
        &self,
        topic: &str,
        message: &T,
    ) -> Vec<Result<()>> {
        self.mqtt_deliver(topic, json_bytes(message)).await
    }

    /// What the plugin declared it publishes ([`Context::publisher`](crate::Context::publisher)
    /// and [`Context::declare_publish`](crate::Context::declare_publish)), in the order
    /// declared: the channels of the service's AsyncAPI document, to compare with what
    /// [`published`](TestHost::published) and [`mqtt_published`](TestHost::mqtt_published)
    /// show was sent.
    pub fn declared_publications(&self) -> Vec<crate::abi::asyncapi::Publication> {
        lock(&self.state.publications).clone()
    }

    /// Everything the plugin published to AMQP exchanges so far, oldest first.
    pub fn published(&self) -> Vec<Published> {
        lock(&self.state.bus.published).clone()
    }

    /// Like [`published`](TestHost::published), emptying the record.
    pub fn take_published(&self) -> Vec<Published> {
        std::mem::take(&mut *lock(&self.state.bus.published))
    }

    /// Everything the plugin published on MQTT so far, oldest first (and its will, once a
    /// [`stop`](TestHost::stop) published it).
    pub fn mqtt_published(&self) -> Vec<MqttPublished> {
        lock(&self.state.bus.mqtt_published).clone()
    }

    /// Like [`mqtt_published`](TestHost::mqtt_published), emptying the record.
    pub fn take_mqtt_published(&self) -> Vec<MqttPublished> {
        std::mem::take(&mut *lock(&self.state.bus.mqtt_published))
    }

    /// Waits until the plugin has published (to AMQP) a message for which `wanted` is true
    /// — already, or later from a task or handler — and returns the first such; a
    /// [`Timeout`](crate::ErrorKind::Timeout) error listing what was published if none comes
    /// within `timeout`. Instead of sleeping in a test and hoping the task ran.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use plugin_api::{testing::TestHost, Context, Plugin, Result};
    /// #[derive(Default)]
    /// struct Later;
    /// impl Plugin for Later {
    ///     async fn startup(self: std::sync::Arc<Self>, ctx: &Context) -> Result<()> {
    ///         let me = ctx.clone();
    ///         ctx.spawn("announce", async move {
    ///             me.serving().await?;
    ///             tokio::time::sleep(Duration::from_millis(20)).await;
    ///             me.publish("brewcast", "later", &"up").await
    ///         });
    ///         Ok(())
    ///     }
    /// }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<()> {
    /// let host = TestHost::start(Later).await?;
    /// let message = host
    ///     .wait_published(Duration::from_secs(5), |m| m.routing == "later")
    ///     .await?;
    /// assert_eq!(message.json::<String>()?, "up");
    /// # Ok(()) }
    /// ```
    pub async fn wait_published(
        &self,
        timeout: std::time::Duration,
        wanted: impl Fn(&Published) -> bool,
    ) -> Result<Published> {
        self.wait_for(timeout, || {
            lock(&self.state.bus.published)
                .iter()
                .find(|m| wanted(m))
                .cloned()
        })
        .await
        .map_err(|()| {
            let seen: Vec<String> = self
                .published()
                .iter()
                .map(|m| format!("{} {}", m.exchange, m.routing))
                .collect();
            timed_out(timeout, &seen)
        })
    }

    /// [`wait_published`](TestHost::wait_published) for MQTT: the first message published
    /// on MQTT for which `wanted` is true.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use plugin_api::{testing::TestHost, Context, Plugin, QoS, Result};
    /// #[derive(Default)]
    /// struct Later;
    /// impl Plugin for Later {
    ///     async fn startup(self: std::sync::Arc<Self>, ctx: &Context) -> Result<()> {
    ///         let me = ctx.clone();
    ///         ctx.spawn("state", async move {
    ///             me.mqtt_publish("brewcast/state/me", "{}", QoS::AtLeastOnce, true).await
    ///         });
    ///         Ok(())
    ///     }
    /// }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<()> {
    /// let host = TestHost::builder(Later).arg("mqtt", true).start().await?;
    /// let state = host
    ///     .wait_mqtt_published(Duration::from_secs(5), |m| m.topic == "brewcast/state/me")
    ///     .await?;
    /// assert!(state.retain);
    /// # Ok(()) }
    /// ```
    pub async fn wait_mqtt_published(
        &self,
        timeout: std::time::Duration,
        wanted: impl Fn(&MqttPublished) -> bool,
    ) -> Result<MqttPublished> {
        self.wait_for(timeout, || {
            lock(&self.state.bus.mqtt_published)
                .iter()
                .find(|m| wanted(m))
                .cloned()
        })
        .await
        .map_err(|()| {
            let seen: Vec<String> = self.mqtt_published().into_iter().map(|m| m.topic).collect();
            timed_out(timeout, &seen)
        })
    }

    /// Checks `found` after every publish until it finds something, at most `timeout`.
    async fn wait_for<T>(
        &self,
        timeout: std::time::Duration,
        found: impl Fn() -> Option<T>,
    ) -> std::result::Result<T, ()> {
        let mut publishes = self.state.bus.publishes.subscribe();
        let wait = async {
            loop {
                publishes.borrow_and_update();
                if let Some(found) = found() {
                    return found;
                }
                if publishes.changed().await.is_err() {
                    // The bus lives as long as the host: cannot happen while we hold it.
                    std::future::pending::<()>().await;
                }
            }
        };
        tokio::time::timeout(timeout, wait).await.map_err(|_| ())
    }

    /// The MQTT will the plugin set, if any (`qos` is always `AtLeastOnce`).
    pub fn mqtt_will(&self) -> Option<MqttPublished> {
        lock(&self.state.bus.will).clone()
    }

    /// Every subscription the plugin made, AMQP and MQTT, in the order made.
    ///
    /// ```
    /// # use plugin_api::{testing::TestHost, Context, Plugin, Result};
    /// #[derive(Default)]
    /// struct Listener;
    /// impl Plugin for Listener {
    ///     async fn startup(self: std::sync::Arc<Self>, ctx: &Context) -> Result<()> {
    ///         ctx.subscribe("brewcast", "#", || async {})?;
    ///         Ok(())
    ///     }
    /// }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<()> {
    /// let host = TestHost::start(Listener).await?;
    /// let [sub] = host.subscriptions().try_into().unwrap();
    /// assert_eq!((sub.exchange.as_str(), sub.routing.as_str(), sub.cancelled), ("brewcast", "#", false));
    /// # Ok(()) }
    /// ```
    pub fn subscriptions(&self) -> Vec<TestSubscription> {
        lock(&self.state.bus.subs)
            .iter()
            .map(|sub| sub.info())
            .collect()
    }

    /// Simulates an outage of both eventbuses: while `down`, publishes fail with an
    /// [`Unavailable`](crate::ErrorKind::Unavailable) error and so does
    /// [`Subscription::ready`](crate::Subscription::ready), as with the host during an outage.
    ///
    /// ```
    /// # use plugin_api::{testing::TestHost, Context, Plugin, Result};
    /// # #[derive(Default)] struct Quiet;
    /// # impl Plugin for Quiet { async fn startup(self: std::sync::Arc<Self>, _: &Context) -> Result<()> { Ok(()) } }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<()> {
    /// let host = TestHost::start(Quiet).await?;
    /// host.set_eventbus_down(true);
    /// let err = host.context().publish("brewcast", "x", &1).await.unwrap_err();
    /// assert!(err.is_unavailable());
    /// # Ok(()) }
    /// ```
    pub fn set_eventbus_down(&self, down: bool) {
        self.state.bus.down.store(down, Ordering::SeqCst);
    }
}

fn timed_out(timeout: std::time::Duration, seen: &[String]) -> crate::Error {
    crate::Error::timeout(format!(
        "nothing wanted was published within {:.1} s; published: {seen:?}",
        timeout.as_secs_f64()
    ))
}
