//! The SDK for brewblox-host plugins, and the stable ABI underneath it.
//!
//! A plugin is a `cdylib` crate that depends on this one, implements [`Plugin`] and exports
//! it with [`export_plugin!`]. Everything else — routes, configuration, background tasks,
//! shared features, the eventbus — goes through the [`Context`] its hooks receive. Plain
//! async Rust works throughout: tokio timers, `tokio::spawn` and tokio-based crates run on
//! a small runtime private to the plugin, and `tracing` macros log through the host.
//!
//! ```
//! use plugin_api::{export_plugin, Context, Json, Plugin, Request, Result, Route};
//!
//! #[derive(Default)]
//! struct Hello;
//!
//! impl Plugin for Hello {
//!     async fn startup(&self, ctx: &Context) -> Result<()> {
//!         ctx.route(Route::get("/hello"), |_req: Request| async {
//!             Ok(Json(serde_json::json!({"hello": "world"})))
//!         })
//!     }
//! }
//!
//! export_plugin!(Hello);
//! ```
//!
//! The [`abi`] module is what crosses the library boundary; plugin code never needs it.

pub mod abi;
mod bus;
mod config;
mod context;
mod error;
mod export;
mod feature;
mod http;
mod logging;
pub mod metrics;
mod mqtt;
pub mod openapi;
pub mod panics;
mod plugin;
mod repeater;
mod route;
mod runtime;
mod task;
mod timestamp;

pub use bus::{ExchangeType, MessageFn, Publish, Subscription};
pub use config::{Arg, ArgKind, Config};
pub use context::Context;
pub use error::{Error, ErrorKind, Result};
#[doc(hidden)]
pub use export::__private;
pub use feature::Feature;
pub use http::{Handler, IntoResponse, Json, Method, Request, RequestBuilder, Response};
pub use metrics::{Counter, Gauge, Histogram};
pub use mqtt::{MqttFn, MqttMessage, QoS};
pub use panics::panic_text;
pub use plugin::Plugin;
pub use repeater::{Repeat, Repeater};
pub use route::Route;
/// The schemars crate, for `#[schemars(crate = "plugin_api::schemars")]` and its attributes.
pub use schemars;
/// Derives a JSON schema for route documentation ([`Route::request_body`],
/// [`Route::response`], [`Route::query`]); see [`Route`].
pub use schemars::JsonSchema;
pub use task::{TaskHandle, TaskOutput};
pub use timestamp::rfc3339;
