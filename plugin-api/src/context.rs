//! The plugin's handle to the host.

use std::{fmt, future::Future, sync::Arc};

use abi_stable::sabi_trait::TD_Opaque;
use serde::Serialize;

use crate::{
    abi,
    extract::Call,
    feature::Feature,
    handler::{Adapter, Handler},
    repeater::{self, Repeater},
    runtime,
    task::{TaskHandle, TaskOutput},
    Config, Error, ExchangeType, HandedOver, Handover, Message, Publish, QoS, Request, Result,
    Route, Shared, Subscription,
};

/// Everything a plugin can do with its host: routes, configuration, background tasks,
/// features shared between plugins, and the eventbus.
///
/// Handlers — of routes, subscriptions and features alike — are async functions of
/// extractors. The state they can extract with [`State`](crate::State) is the context's
/// `S`: `()` for the context a hook receives, anything `Clone` after
/// [`with_state`](Context::with_state) — usually the plugin itself:
///
/// ```no_run
/// use std::sync::{Arc, Mutex};
/// use plugin_api::{Context, Json, Plugin, Result, Route, State};
///
/// #[derive(Default)]
/// struct Greeter { greeting: Mutex<String> }
///
/// async fn greet(State(greeter): State<Arc<Greeter>>) -> Json<String> {
///     Json(greeter.greeting.lock().unwrap().clone())
/// }
///
/// impl Plugin for Greeter {
///     async fn startup(self: Arc<Self>, ctx: &Context) -> Result<()> {
///         *self.greeting.lock().unwrap() = format!("hello from {}", ctx.config().name());
///         ctx.with_state(self).route(Route::get("/greeting"), greet)
///     }
/// }
/// ```
///
/// It is cheap to clone; keep a clone wherever you need it (in tasks).
pub struct Context<S = ()> {
    inner: Arc<Inner>,
    state: S,
}

struct Inner {
    host: abi::HostContextArc,
    name: String,
    config: Config,
    /// Set only by the test kit, which steps repeaters itself instead of looping them.
    repeaters: Option<crate::testing::Repeaters>,
}

impl<S: Clone> Clone for Context<S> {
    fn clone(&self) -> Self {
        Context {
            inner: Arc::clone(&self.inner),
            state: self.state.clone(),
        }
    }
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
            state: (),
        })
    }
}

impl<S> Context<S> {
    /// This context with `state` for its handlers to [extract](crate::State).
    ///
    /// ```no_run
    /// # fn demo(ctx: plugin_api::Context) {
    /// let ctx = ctx.with_state(std::sync::Arc::new(42u32));
    /// assert_eq!(**ctx.state(), 42);
    /// # }
    /// ```
    pub fn with_state<T>(&self, state: T) -> Context<T> {
        Context {
            inner: Arc::clone(&self.inner),
            state,
        }
    }

    /// The state handlers registered through this context extract.
    ///
    /// ```no_run
    /// # fn demo(ctx: plugin_api::Context) {
    /// let ctx = ctx.with_state("hi");
    /// assert_eq!(*ctx.state(), "hi");
    /// # }
    /// ```
    pub fn state(&self) -> &S {
        &self.state
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

    /// Runs `task` in the background. The host logs its failure or panic with the plugin's
    /// name and cancels it when the plugin shuts down.
    ///
    /// A task spawned in `startup` starts at once, before the service serves (the HTTP
    /// listener is bound after every plugin's `startup`): one that calls the service's own
    /// routes, or must not run beside the previous generation during a hot swap, awaits
    /// [`serving`](Context::serving) first; one that publishes periodically checks
    /// [`is_retiring`](Context::is_retiring), or is a [`Repeater`], which does both.
    ///
    /// The task returns `()` or a `Result<(), E>`. An async block whose end cannot be
    /// reached — it ends in `loop { … }` without a `break`, or in `panic!()` — has the never
    /// type as its output, which is neither; rustc (1.95 and later) then refuses it with
    /// "this function depends on never type fallback being `()`". Give such a block an
    /// output it can name: a `for`/`while` loop, or `Ok::<(), plugin_api::Error>(())` after
    /// the loop with `#[allow(unreachable_code)]`.
    ///
    /// ```no_run
    /// # fn demo(ctx: plugin_api::Context) {
    /// ctx.spawn("heartbeat", async {
    ///     let mut tick = tokio::time::interval(std::time::Duration::from_secs(10));
    ///     for beat in 0u64.. {
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
        let task = runtime::into_ffi(async move {
            task.await
                .into_task_result()
                .map_err(abi_stable::std_types::RString::from)
        });
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
        let (inner, counted) = (Arc::clone(&self.inner), owned.clone());
        let failed = move || {
            // Counted by the host, in its metrics.
            inner.host.repeater_failed(counted.as_str().into());
            std::future::ready(())
        };
        let inner = Arc::clone(&self.inner);
        // Runs start once the generation serves, and pause while it is retiring.
        let gate = move || {
            let inner = Arc::clone(&inner);
            async move {
                wait_phase(&inner.host, |p| p == abi::phase::SERVING).await == abi::phase::SERVING
            }
        };
        let driven = repeater::drive(owned, repeater, failed, gate);
        let task =
            runtime::into_ffi(
                async move { driven.await.map_err(abi_stable::std_types::RString::from) },
            );
        TaskHandle::new(self.inner.host.spawn(name.into(), task))
    }

    /// Looks up a feature registered by any plugin. A missing one is a
    /// [`NotFound`](crate::ErrorKind::NotFound) error (`No feature found for "x"`).
    ///
    /// ```no_run
    /// # async fn demo(ctx: plugin_api::Context) -> plugin_api::Result<()> {
    /// let echo = ctx.feature("echo")?;
    /// let back: String = echo.call(&"hi").await?;
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
    ///
    /// ```no_run
    /// use plugin_api::QoS;
    /// # async fn demo(ctx: plugin_api::Context) -> plugin_api::Result<()> {
    /// let event = serde_json::json!({"key": "me", "data": {"temperature[degC]": 20.5}});
    /// ctx.mqtt_publish_json("brewcast/history/me", &event, QoS::AtMostOnce, false).await?;
    /// # Ok(()) }
    /// ```
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

    /// Declares this plugin's MQTT will: what the broker publishes when the service's
    /// connection dies (the host publishes it itself at a clean stop). Each plugin has its
    /// own will, on its own topic, held by the broker on a connection of its own, so two
    /// plugins of one service each announce their own death; a topic another plugin's will
    /// has is refused with a [`Conflict`](crate::ErrorKind::Conflict) error naming it, and a
    /// retained publish there is refused too (it would overwrite that plugin's state). The
    /// BrewBlox convention: `brewcast/state/<service>` for the service's main state,
    /// `brewcast/state/<service>/<plugin>` for another plugin's. Set it in `startup`; calling
    /// it again replaces this plugin's own will, and an empty topic removes it. See
    /// `docs/lifecycle.md` in the repository.
    ///
    /// ```no_run
    /// # fn demo(ctx: plugin_api::Context) -> plugin_api::Result<()> {
    /// ctx.mqtt_set_will("brewcast/state/me", r#"{"key":"me","data":null}"#, true)?;
    /// # Ok(()) }
    /// ```
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

    /// A typed publisher for one channel: declares the channel with `T`'s JSON Schema for the
    /// service's AsyncAPI document (as [`declare_publish`](Context::declare_publish)), and
    /// returns the [`Publisher`](crate::Publisher) whose `publish(&T)` sends there, so that
    /// what is sent is what is documented. Call it during `startup`, once per channel; the
    /// same errors as `declare_publish`.
    ///
    /// ```no_run
    /// use plugin_api::{Publishes, QoS};
    /// # async fn demo(ctx: plugin_api::Context) -> plugin_api::Result<()> {
    /// let temperature = ctx.publisher::<f64>(Publishes::amqp("brewcast", "me.temperature"))?;
    /// temperature.publish(&19.5).await?;
    /// # Ok(()) }
    /// ```
    pub fn publisher<T: Serialize + schemars::JsonSchema + ?Sized>(
        &self,
        publishes: crate::Publishes,
    ) -> Result<crate::Publisher<T>> {
        self.declare_publish::<T>(publishes.clone())?;
        Ok(crate::Publisher::new(self.with_state(()), publishes))
    }

    /// Declares that the plugin publishes messages of type `T` on a channel, for the
    /// service's AsyncAPI document (`/api/asyncapi.json`): the channel with its bindings, and
    /// `T`'s JSON Schema as the payload. Documentation only: publishing is unchanged (a
    /// [`publisher`](Context::publisher) declares and publishes the type it declared). Call
    /// it during `startup`. Errors: [`ErrorKind::Invalid`](crate::ErrorKind::Invalid) for a
    /// channel the host refuses (see [`crate::abi::asyncapi`]) or more than 100 declarations.
    ///
    /// ```no_run
    /// use plugin_api::{Publishes, QoS};
    /// # fn demo(ctx: plugin_api::Context) -> plugin_api::Result<()> {
    /// ctx.declare_publish::<f64>(Publishes::mqtt("brewcast/temp/me", QoS::AtMostOnce, false))?;
    /// # Ok(()) }
    /// ```
    pub fn declare_publish<T: schemars::JsonSchema + ?Sized>(
        &self,
        publishes: crate::Publishes,
    ) -> Result<()> {
        let declaration = publishes.declaration::<T>();
        let json = serde_json::to_string(&declaration)
            .map_err(|err| Error::new(crate::ErrorKind::Invalid, err.to_string()))?;
        self.inner
            .host
            .declare_publish(json.into())
            .into_result()
            .map_err(Error::from_ffi)
    }

    /// What the previous generation of this plugin handed over at a hot swap
    /// ([`Plugin::handover`](crate::Plugin::handover)), read as JSON of format `version`:
    /// another version or JSON that is not a `T` is [`Refused`](HandedOver::Refused). The
    /// outcome is reported to the host (its log, and the reload's health). Call it once, in
    /// `startup`: a second call finds [`Nothing`](HandedOver::Nothing).
    ///
    /// ```no_run
    /// use plugin_api::HandedOver;
    /// # fn demo(ctx: plugin_api::Context) {
    /// let readings: Vec<f64> = match ctx.handed_over(1) {
    ///     HandedOver::Accepted(readings) => readings,
    ///     HandedOver::Nothing | HandedOver::Refused(_) => Vec::new(),
    /// };
    /// # }
    /// ```
    pub fn handed_over<T: serde::de::DeserializeOwned>(&self, version: u32) -> HandedOver<T> {
        self.handed_over_with(|handover| crate::handover::read_json(version, handover))
    }

    /// As [`handed_over`](Context::handed_over), with the plugin's own reader: it gets the
    /// [`Handover`] (version and bytes) and returns the state, or why it cannot use it
    /// (e.g. to migrate an older version).
    ///
    /// ```no_run
    /// use plugin_api::HandedOver;
    /// # fn demo(ctx: plugin_api::Context) {
    /// let count: HandedOver<u64> = ctx.handed_over_with(|handover| match handover.version() {
    ///     1 | 2 => serde_json::from_slice(handover.data()).map_err(|e| e.to_string()),
    ///     other => Err(format!("unknown state version {other}")),
    /// });
    /// # }
    /// ```
    pub fn handed_over_with<T>(
        &self,
        read: impl FnOnce(&Handover) -> std::result::Result<T, String>,
    ) -> HandedOver<T> {
        let Some(handover) = Option::from(self.inner.host.handed_over()) else {
            return HandedOver::Nothing;
        };
        let handover = Handover::from_ffi(handover);
        match read(&handover) {
            Ok(state) => {
                self.inner
                    .host
                    .handover_outcome(abi::handover_outcome::ACCEPTED, "".into());
                HandedOver::Accepted(state)
            }
            Err(why) => {
                self.inner
                    .host
                    .handover_outcome(abi::handover_outcome::REFUSED, why.as_str().into());
                HandedOver::Refused(why)
            }
        }
    }

    /// Whether this generation of the plugin is on its way out: a reload took its state and
    /// started the next generation, which serves (or is about to) beside it. The SDK's
    /// repeaters pause while it is true; a task of the plugin's own that publishes
    /// periodically should check it too, so that the overlap does not publish everything
    /// twice. It turns false again if that reload fails and this generation goes on.
    ///
    /// ```no_run
    /// # async fn demo(ctx: plugin_api::Context) -> plugin_api::Result<()> {
    /// if !ctx.is_retiring() {
    ///     ctx.publish("brewcast", "me", &1).await?;
    /// }
    /// # Ok(()) }
    /// ```
    pub fn is_retiring(&self) -> bool {
        self.inner.host.phase() == abi::phase::RETIRING
    }

    /// Resolves once the service serves this generation: the HTTP listener is bound and
    /// requests come to this generation's routes. `startup` runs before that (the host
    /// builds its router from what `startup` registered), so a task spawned there that
    /// needs the service up — a self-probe, an announcement — awaits this first. An error
    /// if this generation stops without ever serving (its reload failed, or the service
    /// stopped during startup). [Repeaters](Context::repeat) wait for it on their own.
    ///
    /// ```no_run
    /// # fn demo(ctx: plugin_api::Context) {
    /// let me = ctx.clone();
    /// ctx.spawn("announce", async move {
    ///     me.serving().await?;
    ///     me.publish("brewcast", "me", &"up").await
    /// });
    /// # }
    /// ```
    pub async fn serving(&self) -> Result<()> {
        match wait_phase(&self.inner.host, |p| p != abi::phase::STARTING).await {
            abi::phase::STOPPED => Err(Error::from_ffi(abi::FfiError::new(
                abi::error_code::WRONG_PHASE,
                "this generation of the plugin stopped without serving",
            ))),
            _ => Ok(()),
        }
    }
}

impl<S: Clone + Send + Sync + 'static> Context<S> {
    /// Serves `handler` at `route`, under the service prefix. Call it during `startup`;
    /// the host builds its router once every plugin has started. The route's OpenAPI entry
    /// is completed from the handler's extractors and return type.
    ///
    /// Fails for a path that clashes with another route or is malformed.
    ///
    /// ```no_run
    /// use plugin_api::{Json, Path, Route};
    ///
    /// async fn item(Path(id): Path<u32>) -> Json<serde_json::Value> {
    ///     Json(serde_json::json!({ "id": id }))
    /// }
    /// # fn demo(ctx: plugin_api::Context) -> plugin_api::Result<()> {
    /// ctx.route(Route::get("/items/{id}").summary("One item"), item)?;
    /// # Ok(()) }
    /// ```
    pub fn route<T: 'static, H: Handler<Request, T, S>>(
        &self,
        mut route: Route,
        handler: H,
    ) -> Result<()> {
        H::document(&mut route);
        let handler =
            abi::RouteHandler_TO::from_value(Adapter::new(handler, self.state.clone()), TD_Opaque);
        self.inner
            .host
            .add_route(
                route.method_name().into(),
                route.path().into(),
                route.docs_json().into(),
                handler,
            )
            .into_result()
            .map_err(Error::from_ffi)
    }

    /// Registers a named feature other plugins can call ([`Context::feature`]). Its handler
    /// takes the caller's input with [`Json<T>`](crate::Json) and returns a `Json<U>` (or a
    /// `Result` of one): both sides are typed, and an error keeps its
    /// [kind](crate::ErrorKind) on the way back. A name that is taken is a
    /// [`Conflict`](crate::ErrorKind::Conflict) error.
    ///
    /// ```no_run
    /// use plugin_api::Json;
    ///
    /// async fn double(Json(n): Json<i64>) -> plugin_api::Result<Json<i64>> {
    ///     n.checked_mul(2).map(Json).ok_or_else(|| plugin_api::Error::invalid("too large"))
    /// }
    /// # fn demo(ctx: plugin_api::Context) -> plugin_api::Result<()> {
    /// ctx.add_feature("double", double)?;
    /// # Ok(()) }
    /// ```
    pub fn add_feature<T: 'static, H: Handler<Call, T, S>>(
        &self,
        name: &str,
        handler: H,
    ) -> Result<()> {
        self.register_feature(name, false, handler).map(|_| ())
    }

    /// Like [`add_feature`](Context::add_feature), but keeps an existing feature of that
    /// name (the original's `exist_ok=True`). Returns whether this one was added.
    ///
    /// ```no_run
    /// use plugin_api::Json;
    /// # fn demo(ctx: plugin_api::Context) -> plugin_api::Result<()> {
    /// let added = ctx.add_feature_exist_ok("echo", |Json(v): Json<serde_json::Value>| async { Json(v) })?;
    /// # Ok(()) }
    /// ```
    pub fn add_feature_exist_ok<T: 'static, H: Handler<Call, T, S>>(
        &self,
        name: &str,
        handler: H,
    ) -> Result<bool> {
        self.register_feature(name, true, handler)
    }

    fn register_feature<T: 'static, H: Handler<Call, T, S>>(
        &self,
        name: &str,
        exist_ok: bool,
        handler: H,
    ) -> Result<bool> {
        let object = abi::Feature_TO::from_ptr(
            abi_stable::std_types::RArc::new(Adapter::new(handler, self.state.clone())),
            TD_Opaque,
        );
        self.inner
            .host
            .add_feature(name.into(), exist_ok, object)
            .into_result()
            .map_err(Error::from_ffi)
    }

    /// Subscribes to a topic exchange. Works at any time — before the bus is connected,
    /// during an outage, from a handler — the host declares it when it can and restores it
    /// after a reconnect. Each subscription has its own queue, and its handler gets its
    /// messages one at a time, in order. A handler's `Err` (or an extractor refusing the
    /// message, e.g. a payload that is not the JSON [`Json<T>`](crate::Json) wants) is
    /// logged by the host, and the next message is delivered.
    ///
    /// ```no_run
    /// use plugin_api::{Json, Topic};
    ///
    /// async fn on_state(Topic(key): Topic, Json(state): Json<serde_json::Value>) {
    ///     tracing::info!("{key}: {state}");
    /// }
    /// # fn demo(ctx: plugin_api::Context) -> plugin_api::Result<()> {
    /// ctx.subscribe("brewcast", "fermenter.#", on_state)?;
    /// # Ok(()) }
    /// ```
    pub fn subscribe<T: 'static, H: Handler<Message, T, S>>(
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
    /// use plugin_api::{ExchangeType, Json};
    /// # fn demo(ctx: plugin_api::Context) -> plugin_api::Result<()> {
    /// ctx.subscribe_with("alerts", "", ExchangeType::Fanout, |Json(alert): Json<String>| async move {
    ///     tracing::warn!("alert: {alert}");
    /// })?;
    /// # Ok(()) }
    /// ```
    pub fn subscribe_with<T: 'static, H: Handler<Message, T, S>>(
        &self,
        exchange: &str,
        routing: &str,
        exchange_type: ExchangeType,
        handler: H,
    ) -> Result<Subscription> {
        let request = Shared::default()
            .exchange_type(exchange_type)
            .amqp(exchange, routing);
        self.subscribe_ffi(request, handler)
    }

    /// Subscribes as a [shared](Shared) or durable subscription: with
    /// [`Shared::group`], each message goes to one of the service's instances subscribed in
    /// the group; with [`Shared::durable`], what is published while the service is away
    /// waits for it. Each message is acknowledged after its handler returned, so one whose
    /// instance dies while handling it is delivered again (to another instance, or at the
    /// next start): handlers must be idempotent, and
    /// [`Message::redelivered`] tells them a message may have been handled before. Cancelling
    /// it, a stop or a reload ends only this instance's consumer: the queue stays, with what
    /// it holds, for the others and the next start. An option the host refuses is an
    /// [`Invalid`](crate::ErrorKind::Invalid) error.
    ///
    /// ```no_run
    /// use plugin_api::{Json, Message, Shared};
    ///
    /// async fn on_job(Json(job): Json<serde_json::Value>, message: Message) {
    ///     if message.redelivered() {
    ///         tracing::info!("job {job} may have been started before");
    ///     }
    /// }
    /// # fn demo(ctx: plugin_api::Context) -> plugin_api::Result<()> {
    /// ctx.subscribe_shared("jobs", "brew.#", Shared::group("workers").prefetch(1), on_job)?;
    /// ctx.subscribe_shared("brewcast", "history.#", Shared::durable(), || async {})?;
    /// # Ok(()) }
    /// ```
    pub fn subscribe_shared<T: 'static, H: Handler<Message, T, S>>(
        &self,
        exchange: &str,
        routing: &str,
        shared: Shared,
        handler: H,
    ) -> Result<Subscription> {
        self.subscribe_ffi(shared.amqp(exchange, routing), handler)
    }

    fn subscribe_ffi<T: 'static, H: Handler<Message, T, S>>(
        &self,
        request: abi::FfiSubscribe,
        handler: H,
    ) -> Result<Subscription> {
        self.inner
            .host
            .subscribe(request, self.message_handler(handler))
            .into_result()
            .map(Subscription::new)
            .map_err(Error::from_ffi)
    }

    /// Subscribes to an MQTT topic filter (`+` one level, `#` any number, `a/b/#` matching
    /// `a/b` too), at QoS 0. Works before the broker is connected and during an outage; the
    /// host subscribes again after every reconnect. Handlers work as for
    /// [`subscribe`](Context::subscribe); [`Topic`](crate::Topic) is the MQTT topic.
    ///
    /// ```no_run
    /// use plugin_api::{Message, Topic};
    ///
    /// async fn on_any(message: Message) {
    ///     match message.json::<serde_json::Value>() {
    ///         Ok(state) => tracing::info!("{}: {state}", message.topic()),
    ///         Err(_) => tracing::info!("{}: {} bytes", message.topic(), message.payload().len()),
    ///     }
    /// }
    /// # fn demo(ctx: plugin_api::Context) -> plugin_api::Result<()> {
    /// ctx.mqtt_subscribe("brewcast/state/#", on_any)?;
    /// # Ok(()) }
    /// ```
    pub fn mqtt_subscribe<T: 'static, H: Handler<Message, T, S>>(
        &self,
        filter: &str,
        handler: H,
    ) -> Result<Subscription> {
        self.mqtt_subscribe_with(filter, QoS::AtMostOnce, handler)
    }

    /// [`mqtt_subscribe`](Context::mqtt_subscribe) with the QoS asked of the broker.
    ///
    /// ```no_run
    /// use plugin_api::{Json, QoS};
    /// # fn demo(ctx: plugin_api::Context) -> plugin_api::Result<()> {
    /// ctx.mqtt_subscribe_with("brewcast/history/#", QoS::AtLeastOnce, |Json(v): Json<serde_json::Value>| async move {
    ///     tracing::debug!("{v}");
    /// })?;
    /// # Ok(()) }
    /// ```
    pub fn mqtt_subscribe_with<T: 'static, H: Handler<Message, T, S>>(
        &self,
        filter: &str,
        qos: QoS,
        handler: H,
    ) -> Result<Subscription> {
        self.mqtt_subscribe_ffi(Shared::default().mqtt(filter, qos.level()), handler)
    }

    /// Subscribes to an MQTT topic filter in a [group](Shared::group) and/or
    /// [durable](Shared::durable), at QoS 1. In a group the broker hands each message to one
    /// of the group's subscribers (`$share/<group>/<filter>`): the subscription's
    /// [`routing`](Subscription::routing) is that shared filter; messages arrive on their own
    /// topics. Durable, it is made on the service's persistent session, which keeps what is
    /// published while the service is away and gets each message acknowledged after its
    /// handler returned. AMQP's queue options are refused (an
    /// [`Invalid`](crate::ErrorKind::Invalid) error).
    ///
    /// ```no_run
    /// use plugin_api::{Json, Shared};
    /// # fn demo(ctx: plugin_api::Context) -> plugin_api::Result<()> {
    /// ctx.mqtt_subscribe_shared("brewcast/history/#", Shared::group("history"), |Json(v): Json<serde_json::Value>| async move {
    ///     tracing::debug!("{v}");
    /// })?;
    /// # Ok(()) }
    /// ```
    pub fn mqtt_subscribe_shared<T: 'static, H: Handler<Message, T, S>>(
        &self,
        filter: &str,
        shared: Shared,
        handler: H,
    ) -> Result<Subscription> {
        let qos = QoS::AtLeastOnce.level();
        self.mqtt_subscribe_ffi(shared.mqtt(filter, qos), handler)
    }

    fn mqtt_subscribe_ffi<T: 'static, H: Handler<Message, T, S>>(
        &self,
        request: abi::FfiMqttSubscribe,
        handler: H,
    ) -> Result<Subscription> {
        self.inner
            .host
            .mqtt_subscribe(request, self.message_handler(handler))
            .into_result()
            .map(Subscription::new)
            .map_err(Error::from_ffi)
    }

    /// Replaces the handler of `subscription` (AMQP or MQTT); the next message goes to the
    /// new one.
    ///
    /// ```no_run
    /// # fn demo(ctx: plugin_api::Context) -> plugin_api::Result<()> {
    /// let sub = ctx.subscribe("brewcast", "#", || async {})?;
    /// ctx.set_handler(&sub, |message: plugin_api::Message| async move {
    ///     tracing::info!("now handled here: {}", message.topic());
    /// });
    /// # Ok(()) }
    /// ```
    pub fn set_handler<T: 'static, H: Handler<Message, T, S>>(
        &self,
        subscription: &Subscription,
        handler: H,
    ) {
        subscription
            .host()
            .set_handler(self.message_handler(handler));
    }

    fn message_handler<T: 'static, H: Handler<Message, T, S>>(
        &self,
        handler: H,
    ) -> abi::MessageHandlerBox {
        abi::MessageHandler_TO::from_value(Adapter::new(handler, self.state.clone()), TD_Opaque)
    }
}

/// Waits until the generation's phase satisfies `done` (or it stopped); the phase then.
pub(crate) async fn wait_phase(host: &abi::HostContextArc, done: impl Fn(u8) -> bool) -> u8 {
    let mut now = host.phase();
    while !done(now) && now != abi::phase::STOPPED {
        now = host.phase_changed(now).await;
    }
    now
}

impl<S> fmt::Debug for Context<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Context")
            .field("plugin", &self.inner.name)
            .finish()
    }
}
