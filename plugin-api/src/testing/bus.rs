//! Both eventbuses under the kit: subscriptions kept in-process and fed by the test,
//! publishes recorded for the test to read. A publish is not delivered to the plugin's own
//! subscriptions: the test decides what arrives.

use std::sync::{
    atomic::{AtomicBool, Ordering},
    Arc, Mutex,
};

use crate::abi::FfiFuture;
use abi_stable::{
    sabi_trait::TD_Opaque,
    std_types::{RArc, ROption, RResult, RString, RVec},
};

use crate::{
    abi::{
        amqp, error_code, mqtt_names, sharing, FfiError, FfiMessage, FfiMqttPublish,
        FfiMqttSubscribe, FfiPublish, FfiSubscribe, HostSubscription, HostSubscriptionArc,
        HostSubscription_TO, MessageHandlerBox,
    },
    Error, Result,
};

use super::{
    eventbus::{MqttPublished, Published, TestSubscription},
    host::lock,
};

/// The `exchange_type` of an MQTT subscription, as the host reports it.
const MQTT: &str = "mqtt";

/// One subscription's state, shared by the kit and the handles the plugin holds.
pub(super) struct Sub {
    info: Mutex<TestSubscription>,
    handler: Mutex<Arc<MessageHandlerBox>>,
    cancelled: AtomicBool,
    /// The bus's outage switch, for `ready`.
    down: Arc<AtomicBool>,
}

impl Sub {
    pub(super) fn info(&self) -> TestSubscription {
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

/// Whether an MQTT topic `filter` matches `topic`, by the host's rule.
fn mqtt_matches(filter: &str, topic: &str) -> bool {
    mqtt_names::matches(filter, topic)
}

/// The host's checks of an MQTT topic (`filter`: wildcards allowed as whole levels): the same
/// rule, so a plugin's test fails where the host would refuse.
fn check_mqtt(text: &str, filter: bool) -> Result<(), FfiError> {
    let checked = if filter {
        mqtt_names::validate_filter(text)
    } else {
        mqtt_names::validate_topic(text)
    };
    checked.map_err(|err| FfiError::new(error_code::INVALID, err.0))
}

/// A sharing option the rules of `plugin_abi::sharing` refuse, as the host reports it.
fn invalid(message: String) -> FfiError {
    FfiError::new(error_code::INVALID, message)
}

fn unavailable(message: &str) -> FfiError {
    FfiError::new(error_code::UNAVAILABLE, message)
}

/// The eventbuses of the fake host.
pub(super) struct Bus {
    /// The service's name: the group of a durable subscription without one.
    service: String,
    amqp: bool,
    mqtt: bool,
    pub down: Arc<AtomicBool>,
    pub subs: Mutex<Vec<Arc<Sub>>>,
    pub published: Mutex<Vec<Published>>,
    pub mqtt_published: Mutex<Vec<MqttPublished>>,
    pub will: Mutex<Option<MqttPublished>>,
    /// Bumped at every publish, so that a test can wait for one.
    pub publishes: tokio::sync::watch::Sender<u64>,
}

impl Bus {
    /// A bus with AMQP and MQTT in use or not (`amqp`, `mqtt` of the configuration).
    pub fn new(service: &str, amqp: bool, mqtt: bool) -> Self {
        Bus {
            service: service.to_owned(),
            amqp,
            mqtt,
            down: Arc::default(),
            subs: Mutex::default(),
            published: Mutex::default(),
            mqtt_published: Mutex::default(),
            will: Mutex::default(),
            publishes: tokio::sync::watch::channel(0).0,
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
        amqp::exchange_type(&message.exchange_type)?;
        check_amqp_names(&message.exchange, &message.routing)?;
        self.check_up()?;
        lock(&self.published).push(Published {
            exchange: message.exchange.into_string(),
            routing: message.routing.into_string(),
            body: message.body.into_vec(),
            exchange_type: message.exchange_type.into_string(),
            declare_exchange: message.declare_exchange,
        });
        self.publishes.send_modify(|n| *n += 1);
        Ok(())
    }

    pub fn subscribe(
        &self,
        request: FfiSubscribe,
        handler: MessageHandlerBox,
    ) -> Result<HostSubscriptionArc, FfiError> {
        self.usable(false)?;
        let kind = amqp::EXCHANGE_TYPES[amqp::exchange_type(&request.exchange_type)?].to_owned();
        if request.exchange.is_empty() {
            let message = "exchange name must not be empty";
            return Err(FfiError::new(error_code::INVALID, message));
        }
        check_amqp_names(&request.exchange, &request.routing)?;
        let queue = sharing::amqp_plan(
            &request.sharing,
            &self.service,
            &request.exchange,
            &request.routing,
        )
        .map_err(invalid)?;
        let info = TestSubscription {
            exchange: request.exchange.into_string(),
            exchange_type: kind,
            routing: request.routing.into_string(),
            queue: queue.map(|queue| queue.name),
            session: None,
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
        self.publishes.send_modify(|n| *n += 1);
        Ok(())
    }

    pub fn mqtt_subscribe(
        &self,
        request: FfiMqttSubscribe,
        handler: MessageHandlerBox,
    ) -> Result<HostSubscriptionArc, FfiError> {
        self.usable(true)?;
        check_mqtt(&request.filter, true)?;
        let plan = sharing::mqtt_plan(&request.sharing, &request.filter).map_err(invalid)?;
        // The host's persistent session carries a durable one, under this client id.
        let session = match plan.durable {
            true => Some(sharing::mqtt_session_id(&self.service, None).map_err(invalid)?),
            false => None,
        };
        let filter = plan.filter;
        let qos = request.qos;
        if qos > 1 {
            return Err(FfiError::new(
                error_code::INVALID,
                format!("unsupported QoS {qos}"),
            ));
        }
        let info = TestSubscription {
            exchange: String::new(),
            exchange_type: MQTT.into(),
            routing: filter,
            queue: None,
            session,
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
            self.publishes.send_modify(|n| *n += 1);
        }
    }

    /// Hands `body` to every live subscription `key` reaches, in subscription order, and
    /// returns each handler's result.
    pub async fn deliver(
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
            let message = FfiMessage {
                routing_key: key.into(),
                body: RVec::from(body.clone()),
                redelivered: false,
                delivery_count: ROption::RNone,
            };
            let delivery = handler.on_message(handle(&sub), message);
            results.push(match delivery.await {
                RResult::ROk(()) => Ok(()),
                RResult::RErr(failure) => Err(Error::from_ffi(failure.error)),
            });
        }
        results
    }
}

/// The host's check of an exchange name and routing key, in the host's words.
fn check_amqp_names(exchange: &str, routing: &str) -> Result<(), FfiError> {
    for (field, value) in [("exchange", exchange), ("routing", routing)] {
        if let Some(reason) = amqp::name_problem(value) {
            let message = format!("invalid {field}: {reason}");
            return Err(FfiError::new(error_code::INVALID, message));
        }
    }
    Ok(())
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
        let err = check_mqtt("x/\u{2}", true).unwrap_err();
        let host = mqtt_names::validate_filter("x/\u{2}").unwrap_err();
        assert_eq!(err.message.as_str(), host.0);
        assert!(check_mqtt(&vec!["a"; 202].join("/"), false).is_err());
    }
}
