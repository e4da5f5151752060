//! brewblox-host: a plugin host for BrewBlox-style backend services.
//!
//! `main.rs` only calls [`app::main`]. The pieces, each in its own module:
//! - [`cli`]: the command line (clap), environment and `@file` arguments;
//! - [`logging`]: the brewblox log format on stderr and an optional rotated file;
//! - [`names`]: the rules for service, plugin and argument names;
//! - [`phases`]: where the time of a start or a reload goes, for the debug log;
//! - [`plugins`]: loading libraries and the services plugins get (routes, tasks, features);
//! - [`http`]: the axum app (prefix, CORS, error bodies, status, plugin routes);
//! - [`eventbus`]: what both eventbuses share (a subscription, its sink, a message's
//!   delivery into its handler); [`bus`]: the AMQP transport; [`mqtt`]: the MQTT transport;
//!   [`broker_list`]: the broker address lists both try in turn;
//! - [`metrics`]: the Prometheus metrics of the process;
//! - [`service`]: the running service, its generations of plugins and hot reload;
//! - [`reloads`]: the record of reloads that health and the operator page show;
//! - [`app`], [`boot`], [`check`] and [`shutdown`]: the process, what a start and a reload
//!   read and load, `brewblox-host check`, and signals; [`fd_table`]: the process's table of
//!   open files, grown before its first thread.

pub mod app;
pub mod boot;
pub mod broker;
pub mod broker_list;
pub mod bus;
pub mod check;
pub mod cli;
pub mod eventbus;
pub mod fd_table;
pub mod http;
pub mod logging;
pub mod metrics;
pub mod mqtt;
pub mod names;
pub mod phases;
pub mod plugins;
pub mod reloads;
pub mod service;
pub mod shutdown;
pub mod sync;
pub mod window;
