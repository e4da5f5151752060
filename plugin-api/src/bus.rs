//! The eventbus as plugins see it: publish JSON, subscribe with an async handler.

use std::fmt;

use serde::Serialize;

use crate::{abi, Error, Result};

/// The AMQP exchange type.
///
/// ```
/// assert_eq!(plugin_api::ExchangeType::default().as_str(), "topic");
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ExchangeType {
    /// Routing keys with `*` and `#` wildcards (the brewblox default).
    #[default]
    Topic,
    /// Every queue bound to the exchange gets every message.
    Fanout,
    /// Exact routing-key match.
    Direct,
}

impl ExchangeType {
    /// The AMQP name.
    ///
    /// ```
    /// assert_eq!(plugin_api::ExchangeType::Fanout.as_str(), "fanout");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            ExchangeType::Topic => "topic",
            ExchangeType::Fanout => "fanout",
            ExchangeType::Direct => "direct",
        }
    }
}

/// Checks an exchange name or routing key as the host does (`plugin_abi::amqp`: at most 255
/// bytes, no control characters). The host checks again whatever a plugin sends; this only
/// lets a plugin fail early, with the field named.
fn check_name(field: &str, value: &str) -> Result<()> {
    match abi::amqp::name_problem(value) {
        None => Ok(()),
        Some(problem) => Err(Error::invalid(format!("{field} {problem}")).field(field)),
    }
}

/// A message to publish, for the options [`Context::publish`](crate::Context::publish)
/// does not take.
///
/// ```no_run
/// use plugin_api::{ExchangeType, Publish};
/// # async fn demo(ctx: plugin_api::Context) -> plugin_api::Result<()> {
/// ctx.publish_with(
///     Publish::new("amq.topic", "sensors.temp", &serde_json::json!(21.5))?
///         .declare_exchange(false),
/// )
/// .await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Publish {
    pub(crate) exchange: String,
    pub(crate) routing: String,
    pub(crate) body: Vec<u8>,
    pub(crate) exchange_type: ExchangeType,
    pub(crate) declare_exchange: bool,
}

impl Publish {
    /// `message` serialized as JSON, to `exchange` with routing key `routing`.
    ///
    /// ```
    /// let msg = plugin_api::Publish::new("brewcast", "fermenter", &serde_json::json!({"temp": 20}))?;
    /// # Ok::<(), plugin_api::Error>(())
    /// ```
    ///
    /// Names AMQP cannot carry (over 255 bytes, or with control characters) are an
    /// [`Invalid`](crate::ErrorKind::Invalid) error naming the field:
    ///
    /// ```
    /// let err = plugin_api::Publish::new(&"x".repeat(256), "k", &1).unwrap_err();
    /// assert_eq!(err.kind(), plugin_api::ErrorKind::Invalid);
    /// assert_eq!(err.field_name(), Some("exchange"));
    /// ```
    pub fn new<T: Serialize + ?Sized>(exchange: &str, routing: &str, message: &T) -> Result<Self> {
        check_name("exchange", exchange)?;
        check_name("routing", routing)?;
        // Most messages are small objects: one allocation instead of growing from empty.
        let mut body = Vec::with_capacity(128);
        serde_json::to_writer(&mut body, message)?;
        Ok(Publish {
            exchange: exchange.to_owned(),
            routing: routing.to_owned(),
            body,
            exchange_type: ExchangeType::Topic,
            declare_exchange: true,
        })
    }

    /// The exchange type to declare (topic by default).
    ///
    /// ```
    /// use plugin_api::{ExchangeType, Publish};
    /// let msg = Publish::new("alerts", "", &"hot")?.exchange_type(ExchangeType::Fanout);
    /// # Ok::<(), plugin_api::Error>(())
    /// ```
    pub fn exchange_type(mut self, exchange_type: ExchangeType) -> Self {
        self.exchange_type = exchange_type;
        self
    }

    /// Whether to declare the exchange before publishing (true by default). Turn it off for
    /// pre-declared exchanges such as `amq.topic`.
    ///
    /// ```
    /// let msg = plugin_api::Publish::new("amq.topic", "k", &1)?.declare_exchange(false);
    /// # Ok::<(), plugin_api::Error>(())
    /// ```
    pub fn declare_exchange(mut self, declare: bool) -> Self {
        self.declare_exchange = declare;
        self
    }

    pub(crate) fn into_ffi(self) -> abi::FfiPublish {
        abi::FfiPublish {
            exchange: self.exchange.into(),
            routing: self.routing.into(),
            body: self.body.into(),
            exchange_type: self.exchange_type.as_str().into(),
            declare_exchange: self.declare_exchange,
        }
    }
}

/// A live subscription, returned by [`Context::subscribe`](crate::Context::subscribe) and
/// [`Context::mqtt_subscribe`](crate::Context::mqtt_subscribe); a handler can take it as an
/// extractor.
///
/// ```no_run
/// use plugin_api::{Subscription, Topic};
/// # async fn demo(ctx: plugin_api::Context) -> plugin_api::Result<()> {
/// let sub = ctx.subscribe("brewcast", "#", |sub: Subscription, Topic(key): Topic| async move {
///     tracing::info!("{sub} {key}");
/// })?;
/// sub.cancel();
/// # Ok(()) }
/// ```
pub struct Subscription {
    inner: abi::HostSubscriptionArc,
}

impl Clone for Subscription {
    fn clone(&self) -> Self {
        Subscription {
            inner: abi::HostSubscription_TO::from_sabi(self.inner.obj.shallow_clone()),
        }
    }
}

impl Subscription {
    pub(crate) fn new(inner: abi::HostSubscriptionArc) -> Self {
        Subscription { inner }
    }

    /// The host's side of the subscription.
    pub(crate) fn host(&self) -> &abi::HostSubscriptionArc {
        &self.inner
    }

    /// The exchange name.
    ///
    /// ```no_run
    /// # fn demo(ctx: plugin_api::Context) -> plugin_api::Result<()> {
    /// let sub = ctx.subscribe("brewcast", "#", || async {})?;
    /// assert_eq!(sub.exchange(), "brewcast");
    /// # Ok(()) }
    /// ```
    pub fn exchange(&self) -> String {
        self.inner.exchange().into_string()
    }

    /// The routing key (pattern) it is bound with.
    ///
    /// ```no_run
    /// # fn demo(ctx: plugin_api::Context) -> plugin_api::Result<()> {
    /// let sub = ctx.subscribe("brewcast", "#", || async {})?;
    /// assert_eq!(sub.routing(), "#");
    /// # Ok(()) }
    /// ```
    pub fn routing(&self) -> String {
        self.inner.routing().into_string()
    }

    /// Stops receiving. The queue is deleted and does not come back after a reconnect.
    ///
    /// ```no_run
    /// # fn demo(ctx: plugin_api::Context) -> plugin_api::Result<()> {
    /// let sub = ctx.subscribe("brewcast", "#", || async {})?;
    /// sub.cancel();
    /// assert!(sub.is_cancelled());
    /// # Ok(()) }
    /// ```
    pub fn cancel(&self) {
        self.inner.cancel();
    }

    /// Waits until the subscription is bound: a message published after this returns `Ok`
    /// reaches the handler. [`subscribe`](crate::Context::subscribe) returns at once and
    /// declares in the background, so without this the first messages may be missed.
    /// Bounded by the host's `--eventbus-publish-timeout`.
    ///
    /// Errors: [`ErrorKind::Rejected`](crate::ErrorKind::Rejected) when the broker refused
    /// the subscription (e.g. the exchange exists with another type; the host keeps retrying
    /// until it is cancelled), [`ErrorKind::Unavailable`](crate::ErrorKind::Unavailable) when
    /// the broker cannot be reached, [`ErrorKind::Timeout`](crate::ErrorKind::Timeout).
    ///
    /// ```no_run
    /// # async fn demo(ctx: plugin_api::Context) -> plugin_api::Result<()> {
    /// let sub = ctx.subscribe("brewcast", "#", || async {})?;
    /// sub.ready().await?;
    /// ctx.publish("brewcast", "me", &1).await?; // the handler gets it
    /// # Ok(()) }
    /// ```
    pub async fn ready(&self) -> Result<()> {
        self.inner
            .ready()
            .await
            .into_result()
            .map_err(Error::from_ffi)
    }

    /// Whether [`cancel`](Subscription::cancel) was called.
    ///
    /// ```no_run
    /// # fn demo(ctx: plugin_api::Context) -> plugin_api::Result<()> {
    /// let sub = ctx.subscribe("brewcast", "#", || async {})?;
    /// assert!(!sub.is_cancelled());
    /// # Ok(()) }
    /// ```
    pub fn is_cancelled(&self) -> bool {
        self.inner.is_cancelled()
    }
}

impl fmt::Display for Subscription {
    /// `<routing @ exchange>`, as brewblox-service prints subscriptions.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Only an MQTT subscription has no exchange.
        if self.inner.exchange().is_empty() {
            return write!(f, "<{}>", self.inner.routing());
        }
        write!(f, "<{} @ {}>", self.inner.routing(), self.inner.exchange())
    }
}

impl fmt::Debug for Subscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Subscription{self}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_amqp_cannot_carry_are_invalid() {
        assert!(Publish::new(&"e".repeat(255), &"k".repeat(255), &1).is_ok());
        for (exchange, routing, field) in [
            ("e".repeat(256), "k".to_string(), "exchange"),
            ("e".to_string(), "k".repeat(300), "routing"),
            ("e".to_string(), "a\nb".to_string(), "routing"),
        ] {
            let err = Publish::new(&exchange, &routing, &1).unwrap_err();
            assert_eq!(err.kind(), crate::ErrorKind::Invalid);
            assert_eq!(err.field_name(), Some(field));
        }
    }
}
