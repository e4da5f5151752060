//! The SDK for brewblox-host plugins, and the stable ABI underneath it.
//!
//! A plugin is a `cdylib` crate that depends on this one, implements [`Plugin`] and exports
//! it with [`export_plugin!`]. Everything else — routes, configuration, background tasks,
//! shared features, the eventbus — goes through the [`Context`] its hooks receive. Plain
//! async Rust works throughout: tokio timers, `tokio::spawn` and tokio-based crates run on
//! a small runtime private to the plugin, and `tracing` macros log through the host.
//!
//! Handlers are async functions of extractors, as in axum — for routes, eventbus
//! subscriptions and features alike — and the API documentation of a route comes from
//! the types its handler takes and returns:
//!
//! ```
//! use std::sync::{Arc, Mutex};
//! use plugin_api::prelude::*;
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Default)]
//! struct Thermostat {
//!     setpoint: Mutex<f64>,
//! }
//!
//! /// The body of `PUT /setpoint`.
//! #[derive(Deserialize, Serialize, JsonSchema)]
//! struct Setpoint {
//!     /// Target temperature (°C).
//!     setpoint: f64,
//! }
//!
//! async fn put_setpoint(
//!     State(thermostat): State<Arc<Thermostat>>,
//!     Json(body): Json<Setpoint>,
//! ) -> Result<Json<Setpoint>> {
//!     if !(0.0..=100.0).contains(&body.setpoint) {
//!         return Err(Error::invalid("from 0 to 100 °C").field("setpoint"));
//!     }
//!     *thermostat.setpoint.lock().unwrap() = body.setpoint;
//!     Ok(Json(body))
//! }
//!
//! impl Plugin for Thermostat {
//!     async fn startup(self: Arc<Self>, ctx: &Context) -> Result<()> {
//!         ctx.with_state(self)
//!             .route(Route::put("/setpoint").summary("Change the setpoint"), put_setpoint)
//!     }
//! }
//!
//! export_plugin!(Thermostat);
//! ```
//!
//! [`testing`] runs a plugin's routes, subscriptions, features and repeaters in a unit test,
//! without a host.
//!
//! The [`abi`] module is what crosses the library boundary (the `plugin-abi` crate, the host's
//! only dependency on this side); plugin code never needs it.

/// The stable ABI: the `plugin-abi` crate, which the host depends on. Plugin code never needs
/// it; the rest of this crate wraps it.
pub use plugin_abi as abi;

mod bus;
mod config;
mod context;
mod decode;
mod error;
mod export;
mod extract;
mod feature;
mod handler;
mod handover;
mod logging;
mod message;
pub mod metrics;
mod mqtt;
pub mod openapi;
pub mod publishes;

mod plugin;
mod repeater;
mod request;
mod response;
mod retry;
mod route;
mod runtime;
mod shared;
mod task;
pub mod testing;
mod timestamp;

pub use abi::{panic_text, Arg, ArgKind};
pub use bus::{ExchangeType, Publish, Subscription};
pub use config::{AmqpSettings, Config, MqttSettings, ServiceConfig};
pub use context::Context;
pub use error::{Error, ErrorKind, Result};
#[doc(hidden)]
pub use export::__private;
pub use extract::{ByRef, Call, Extract, ExtractOwned, Json, Path, Query, State, Topic, Whole};
pub use feature::Feature;
pub use handler::{Handler, Input, Reply};
pub use handover::{HandedOver, Handover, MAX_HANDOVER_BYTES};
/// The `http` crate: [`StatusCode`](http::StatusCode), [`Method`](http::Method),
/// [`HeaderMap`](http::HeaderMap) (an extractor), and `http::Request`/`http::Response`,
/// which convert to and from the SDK's [`Request`] and [`Response`].
pub use http;
pub use message::Message;
pub use metrics::{Counter, Gauge, Histogram};
pub use mqtt::QoS;
pub use plugin::Plugin;
pub use publishes::{Publisher, Publishes};
pub use repeater::{Repeat, Repeater};
pub use request::{Request, RequestBuilder};
pub use response::{IntoResponse, Response};
pub use retry::{Retry, MAX_RETRY_ATTEMPTS};
pub use route::Route;
/// The schemars crate, which derives the JSON schemas of the API documentation. With
/// `schemars` in scope (`use plugin_api::prelude::*`), `#[derive(JsonSchema)]` needs no
/// attribute.
pub use schemars;
/// Derives a JSON schema for the API documentation of the types a handler takes and
/// returns ([`Json`], [`Path`], [`Query`]).
pub use schemars::JsonSchema;
pub use shared::Shared;
pub use task::{TaskHandle, TaskOutput};
pub use timestamp::rfc3339;

// This crate and its ABI crate always have the same version: `abi::API_VERSION` is what a
// plugin records as the plugin-api version it was built against.
const _: () = assert!(
    same_text(abi::API_VERSION, env!("CARGO_PKG_VERSION")),
    "plugin-api and plugin-abi must have the same version"
);

const fn same_text(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// What most plugins use, in one import: `use plugin_api::prelude::*;`. It also brings
/// `schemars` into scope, which `#[derive(JsonSchema)]` expands to.
pub mod prelude {
    pub use crate::{
        export_plugin, http::StatusCode, schemars, Arg, Context, Error, ErrorKind, HandedOver,
        Handover, IntoResponse, Json, JsonSchema, Message, Path, Plugin, Publisher, Publishes, QoS,
        Query, Repeat, Repeater, Request, Response, Result, Route, Shared, State, Subscription,
        Topic,
    };
}
