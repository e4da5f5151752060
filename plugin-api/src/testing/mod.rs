//! A fake host for unit tests of a plugin: no host binary, no dynamic loading, no broker.
//!
//! [`TestHost`] implements the host's side of the ABI in-process, so a plugin's routes,
//! eventbus handlers, features and metrics go through the very adapters the real host calls,
//! and a test drives them directly: it sends requests, delivers eventbus messages, calls
//! features, steps repeaters, and reads what the plugin published and measured.
//!
//! ```
//! use plugin_api::{testing::TestHost, Arg, Context, Json, Plugin, Result, Route, State};
//!
//! #[derive(Default)]
//! struct Hello;
//!
//! async fn hello(State(greeting): State<String>) -> Json<serde_json::Value> {
//!     Json(serde_json::json!({ "hello": greeting }))
//! }
//!
//! impl Plugin for Hello {
//!     fn args() -> Vec<Arg> {
//!         vec![Arg::string("greeting").default("world")]
//!     }
//!
//!     async fn startup(self: std::sync::Arc<Self>, ctx: &Context) -> Result<()> {
//!         let greeting: String = ctx.config().get("greeting")?;
//!         ctx.with_state(greeting).route(Route::get("/hello"), hello)
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<()> {
//! // In a plugin crate: `#[tokio::test] async fn greets() -> plugin_api::Result<()> { … }`.
//! let host = TestHost::builder(Hello).arg("greeting", "brewer").start().await?;
//! let response = host.get("/hello").await;
//! assert_eq!(response.status(), 200);
//! assert_eq!(response.json::<serde_json::Value>()?["hello"], "brewer");
//! host.stop().await
//! # }
//! ```
//!
//! Everything the plugin does runs on the test's tokio runtime: tasks it spawns, its timers
//! (so `#[tokio::test(start_paused = true)]` controls its clock; that needs tokio's
//! `test-util` feature in the plugin's dev-dependencies), and its repeaters, which do not
//! loop on their own under the kit: the test runs them one step at a time with
//! [`TestHost::step`].
//!
//! What a task publishes later is awaited with [`TestHost::wait_published`] and
//! [`TestHost::wait_mqtt_published`] (bounded by a timeout), not slept for. A hot swap's
//! state handover is tested with [`TestHost::handover`] on the old plugin and
//! [`TestHostBuilder::handed_over`] for the new one, whose
//! [`handover_outcome`](TestHost::handover_outcome) says what it made of it. Under the kit
//! the plugin serves ([`Context::serving`]) as soon as `startup` returned.

mod bus;
mod config;
mod eventbus;
mod host;
mod http;
mod metrics;
mod repeaters;
mod routes;
mod tasks;
#[cfg(test)]
mod tests;

use std::{
    future::Future,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
};

use abi_stable::{
    sabi_trait::TD_Opaque,
    std_types::{RArc, RResult},
};
use serde::{de::DeserializeOwned, Serialize};
use serde_json::Value;

use crate::{
    abi::{self, error_code, FfiError},
    handler::{Adapter, Handler},
    runtime, Call, Config, Context, Error, HandedOver, Handover, Plugin, Result,
};

pub use eventbus::{MqttPublished, Published, TestSubscription};
pub use http::{TestRequest, TestResponse};
pub(crate) use repeaters::Repeaters;

use host::{KitHost, State};

/// The name a plugin has under the kit unless the builder sets another.
const DEFAULT_PLUGIN_NAME: &str = "test-plugin";

/// A started plugin on a fake host. Made with [`TestHost::start`] or
/// [`TestHost::builder`]; dropping it cancels the plugin's tasks, [`stop`](TestHost::stop)
/// runs its shutdown hooks as well.
///
/// ```
/// # use plugin_api::{testing::TestHost, Context, Plugin, Result};
/// # #[derive(Default)] struct Quiet;
/// # impl Plugin for Quiet { async fn startup(self: std::sync::Arc<Self>, _: &Context) -> Result<()> { Ok(()) } }
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<()> {
/// let host = TestHost::start(Quiet).await?;
/// assert_eq!(host.config().name(), "test");
/// host.stop().await
/// # }
/// ```
pub struct TestHost<P> {
    plugin: Arc<P>,
    ctx: Context,
    state: Arc<State>,
    repeaters: Repeaters,
    stopped: AtomicBool,
}

/// Configures a [`TestHost`] before the plugin starts: its arguments, the service name, and
/// the features other plugins would offer it.
pub struct TestHostBuilder<P> {
    plugin: P,
    plugin_name: String,
    args: Vec<(String, Value)>,
    features: Vec<(String, abi::FeatureArc)>,
    handover: Option<Handover>,
}

impl<P: Plugin> TestHostBuilder<P> {
    /// Sets an argument, as `--name value` would on the host's command line: one the plugin
    /// declares in [`Plugin::args`] (the others get their defaults) or a common option such
    /// as `name`, `debug`, `state-topic`, `mqtt` or `amqp` (the last two say whether that
    /// eventbus is in use). Strings are parsed for numeric and flag arguments.
    ///
    /// ```
    /// # use plugin_api::{testing::TestHost, Arg, Context, Plugin, Result};
    /// # #[derive(Default)] struct Device;
    /// # impl Plugin for Device {
    /// #     fn args() -> Vec<Arg> { vec![Arg::float("update-interval").default(5.0)] }
    /// #     async fn startup(self: std::sync::Arc<Self>, _: &Context) -> Result<()> { Ok(()) }
    /// # }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<()> {
    /// let host = TestHost::builder(Device).arg("update-interval", "0.5").start().await?;
    /// assert_eq!(host.config().get::<f64>("update-interval")?, 0.5);
    /// # Ok(()) }
    /// ```
    pub fn arg(mut self, name: &str, value: impl Into<Value>) -> Self {
        self.args.push((name.to_owned(), value.into()));
        self
    }

    /// The service name (`--name`, `test` by default): the prefix of every route.
    ///
    /// ```
    /// # use plugin_api::{testing::TestHost, Context, Plugin, Result};
    /// # #[derive(Default)] struct Quiet;
    /// # impl Plugin for Quiet { async fn startup(self: std::sync::Arc<Self>, _: &Context) -> Result<()> { Ok(()) } }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<()> {
    /// let host = TestHost::builder(Quiet).name("fermenter").start().await?;
    /// assert_eq!(host.config().name(), "fermenter");
    /// # Ok(()) }
    /// ```
    pub fn name(self, name: &str) -> Self {
        self.arg("name", name)
    }

    /// The plugin's own name ([`Context::plugin_name`]); `test-plugin` by default. The host
    /// uses the plugin crate's name: pass `env!("CARGO_PKG_NAME")` to match it.
    ///
    /// ```
    /// # use plugin_api::{testing::TestHost, Context, Plugin, Result};
    /// # #[derive(Default)] struct Quiet;
    /// # impl Plugin for Quiet { async fn startup(self: std::sync::Arc<Self>, _: &Context) -> Result<()> { Ok(()) } }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<()> {
    /// let host = TestHost::builder(Quiet).plugin_name("quiet-plugin").start().await?;
    /// assert_eq!(host.context().plugin_name(), "quiet-plugin");
    /// # Ok(()) }
    /// ```
    pub fn plugin_name(mut self, name: &str) -> Self {
        self.plugin_name = name.to_owned();
        self
    }

    /// Offers a feature as another plugin of the host would, for a plugin that looks one up
    /// with [`Context::feature`].
    ///
    /// ```
    /// # use plugin_api::{testing::TestHost, Context, Plugin, Result};
    /// # #[derive(Default)] struct Quiet;
    /// # impl Plugin for Quiet { async fn startup(self: std::sync::Arc<Self>, _: &Context) -> Result<()> { Ok(()) } }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<()> {
    /// let host = TestHost::builder(Quiet)
    ///     .feature("clock", || async { plugin_api::Json(1234u64) })
    ///     .start()
    ///     .await?;
    /// let now: u64 = host.context().feature("clock")?.call(&()).await?;
    /// assert_eq!(now, 1234);
    /// # Ok(()) }
    /// ```
    pub fn feature<T: 'static, H: Handler<Call, T, ()>>(mut self, name: &str, handler: H) -> Self {
        let object = abi::Feature_TO::from_ptr(RArc::new(Adapter::new(handler, ())), TD_Opaque);
        self.features.push((name.to_owned(), object));
        self
    }

    /// Hands `state` to the plugin as its previous generation would at a hot swap: its
    /// `startup` finds it with [`Context::handed_over`]. Take it from another `TestHost`
    /// with [`TestHost::handover`] to test a whole swap.
    ///
    /// ```
    /// # use std::sync::{Arc, Mutex};
    /// # use plugin_api::{testing::TestHost, Context, HandedOver, Handover, Plugin, Result};
    /// #[derive(Default)]
    /// struct Counter { count: Mutex<u64> }
    /// impl Plugin for Counter {
    ///     async fn startup(self: Arc<Self>, ctx: &Context) -> Result<()> {
    ///         if let HandedOver::Accepted(n) = ctx.handed_over(1) {
    ///             *self.count.lock().unwrap() = n;
    ///         }
    ///         Ok(())
    ///     }
    ///     async fn handover(&self, _: &Context) -> Result<Option<Handover>> {
    ///         Handover::json(1, &*self.count.lock().unwrap()).map(Some)
    ///     }
    /// }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<()> {
    /// let old = TestHost::start(Counter { count: Mutex::new(41) }).await?;
    /// let state = old.handover().await?.expect("a state");
    /// let new = TestHost::builder(Counter::default()).handed_over(state).start().await?;
    /// assert_eq!(*new.plugin().count.lock().unwrap(), 41);
    /// assert_eq!(new.handover_outcome(), HandedOver::Accepted(()));
    /// let refused = TestHost::builder(Counter::default())
    ///     .handed_over(Handover::json(2, &41)?)
    ///     .start()
    ///     .await?;
    /// assert!(matches!(refused.handover_outcome(), HandedOver::Refused(_)));
    /// # Ok(()) }
    /// ```
    pub fn handed_over(mut self, state: Handover) -> Self {
        self.handover = Some(state);
        self
    }

    /// Runs the plugin's `startup` on the fake host; its error (or panic, as an error) is
    /// returned, as the host would refuse to start. Needs a tokio runtime (`#[tokio::test]`).
    /// Routes can be added only until `startup` returns, as on the host.
    ///
    /// ```
    /// # use plugin_api::{testing::TestHost, Context, Error, Plugin, Result};
    /// #[derive(Default)]
    /// struct Broken;
    /// impl Plugin for Broken {
    ///     async fn startup(self: std::sync::Arc<Self>, _ctx: &Context) -> Result<()> {
    ///         Err(Error::msg("no device"))
    ///     }
    /// }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let err = TestHost::start(Broken).await.err().unwrap();
    /// assert_eq!(err.message(), "no device");
    /// # }
    /// ```
    pub async fn start(self) -> Result<TestHost<P>> {
        runtime::use_caller_runtime();
        let handle = tokio::runtime::Handle::try_current()
            .map_err(|_| Error::msg("TestHost needs a tokio runtime (use #[tokio::test])"))?;
        let config = config::build(&P::args(), &self.args)?;
        let state = Arc::new(State::new(&self.plugin_name, &config, handle));
        *host::lock(&state.handed) = self.handover.map(Handover::into_ffi);
        for (name, feature) in self.features {
            let added = state.features.add("another plugin", &name, false, feature);
            added.map_err(Error::from_ffi)?;
        }
        let host = abi::HostContext_TO::from_ptr(RArc::new(KitHost(Arc::clone(&state))), TD_Opaque);
        let repeaters = Repeaters::default();
        let ctx = Context::with_repeaters(host, Some(repeaters.clone()))?;
        let plugin = Arc::new(self.plugin);
        let started = guarded(Arc::clone(&plugin).startup(&ctx)).await;
        state.routes().freeze();
        if let Err(err) = started {
            state.tasks.cancel_all();
            state.phase.send_replace(abi::phase::STOPPED);
            return Err(err);
        }
        // Serving as soon as startup returned, as the host is once it bound its listener.
        state.phase.send_replace(abi::phase::SERVING);
        Ok(TestHost {
            plugin,
            ctx,
            state,
            repeaters,
            stopped: AtomicBool::new(false),
        })
    }
}

impl<P: Plugin> TestHost<P> {
    /// A builder for a host with arguments, a service name or features of other plugins.
    ///
    /// ```
    /// # use plugin_api::{testing::TestHost, Context, Plugin, Result};
    /// # #[derive(Default)] struct Quiet;
    /// # impl Plugin for Quiet { async fn startup(self: std::sync::Arc<Self>, _: &Context) -> Result<()> { Ok(()) } }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<()> {
    /// let host = TestHost::builder(Quiet).name("svc").start().await?;
    /// # Ok(()) }
    /// ```
    pub fn builder(plugin: P) -> TestHostBuilder<P> {
        TestHostBuilder {
            plugin,
            plugin_name: DEFAULT_PLUGIN_NAME.to_owned(),
            args: Vec::new(),
            features: Vec::new(),
            handover: None,
        }
    }

    /// Starts `plugin` with the default configuration: every argument's default, service
    /// name `test`.
    ///
    /// ```
    /// # use plugin_api::{testing::TestHost, Context, Plugin, Result};
    /// # #[derive(Default)] struct Quiet;
    /// # impl Plugin for Quiet { async fn startup(self: std::sync::Arc<Self>, _: &Context) -> Result<()> { Ok(()) } }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<()> {
    /// let host = TestHost::start(Quiet::default()).await?;
    /// # Ok(()) }
    /// ```
    pub async fn start(plugin: P) -> Result<Self> {
        Self::builder(plugin).start().await
    }

    /// The plugin, for a look at its state.
    ///
    /// ```
    /// # use plugin_api::{testing::TestHost, Context, Plugin, Result};
    /// # #[derive(Default)] struct Quiet { level: u8 }
    /// # impl Plugin for Quiet { async fn startup(self: std::sync::Arc<Self>, _: &Context) -> Result<()> { Ok(()) } }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<()> {
    /// let host = TestHost::start(Quiet { level: 3 }).await?;
    /// assert_eq!(host.plugin().level, 3);
    /// # Ok(()) }
    /// ```
    pub fn plugin(&self) -> &P {
        &self.plugin
    }

    /// The context the plugin got: act as the plugin would (publish, look up a feature).
    ///
    /// ```
    /// # use plugin_api::{testing::TestHost, Context, Plugin, Result};
    /// # #[derive(Default)] struct Quiet;
    /// # impl Plugin for Quiet { async fn startup(self: std::sync::Arc<Self>, _: &Context) -> Result<()> { Ok(()) } }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<()> {
    /// let host = TestHost::start(Quiet).await?;
    /// assert_eq!(host.context().plugin_name(), "test-plugin");
    /// # Ok(()) }
    /// ```
    pub fn context(&self) -> &Context {
        &self.ctx
    }

    /// The plugin's configuration.
    ///
    /// ```
    /// # use plugin_api::{testing::TestHost, Context, Plugin, Result};
    /// # #[derive(Default)] struct Quiet;
    /// # impl Plugin for Quiet { async fn startup(self: std::sync::Arc<Self>, _: &Context) -> Result<()> { Ok(()) } }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<()> {
    /// let host = TestHost::start(Quiet).await?;
    /// assert_eq!(host.config().port(), 5000);
    /// # Ok(()) }
    /// ```
    pub fn config(&self) -> &Config {
        self.ctx.config()
    }

    /// Shuts the plugin down as the host does: `before_shutdown`, then the eventbus (the
    /// MQTT will is published, subscriptions end), then its tasks are cancelled and
    /// `shutdown` runs. Returns the first hook's error. A second call is an error.
    ///
    /// ```
    /// # use plugin_api::{testing::TestHost, Context, Plugin, Result};
    /// # #[derive(Default)] struct Quiet;
    /// # impl Plugin for Quiet { async fn startup(self: std::sync::Arc<Self>, _: &Context) -> Result<()> { Ok(()) } }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<()> {
    /// let host = TestHost::start(Quiet).await?;
    /// host.stop().await?;
    /// assert!(host.stop().await.is_err());
    /// # Ok(()) }
    /// ```
    pub async fn stop(&self) -> Result<()> {
        if self.stopped.swap(true, Ordering::SeqCst) {
            return Err(wrong_phase("the plugin is stopped already"));
        }
        let before = guarded(self.plugin.before_shutdown(&self.ctx)).await;
        self.state.bus.close();
        self.state.tasks.cancel_all();
        self.repeaters.cancel_all();
        let after = guarded(self.plugin.shutdown(&self.ctx)).await;
        self.state.phase.send_replace(abi::phase::STOPPED);
        before.and(after)
    }

    /// Calls the plugin's [`Plugin::handover`] as the host does at a hot swap: the plugin
    /// is retiring from then on ([`Context::is_retiring`]). The state is checked against
    /// [`MAX_HANDOVER_BYTES`](crate::MAX_HANDOVER_BYTES) as the host checks it. Give it to
    /// the next generation with [`TestHostBuilder::handed_over`].
    pub async fn handover(&self) -> Result<Option<Handover>> {
        self.state.phase.send_replace(abi::phase::RETIRING);
        let state = guarded(self.plugin.handover(&self.ctx)).await?;
        if let Some(state) = &state {
            if state.data().len() > crate::MAX_HANDOVER_BYTES {
                return Err(Error::invalid(format!(
                    "handover of {} bytes is larger than the limit of {} bytes",
                    state.data().len(),
                    crate::MAX_HANDOVER_BYTES
                )));
            }
        }
        Ok(state)
    }

    /// What the plugin made of the state given with [`TestHostBuilder::handed_over`]:
    /// `Nothing` if it never asked (or nothing was given), else whether it accepted it.
    pub fn handover_outcome(&self) -> HandedOver<()> {
        match host::lock(&self.state.handover_outcome).clone() {
            None => HandedOver::Nothing,
            Some((true, _)) => HandedOver::Accepted(()),
            Some((false, why)) => HandedOver::Refused(why),
        }
    }

    /// Calls a feature by name (registered by the plugin, or given to the builder) with
    /// `input` as JSON, decoding its answer: what another plugin would get.
    ///
    /// ```
    /// # use plugin_api::{testing::TestHost, Context, Json, Plugin, Result};
    /// #[derive(Default)]
    /// struct Doubler;
    /// impl Plugin for Doubler {
    ///     async fn startup(self: std::sync::Arc<Self>, ctx: &Context) -> Result<()> {
    ///         ctx.add_feature("double", |Json(n): Json<i64>| async move { Json(n * 2) })
    ///     }
    /// }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<()> {
    /// let host = TestHost::start(Doubler).await?;
    /// assert_eq!(host.feature::<_, i64>("double", &21).await?, 42);
    /// assert_eq!(host.feature_names(), ["double"]);
    /// # Ok(()) }
    /// ```
    pub async fn feature<I, O>(&self, name: &str, input: &I) -> Result<O>
    where
        I: Serialize + ?Sized,
        O: DeserializeOwned,
    {
        self.ctx.feature(name)?.call(input).await
    }

    /// The names of every registered feature, in name order.
    pub fn feature_names(&self) -> Vec<String> {
        let features = self.state.features.list();
        features.into_iter().map(|(name, _)| name).collect()
    }

    /// The names of the tasks still running ([`Context::spawn`]; repeaters are not tasks
    /// under the kit, see [`TestHost::repeaters`]).
    ///
    /// ```
    /// # use plugin_api::{testing::TestHost, Context, Plugin, Result};
    /// #[derive(Default)]
    /// struct Ticker;
    /// impl Plugin for Ticker {
    ///     async fn startup(self: std::sync::Arc<Self>, ctx: &Context) -> Result<()> {
    ///         ctx.spawn("tick", std::future::pending::<()>());
    ///         Ok(())
    ///     }
    /// }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<()> {
    /// let host = TestHost::start(Ticker).await?;
    /// assert_eq!(host.running_tasks(), ["tick"]);
    /// host.stop().await?;
    /// assert!(host.running_tasks().is_empty());
    /// # Ok(()) }
    /// ```
    pub fn running_tasks(&self) -> Vec<String> {
        self.state.tasks.running()
    }

    /// Tasks that ended with an error or a panic, as (name, reason): what the host would log.
    pub fn failed_tasks(&self) -> Vec<(String, String)> {
        self.state.tasks.failures()
    }
}

impl<P> Drop for TestHost<P> {
    /// Cancels the tasks and lets go of the plugin's handlers, which hold its `Context` and
    /// through it this host: without that, every test would leak its plugin.
    fn drop(&mut self) {
        self.state.tasks.cancel_all();
        self.state.release();
    }
}

/// Runs plugin code as the SDK's adapters do: a panic becomes an error (`panicked: …`).
async fn guarded<T>(fut: impl Future<Output = Result<T>>) -> Result<T> {
    match runtime::Guarded::new(async { Ok::<_, abi_stable::std_types::RString>(fut.await) }).await
    {
        RResult::ROk(result) => result,
        RResult::RErr(panic) => Err(Error::msg(panic.into_string())),
    }
}

fn wrong_phase(message: &str) -> Error {
    Error::from_ffi(FfiError::new(error_code::WRONG_PHASE, message))
}
