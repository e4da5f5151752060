//! The plugin's handle to the host.

use std::{fmt, future::Future, sync::Arc};

use abi_stable::{
    sabi_trait::TD_Opaque,
    std_types::{RResult, RString},
};
use serde::Serialize;
use serde_json::Value;

use crate::{
    abi::{self, FfiRequest, FfiResponse},
    bus::{handler_box, MessageFn, Publish, Subscription},
    feature::{Feature, FeatureImpl},
    mqtt::MqttFn,
    repeater::{self, Repeater},
    runtime,
    task::{TaskHandle, TaskOutput},
    Config, Error, ExchangeType, Handler, QoS, Request, Response, Result, Route,
};

/// Everything a plugin can do with its host: routes, configuration, background tasks,
/// features shared between plugins, and the eventbus.
///
/// It is cheap to clone; keep a clone wherever you need it (in handlers, tasks).
///
/// ```no_run
/// use plugin_api::{Context, Json, Request, Result, Route};
///
/// async fn startup(ctx: &Context) -> Result<()> {
///     let name = ctx.config().name().to_owned();
///     ctx.route(Route::get("/hello"), move |_req: Request| {
///         let name = name.clone();
///         async move { Ok(Json(serde_json::json!({"hello": name}))) }
///     })?;
///     Ok(())
/// }
/// ```
#[derive(Clone)]
pub struct Context {
    inner: Arc<Inner>,
}

struct Inner {
    host: abi::HostContextArc,
    name: String,
    config: Config,
    /// Set only by the test kit, which steps repeaters itself instead of looping them.
    repeaters: Option<crate::testing::Repeaters>,
}

impl Context {
    pub(crate) fn new(host: abi::HostContextArc) -> Result<Self> {
        Self::with_repeaters(host, None)
    }

    pub(crate) fn with_repeaters(
        host: abi::HostContextArc,
        repeaters: Option<crate::testing::Repeaters>,
    ) -> Result<Self> {
        let name = host.plugin_name().into_string();
        let config = Config::from_json(&host.config_json())?;
        Ok(Context {
            inner: Arc::new(Inner {
                host,
                name,
                config,
                repeaters,
            }),
        })
    }

    /// The host's side of this context.
    pub(crate) fn host(&self) -> &abi::HostContextArc {
        &self.inner.host
    }

    /// The plugin's name, as the host's logs and health report call it.
    ///
    /// ```no_run
    /// # fn demo(ctx: plugin_api::Context) {
    /// tracing::info!("I am {}", ctx.plugin_name());
    /// # }
    /// ```
    pub fn plugin_name(&self) -> &str {
        &self.inner.name
    }

    /// The parsed configuration: common options and every declared argument.
    ///
    /// ```no_run
    /// # fn demo(ctx: plugin_api::Context) -> plugin_api::Result<()> {
    /// let interval: f64 = ctx.config().get("update-interval")?;
    /// # Ok(()) }
    /// ```
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// Serves `handler` at `route`, under the service prefix. Call it during `startup`;
    /// the host builds its router once every plugin has started.
    ///
    /// Fails for a path that clashes with another route or is malformed.
    ///
    /// ```no_run
    /// use plugin_api::{Request, Response, Result, Route};
    /// # fn demo(ctx: plugin_api::Context) -> plugin_api::Result<()> {
    /// ctx.route(Route::get("/items/{id}"), |req: Request| async move {
    ///     let id = req.param("id").unwrap_or_default().to_owned();
    ///     Ok(Response::json(&serde_json::json!({ "id": id })))
    /// })?;
    /// # Ok(()) }
    /// ```
    pub fn route<H: Handler>(&self, route: Route, handler: H) -> Result<()> {
        let handler = abi::RouteHandler_TO::from_value(
            RouteImpl {
                handler: Arc::new(handler),
            },
            TD_Opaque,
        );
        self.inner
            .host
            .add_route(
                route.method().as_str().into(),
                route.path().into(),
                route.docs_json().into(),
                handler,
            )
            .into_result()
            .map_err(Error::from_ffi)
    }

    /// Runs `task` in the background. The host logs its failure or panic with the plugin's
    /// name and cancels it when the plugin shuts down.
    ///
    /// ```no_run
    /// # fn demo(ctx: plugin_api::Context) {
    /// ctx.spawn("heartbeat", async {
    ///     let mut tick = tokio::time::interval(std::time::Duration::from_secs(10));
    ///     for beat in 0.. {
    ///         tick.tick().await;
    ///         tracing::debug!("still here ({beat})");
    ///     }
    /// });
    /// # }
    /// ```
    pub fn spawn<F>(&self, name: &str, task: F) -> TaskHandle
    where
        F: Future + Send + 'static,
        F::Output: TaskOutput,
    {
        let task = runtime::into_ffi(async move { task.await.into_task_result() });
        TaskHandle::new(self.inner.host.spawn(name.into(), task))
    }

    /// Runs a [`Repeater`] as a background task.
    ///
    /// ```no_run
    /// use plugin_api::{Repeat, Repeater, Result};
    ///
    /// struct Tick;
    /// impl Repeater for Tick {
    ///     async fn run(&mut self) -> Result<Repeat> {
    ///         tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    ///         Ok(Repeat::Continue)
    ///     }
    /// }
    /// # fn demo(ctx: plugin_api::Context) {
    /// ctx.repeat("tick", Tick);
    /// # }
    /// ```
    pub fn repeat<R: Repeater>(&self, name: &str, repeater: R) -> TaskHandle {
        if let Some(repeaters) = &self.inner.repeaters {
            return repeaters.add(name, repeater);
        }
        let owned = name.to_owned();
        let ctx = self.clone();
        let failed = move || {
            // Counted by the host; a host without the service answers NOT_FOUND, ignored.
            let call = ctx
                .inner
                .host
                .call(abi::REPEATER_FAILED.into(), RString::new());
            async move {
                let _ = call.await;
            }
        };
        let task = runtime::into_ffi(repeater::drive(owned, repeater, failed));
        TaskHandle::new(self.inner.host.spawn(name.into(), task))
    }

    /// Registers a named feature other plugins can call with JSON. A name that is taken is
    /// an error (`Feature "x" already registered`).
    ///
    /// ```no_run
    /// # fn demo(ctx: plugin_api::Context) -> plugin_api::Result<()> {
    /// ctx.add_feature("echo", |input: serde_json::Value| async move { Ok(input) })?;
    /// # Ok(()) }
    /// ```
    pub fn add_feature<F, Fut>(&self, name: &str, feature: F) -> Result<()>
    where
        F: Fn(Value) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Value>> + Send + 'static,
    {
        self.register_feature(name, false, feature).map(|_| ())
    }

    /// Like [`add_feature`](Context::add_feature), but keeps an existing feature of that
    /// name (the original's `exist_ok=True`). Returns whether this one was added.
    ///
    /// ```no_run
    /// # fn demo(ctx: plugin_api::Context) -> plugin_api::Result<()> {
    /// let added = ctx.add_feature_exist_ok("echo", |v: serde_json::Value| async move { Ok(v) })?;
    /// # Ok(()) }
    /// ```
    pub fn add_feature_exist_ok<F, Fut>(&self, name: &str, feature: F) -> Result<bool>
    where
        F: Fn(Value) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Value>> + Send + 'static,
    {
        self.register_feature(name, true, feature)
    }

    fn register_feature<F, Fut>(&self, name: &str, exist_ok: bool, feature: F) -> Result<bool>
    where
        F: Fn(Value) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Value>> + Send + 'static,
    {
        let object = abi::Feature_TO::from_ptr(
            abi_stable::std_types::RArc::new(FeatureImpl {
                func: Arc::new(feature),
            }),
            TD_Opaque,
        );
        self.inner
            .host
            .add_feature(name.into(), exist_ok, object)
            .into_result()
            .map_err(Error::from_ffi)
    }

    /// Looks up a feature registered by any plugin. A missing one is an error
    /// (`No feature found for "x"`).
    ///
    /// ```no_run
    /// # async fn demo(ctx: plugin_api::Context) -> plugin_api::Result<()> {
    /// let echo = ctx.feature("echo")?;
    /// let back: String = echo.call("hi").await?;
    /// # Ok(()) }
    /// ```
    pub fn feature(&self, name: &str) -> Result<Feature> {
        self.inner
            .host
            .get_feature(name.into())
            .into_result()
            .map(|inner| Feature::new(name.to_owned(), inner))
            .map_err(Error::from_ffi)
    }

    /// Publishes `message` as JSON to a topic exchange and waits for the broker's
    /// confirmation. An unreachable bus is an error for which
    /// [`Error::is_unavailable`] is true; the message is not queued. A message larger than the
    /// host's `--eventbus-max-message-size` (16 MiB by default) is an
    /// [`ErrorKind::Invalid`](crate::ErrorKind::Invalid) error and is not sent.
    ///
    /// ```no_run
    /// # async fn demo(ctx: plugin_api::Context) -> plugin_api::Result<()> {
    /// ctx.publish("brewcast", "fermenter", &serde_json::json!({"temp": 20.1})).await?;
    /// # Ok(()) }
    /// ```
    pub async fn publish<T: Serialize + ?Sized>(
        &self,
        exchange: &str,
        routing: &str,
        message: &T,
    ) -> Result<()> {
        self.publish_with(Publish::new(exchange, routing, message)?)
            .await
    }

    /// Publishes with explicit options (exchange type, no exchange declaration).
    ///
    /// ```no_run
    /// use plugin_api::{ExchangeType, Publish};
    /// # async fn demo(ctx: plugin_api::Context) -> plugin_api::Result<()> {
    /// let msg = Publish::new("alerts", "", &"hot")?.exchange_type(ExchangeType::Fanout);
    /// ctx.publish_with(msg).await?;
    /// # Ok(()) }
    /// ```
    pub async fn publish_with(&self, message: Publish) -> Result<()> {
        self.inner
            .host
            .publish(message.into_ffi())
            .await
            .into_result()
            .map_err(Error::from_ffi)
    }

    /// Subscribes to a topic exchange. Works at any time — before the bus is connected,
    /// during an outage, from a handler — the host declares it when it can and restores it
    /// after a reconnect. Each subscription has its own queue.
    ///
    /// ```no_run
    /// # fn demo(ctx: plugin_api::Context) -> plugin_api::Result<()> {
    /// ctx.subscribe("brewcast", "fermenter.#", |_sub, key, message| async move {
    ///     tracing::info!("{key}: {message}");
    ///     Ok(())
    /// })?;
    /// # Ok(()) }
    /// ```
    pub fn subscribe<H: MessageFn>(
        &self,
        exchange: &str,
        routing: &str,
        handler: H,
    ) -> Result<Subscription> {
        self.subscribe_with(exchange, routing, ExchangeType::Topic, handler)
    }

    /// Subscribes to an exchange of the given type.
    ///
    /// ```no_run
    /// use plugin_api::ExchangeType;
    /// # fn demo(ctx: plugin_api::Context) -> plugin_api::Result<()> {
    /// ctx.subscribe_with("alerts", "", ExchangeType::Fanout, |_s, _k, m| async move {
    ///     tracing::warn!("alert: {m}");
    ///     Ok(())
    /// })?;
    /// # Ok(()) }
    /// ```
    pub fn subscribe_with<H: MessageFn>(
        &self,
        exchange: &str,
        routing: &str,
        exchange_type: ExchangeType,
        handler: H,
    ) -> Result<Subscription> {
        let request = abi::FfiSubscribe {
            exchange: exchange.into(),
            routing: routing.into(),
            exchange_type: exchange_type.as_str().into(),
        };
        self.inner
            .host
            .subscribe(request, handler_box(handler))
            .into_result()
            .map(Subscription::new)
            .map_err(Error::from_ffi)
    }

    /// Publishes `payload` (raw bytes or text) to an MQTT topic. `Ok` once sent (QoS 0) or
    /// acknowledged by the broker (QoS 1). Errors: [`Error::is_unavailable`] when the service
    /// does not use MQTT or the broker is down (at once, nothing is queued);
    /// [`ErrorKind::Invalid`](crate::ErrorKind::Invalid) for a topic with wildcards, an
    /// empty or over-long one, or a payload over the host's limit; a timeout.
    ///
    /// ```no_run
    /// use plugin_api::QoS;
    /// # async fn demo(ctx: plugin_api::Context) -> plugin_api::Result<()> {
    /// ctx.mqtt_publish("brewcast/state/me", r#"{"key":"me"}"#, QoS::AtLeastOnce, true).await?;
    /// # Ok(()) }
    /// ```
    pub async fn mqtt_publish(
        &self,
        topic: &str,
        payload: impl Into<Vec<u8>>,
        qos: QoS,
        retain: bool,
    ) -> Result<()> {
        let message = crate::mqtt::ffi(topic, payload.into(), qos, retain);
        self.inner
            .host
            .mqtt_publish(message)
            .await
            .into_result()
            .map_err(Error::from_ffi)
    }

    /// [`mqtt_publish`](Context::mqtt_publish) with `message` encoded as JSON.
    pub async fn mqtt_publish_json<T: Serialize + ?Sized>(
        &self,
        topic: &str,
        message: &T,
        qos: QoS,
        retain: bool,
    ) -> Result<()> {
        let payload = crate::mqtt::json_payload(message)?;
        self.mqtt_publish(topic, payload, qos, retain).await
    }

    /// Subscribes to an MQTT topic filter (`+` one level, `#` any number, `a/b/#` matching
    /// `a/b` too). Works before the broker is connected and during an outage; the host
    /// subscribes again after every reconnect. Each subscription gets its messages in order.
    /// [`Subscription::ready`] waits for the broker's acknowledgement.
    ///
    /// ```no_run
    /// use plugin_api::MqttMessage;
    /// # fn demo(ctx: plugin_api::Context) -> plugin_api::Result<()> {
    /// ctx.mqtt_subscribe("brewcast/state/#", |_sub, message: MqttMessage| async move {
    ///     match message.json::<serde_json::Value>() {
    ///         Ok(state) => tracing::info!("{}: {state}", message.topic()),
    ///         Err(_) => tracing::info!("{}: {} bytes", message.topic(), message.bytes().len()),
    ///     }
    ///     Ok(())
    /// })?;
    /// # Ok(()) }
    /// ```
    pub fn mqtt_subscribe<H: MqttFn>(&self, filter: &str, handler: H) -> Result<Subscription> {
        self.mqtt_subscribe_with(filter, QoS::AtMostOnce, handler)
    }

    /// [`mqtt_subscribe`](Context::mqtt_subscribe) with the QoS asked of the broker.
    pub fn mqtt_subscribe_with<H: MqttFn>(
        &self,
        filter: &str,
        qos: QoS,
        handler: H,
    ) -> Result<Subscription> {
        self.inner
            .host
            .mqtt_subscribe(
                filter.into(),
                qos.level(),
                crate::mqtt::mqtt_handler_box(handler),
            )
            .into_result()
            .map(Subscription::new)
            .map_err(Error::from_ffi)
    }

    /// Sets the service's MQTT will: the broker publishes it when the service's connection
    /// dies, and the host publishes it itself at a clean stop. Set it in `startup`: it is
    /// registered with the broker when the host connects, after every plugin started.
    pub fn mqtt_set_will(
        &self,
        topic: &str,
        payload: impl Into<Vec<u8>>,
        retain: bool,
    ) -> Result<()> {
        let will = crate::mqtt::ffi(topic, payload.into(), QoS::AtLeastOnce, retain);
        self.inner
            .host
            .mqtt_set_will(will)
            .into_result()
            .map_err(Error::from_ffi)
    }
}

impl fmt::Debug for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Context")
            .field("plugin", &self.inner.name)
            .finish()
    }
}

/// The plugin-side object behind a route.
struct RouteImpl<H> {
    handler: Arc<H>,
}

impl<H: Handler> abi::RouteHandler for RouteImpl<H> {
    fn handle(&self, request: FfiRequest) -> async_ffi::FfiFuture<RResult<FfiResponse, RString>> {
        let handler = Arc::clone(&self.handler);
        runtime::into_ffi(async move {
            match handler.call(Request::from_ffi(request)).await {
                Ok(response) => Ok(response.into_ffi()),
                Err(err) if err.status() == 500 => Err(err.to_string()),
                Err(err) => Ok(Response::from_error(&err).into_ffi()),
            }
        })
    }
}
