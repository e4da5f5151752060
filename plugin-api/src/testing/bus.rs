//! Both eventbuses under the kit: subscriptions kept in-process and fed by the test,
//! publishes recorded for the test to read. A publish is not delivered to the plugin's own
//! subscriptions: the test decides what arrives.

use std::sync::{
    atomic::{AtomicBool, Ordering},
    Arc, Mutex,
};

use abi_stable::{
    sabi_trait::TD_Opaque,
    std_types::{RArc, RResult, RString, RVec},
};
use async_ffi::FfiFuture;
use serde::{de::DeserializeOwned, Serialize};

use crate::{
    abi::{
        error_code, FfiError, FfiMqttPublish, FfiPublish, FfiSubscribe, HostSubscription,
        HostSubscriptionArc, HostSubscription_TO, MessageHandlerBox,
    },
    http::decode_json,
    Error, Plugin, QoS, Result,
};

use super::{host::lock, TestHost};

/// The `exchange_type` of an MQTT subscription, as the host reports it.
const MQTT: &str = "mqtt";

/// A message the plugin published to an AMQP exchange.
///
/// ```
/// # use plugin_api::{testing::TestHost, Context, Plugin, Result};
/// #[derive(Default)]
/// struct Announcer;
/// impl Plugin for Announcer {
///     async fn startup(&self, ctx: &Context) -> Result<()> {
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
        decode_json(&self.body)
    }
}

/// A message the plugin published on MQTT, or its will.
///
/// ```
/// # use plugin_api::{testing::TestHost, Context, Plugin, QoS, Result};
/// #[derive(Default)]
/// struct State;
/// impl Plugin for State {
///     async fn startup(&self, ctx: &Context) -> Result<()> {
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
        decode_json(&self.payload)
    }

    fn from_ffi(message: FfiMqttPublish) -> Self {
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
    /// The binding key, or the MQTT topic filter.
    pub routing: String,
    pub cancelled: bool,
}

/// One subscription's state, shared by the kit and the handles the plugin holds.
struct Sub {
    info: Mutex<TestSubscription>,
    handler: Mutex<Arc<MessageHandlerBox>>,
    cancelled: AtomicBool,
    /// The bus's outage switch, for `ready`.
    down: Arc<AtomicBool>,
}

impl Sub {
    fn info(&self) -> TestSubscription {
        let mut info = lock(&self.info).clone();
        info.cancelled = self.cancelled.load(Ordering::SeqCst);
        info
    }

    fn matches(&self, mqtt: bool, exchange: &str, key: &str) -> bool {
        let info = lock(&self.info);
        let kind = info.exchange_type.as_str();
        if self.cancelled.load(Ordering::SeqCst) || mqtt != (kind == MQTT) {
            return false;
        }
        match kind {
            MQTT => mqtt_matches(&info.routing, key),
            _ if info.exchange != exchange => false,
            "fanout" => true,
            "direct" => info.routing == key,
            _ => topic_matches(&info.routing, key),
        }
    }
}

/// The handle a plugin holds: `Subscription` in the SDK.
struct SubHandle(Arc<Sub>);

impl HostSubscription for SubHandle {
    fn exchange(&self) -> RString {
        lock(&self.0.info).exchange.as_str().into()
    }

    fn routing(&self) -> RString {
        lock(&self.0.info).routing.as_str().into()
    }

    fn exchange_type(&self) -> RString {
        lock(&self.0.info).exchange_type.as_str().into()
    }

    fn set_handler(&self, handler: MessageHandlerBox) {
        *lock(&self.0.handler) = Arc::new(handler);
    }

    fn cancel(&self) {
        self.0.cancelled.store(true, Ordering::SeqCst);
    }

    fn is_cancelled(&self) -> bool {
        self.0.cancelled.load(Ordering::SeqCst)
    }

    fn ready(&self) -> FfiFuture<RResult<(), FfiError>> {
        let result = if self.is_cancelled() {
            Err(FfiError::new(
                error_code::OTHER,
                "the subscription was cancelled",
            ))
        } else if self.0.down.load(Ordering::SeqCst) {
            Err(unavailable("the eventbus is down (test host)"))
        } else {
            Ok(())
        };
        FfiFuture::new(async move { result.into() })
    }
}

fn handle(sub: &Arc<Sub>) -> HostSubscriptionArc {
    HostSubscription_TO::from_ptr(RArc::new(SubHandle(Arc::clone(sub))), TD_Opaque)
}

/// Whether an AMQP topic binding `pattern` matches routing `key`: words split on `.`, `*`
/// one word, `#` zero or more.
fn topic_matches(pattern: &str, key: &str) -> bool {
    fn words(pattern: &[&str], key: &[&str]) -> bool {
        match pattern.split_first() {
            None => key.is_empty(),
            Some((&"#", rest)) => (0..=key.len()).any(|skip| words(rest, &key[skip..])),
            Some((&word, rest)) => match key.split_first() {
                Some((first, tail)) => (word == "*" || word == *first) && words(rest, tail),
                None => false,
            },
        }
    }
    let pattern: Vec<&str> = pattern.split('.').collect();
    let key: Vec<&str> = key.split('.').collect();
    words(&pattern, &key)
}

/// Whether an MQTT topic `filter` matches `topic`: `+` one level, `#` the rest (the parent
/// level included); a `$` topic matches no filter that starts with a wildcard.
fn mqtt_matches(filter: &str, topic: &str) -> bool {
    if topic.starts_with('$') && filter.starts_with(['+', '#']) {
        return false;
    }
    let mut levels = topic.split('/');
    for level in filter.split('/') {
        match (level, levels.next()) {
            ("#", _) => return true,
            ("+", Some(_)) => {}
            (expected, Some(actual)) if expected == actual => {}
            _ => return false,
        }
    }
    levels.next().is_none()
}

/// The host's checks of an MQTT topic (`filter`: wildcards allowed as whole levels).
fn check_mqtt(text: &str, filter: bool) -> Result<(), FfiError> {
    let what = if filter { "topic filter" } else { "topic" };
    let problem = if text.is_empty() || text.len() > 65535 || text.contains('\0') {
        format!("MQTT {what} must be 1 to 65535 bytes without NUL")
    } else if !filter && text.contains(['+', '#']) {
        format!(
            "MQTT topic '{text}' contains a wildcard ('+' or '#'); wildcards are for subscriptions"
        )
    } else if filter && !valid_filter(text) {
        format!("MQTT topic filter '{text}': wildcards must be whole levels, '#' the last")
    } else {
        return Ok(());
    };
    Err(FfiError::new(error_code::INVALID, problem))
}

fn valid_filter(filter: &str) -> bool {
    let levels: Vec<&str> = filter.split('/').collect();
    levels.iter().enumerate().all(|(index, level)| {
        let whole = !level.contains(['+', '#']) || *level == "+" || *level == "#";
        whole && (*level != "#" || index + 1 == levels.len())
    })
}

fn unavailable(message: &str) -> FfiError {
    FfiError::new(error_code::UNAVAILABLE, message)
}

/// The eventbuses of the fake host.
pub(super) struct Bus {
    amqp: bool,
    mqtt: bool,
    down: Arc<AtomicBool>,
    subs: Mutex<Vec<Arc<Sub>>>,
    published: Mutex<Vec<Published>>,
    mqtt_published: Mutex<Vec<MqttPublished>>,
    will: Mutex<Option<MqttPublished>>,
}

impl Bus {
    /// A bus with AMQP and MQTT in use or not (`amqp`, `mqtt` of the configuration).
    pub fn new(amqp: bool, mqtt: bool) -> Self {
        Bus {
            amqp,
            mqtt,
            down: Arc::default(),
            subs: Mutex::default(),
            published: Mutex::default(),
            mqtt_published: Mutex::default(),
            will: Mutex::default(),
        }
    }

    fn usable(&self, mqtt: bool) -> Result<(), FfiError> {
        let (in_use, name) = match mqtt {
            true => (self.mqtt, "MQTT"),
            false => (self.amqp, "AMQP"),
        };
        if !in_use {
            return Err(unavailable(&format!("this service does not use {name}")));
        }
        Ok(())
    }

    fn check_up(&self) -> Result<(), FfiError> {
        match self.down.load(Ordering::SeqCst) {
            true => Err(unavailable("the eventbus is down (test host)")),
            false => Ok(()),
        }
    }

    fn add(&self, info: TestSubscription, handler: MessageHandlerBox) -> HostSubscriptionArc {
        let sub = Arc::new(Sub {
            info: Mutex::new(info),
            handler: Mutex::new(Arc::new(handler)),
            cancelled: AtomicBool::new(false),
            down: Arc::clone(&self.down),
        });
        lock(&self.subs).push(Arc::clone(&sub));
        handle(&sub)
    }

    pub fn publish(&self, message: FfiPublish) -> Result<(), FfiError> {
        self.usable(false)?;
        if !["topic", "fanout", "direct"].contains(&message.exchange_type.as_str()) {
            let kind = &message.exchange_type;
            return Err(FfiError::new(
                error_code::INVALID,
                format!("unknown exchange type \"{kind}\" (topic, fanout or direct)"),
            ));
        }
        self.check_up()?;
        lock(&self.published).push(Published {
            exchange: message.exchange.into_string(),
            routing: message.routing.into_string(),
            body: message.body.into_vec(),
            exchange_type: message.exchange_type.into_string(),
            declare_exchange: message.declare_exchange,
        });
        Ok(())
    }

    pub fn subscribe(
        &self,
        request: FfiSubscribe,
        handler: MessageHandlerBox,
    ) -> Result<HostSubscriptionArc, FfiError> {
        self.usable(false)?;
        let kind = request.exchange_type.into_string();
        if !["topic", "fanout", "direct"].contains(&kind.as_str()) {
            return Err(FfiError::new(
                error_code::INVALID,
                format!("unknown exchange type \"{kind}\" (topic, fanout or direct)"),
            ));
        }
        if request.exchange.is_empty() {
            let message = "exchange name must not be empty";
            return Err(FfiError::new(error_code::INVALID, message));
        }
        let info = TestSubscription {
            exchange: request.exchange.into_string(),
            exchange_type: kind,
            routing: request.routing.into_string(),
            cancelled: false,
        };
        Ok(self.add(info, handler))
    }

    pub fn mqtt_publish(&self, message: FfiMqttPublish) -> Result<(), FfiError> {
        self.usable(true)?;
        check_mqtt(&message.topic, false)?;
        if message.qos > 1 {
            let qos = message.qos;
            return Err(FfiError::new(
                error_code::INVALID,
                format!("unsupported QoS {qos}"),
            ));
        }
        self.check_up()?;
        lock(&self.mqtt_published).push(MqttPublished::from_ffi(message));
        Ok(())
    }

    pub fn mqtt_subscribe(
        &self,
        filter: &str,
        qos: u8,
        handler: MessageHandlerBox,
    ) -> Result<HostSubscriptionArc, FfiError> {
        self.usable(true)?;
        check_mqtt(filter, true)?;
        if qos > 1 {
            return Err(FfiError::new(
                error_code::INVALID,
                format!("unsupported QoS {qos}"),
            ));
        }
        let info = TestSubscription {
            exchange: String::new(),
            exchange_type: MQTT.into(),
            routing: filter.to_owned(),
            cancelled: false,
        };
        Ok(self.add(info, handler))
    }

    pub fn set_will(&self, will: FfiMqttPublish) -> Result<(), FfiError> {
        self.usable(true)?;
        if will.topic.is_empty() {
            *lock(&self.will) = None;
            return Ok(());
        }
        check_mqtt(&will.topic, false)?;
        *lock(&self.will) = Some(MqttPublished::from_ffi(will));
        Ok(())
    }

    /// The clean stop: every subscription ends, the will is published.
    pub fn close(&self) {
        for sub in lock(&self.subs).iter() {
            sub.cancelled.store(true, Ordering::SeqCst);
        }
        if let Some(will) = lock(&self.will).clone() {
            lock(&self.mqtt_published).push(will);
        }
    }

    /// Hands `body` to every live subscription `key` reaches, in subscription order, and
    /// returns each handler's result.
    async fn deliver(
        &self,
        mqtt: bool,
        exchange: &str,
        key: &str,
        body: Vec<u8>,
    ) -> Vec<Result<()>> {
        let targets: Vec<Arc<Sub>> = lock(&self.subs)
            .iter()
            .filter(|sub| sub.matches(mqtt, exchange, key))
            .cloned()
            .collect();
        let mut results = Vec::with_capacity(targets.len());
        for sub in targets {
            let handler = Arc::clone(&lock(&sub.handler));
            let delivery = handler.on_message(handle(&sub), key.into(), RVec::from(body.clone()));
            results.push(match delivery.await {
                RResult::ROk(()) => Ok(()),
                RResult::RErr(reason) => Err(Error::msg(reason)),
            });
        }
        results
    }
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
    /// # use plugin_api::{testing::TestHost, Context, Error, Plugin, Result};
    /// #[derive(Default)]
    /// struct Listener;
    /// impl Plugin for Listener {
    ///     async fn startup(&self, ctx: &Context) -> Result<()> {
    ///         ctx.subscribe("brewcast", "fermenter.#", |_sub, _key, message: serde_json::Value| async move {
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
    /// # use plugin_api::{testing::TestHost, Context, MqttMessage, Plugin, Result};
    /// #[derive(Default)]
    /// struct Watcher;
    /// impl Plugin for Watcher {
    ///     async fn startup(&self, ctx: &Context) -> Result<()> {
    ///         ctx.mqtt_subscribe("brewcast/state/#", |_sub, message: MqttMessage| async move {
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
    ///     async fn startup(&self, ctx: &Context) -> Result<()> {
    ///         ctx.subscribe("brewcast", "#", |_s, _k, _m| async { Ok(()) })?;
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
    /// # impl Plugin for Quiet { async fn startup(&self, _: &Context) -> Result<()> { Ok(()) } }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_bindings_match_as_amqp_says() {
        let yes = [
            ("a.b", "a.b"),
            ("a.*", "a.b"),
            ("#", "a.b.c"),
            ("#", ""),
            ("a.#", "a"),
            ("a.#", "a.b.c"),
            ("a.#.c", "a.c"),
            ("a.#.c", "a.b.b.c"),
            ("*.b.#", "a.b"),
        ];
        for (pattern, key) in yes {
            assert!(topic_matches(pattern, key), "{pattern} {key}");
        }
        let no = [
            ("a.b", "a.c"),
            ("a.*", "a"),
            ("a.*", "a.b.c"),
            ("a.#.c", "a.b"),
            ("*", "a.b"),
        ];
        for (pattern, key) in no {
            assert!(!topic_matches(pattern, key), "{pattern} {key}");
        }
    }

    #[test]
    fn mqtt_filters_match_as_mqtt_says() {
        let yes = [
            ("a/b", "a/b"),
            ("a/+", "a/b"),
            ("a/b/#", "a/b"),
            ("#", "a/b/c"),
            ("+/+", "/x"),
        ];
        for (filter, topic) in yes {
            assert!(mqtt_matches(filter, topic), "{filter} {topic}");
        }
        let no = [
            ("a/+", "a/b/c"),
            ("a/b", "a/b/c"),
            ("#", "$SYS/x"),
            ("+/b", "a/c"),
        ];
        for (filter, topic) in no {
            assert!(!mqtt_matches(filter, topic), "{filter} {topic}");
        }
        assert!(check_mqtt("a/#/b", true).is_err());
        assert!(check_mqtt("a/b+", true).is_err());
        assert!(check_mqtt("a/+/#", true).is_ok());
        assert!(check_mqtt("a/+", false).is_err());
        assert!(check_mqtt("", false).is_err());
    }
}
