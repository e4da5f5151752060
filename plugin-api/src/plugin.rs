//! The trait a plugin implements.

use std::{future::Future, sync::Arc};

use crate::{Arg, Context, Handover, Result};

/// A brewblox-host plugin: one application-scoped feature with async lifecycle hooks
/// (brewblox-service's `ServiceFeature`).
///
/// The host creates the plugin (with `Default`, or the constructor given to
/// [`export_plugin!`](crate::export_plugin)), then calls `startup` on every plugin in load
/// order. On SIGINT/SIGTERM it calls `before_shutdown` on all of them while HTTP stops
/// accepting, waits for in-flight requests, cancels the plugin's tasks and calls `shutdown`
/// in reverse load order.
///
/// An `Err` or a panic in `startup` stops the host from starting; in the other hooks it is
/// logged with the plugin's name.
///
/// `startup` receives the plugin as an `Arc`, so that it can hand itself to its handlers as
/// their [`State`](crate::State):
///
/// ```
/// use std::sync::{Arc, OnceLock};
/// use plugin_api::{export_plugin, Arg, Context, Json, Plugin, Result, Route, State};
///
/// #[derive(Default)]
/// struct Hello {
///     greeting: OnceLock<String>,
/// }
///
/// async fn hello(State(plugin): State<Arc<Hello>>) -> Json<serde_json::Value> {
///     Json(serde_json::json!({ "hello": plugin.greeting.get() }))
/// }
///
/// impl Plugin for Hello {
///     fn args() -> Vec<Arg> {
///         vec![Arg::string("greeting").default("world").help("Who to greet")]
///     }
///
///     async fn startup(self: Arc<Self>, ctx: &Context) -> Result<()> {
///         let _ = self.greeting.set(ctx.config().get("greeting")?);
///         ctx.with_state(self).route(Route::get("/hello"), hello)
///     }
/// }
///
/// export_plugin!(Hello);
/// ```
pub trait Plugin: Send + Sync + 'static {
    /// Command-line arguments this plugin adds to the host's parser.
    fn args() -> Vec<Arg>
    where
        Self: Sized,
    {
        Vec::new()
    }

    /// Called once at start, before the HTTP server accepts requests. Register routes,
    /// subscriptions and tasks here. The service serves this plugin's routes only once
    /// every plugin's `startup` returned: a task spawned here that needs the service up
    /// awaits [`Context::serving`] first ([repeaters](Context::repeat) wait for it on their
    /// own). At a hot swap, read what the previous generation handed over here
    /// ([`Context::handed_over`]).
    fn startup(self: Arc<Self>, ctx: &Context) -> impl Future<Output = Result<()>> + Send;

    /// Called when shutdown begins, before in-flight requests are drained: tell long-running
    /// work (streams, loops) to finish.
    fn before_shutdown(&self, ctx: &Context) -> impl Future<Output = Result<()>> + Send {
        let _ = ctx;
        async { Ok(()) }
    }

    /// Called last, after requests are drained and the plugin's tasks are cancelled.
    fn shutdown(&self, ctx: &Context) -> impl Future<Output = Result<()>> + Send {
        let _ = ctx;
        async { Ok(()) }
    }

    /// At a hot swap, the state to hand to this plugin's next generation, which reads it
    /// with [`Context::handed_over`] in its `startup`. Called on the outgoing generation
    /// while it still serves, just before the next one starts; from then on
    /// [`Context::is_retiring`] is true. `None` (the default): the next generation starts
    /// empty. An `Err`, a panic, more than [`MAX_HANDOVER_BYTES`](crate::MAX_HANDOVER_BYTES)
    /// or more than the host's `--hook-timeout` is logged and hands nothing over; the
    /// reload goes on.
    ///
    /// ```
    /// use std::sync::{Arc, Mutex};
    /// use plugin_api::{Context, HandedOver, Handover, Plugin, Result};
    ///
    /// #[derive(Default)]
    /// struct Counter { count: Mutex<u64> }
    ///
    /// /// The format of the handed-over state; bump it when `count`'s meaning changes.
    /// const STATE_VERSION: u32 = 1;
    ///
    /// impl Plugin for Counter {
    ///     async fn startup(self: Arc<Self>, ctx: &Context) -> Result<()> {
    ///         if let HandedOver::Accepted(count) = ctx.handed_over::<u64>(STATE_VERSION) {
    ///             *self.count.lock().unwrap() = count;
    ///         }
    ///         Ok(())
    ///     }
    ///
    ///     async fn handover(&self, _ctx: &Context) -> Result<Option<Handover>> {
    ///         let count = *self.count.lock().unwrap();
    ///         Handover::json(STATE_VERSION, &count).map(Some)
    ///     }
    /// }
    /// ```
    fn handover(&self, ctx: &Context) -> impl Future<Output = Result<Option<Handover>>> + Send {
        let _ = ctx;
        async { Ok(None) }
    }
}
