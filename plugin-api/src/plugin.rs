//! The trait a plugin implements.

use std::{future::Future, sync::Arc};

use crate::{Arg, Context, Result};

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
    /// subscriptions and tasks here.
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
}
