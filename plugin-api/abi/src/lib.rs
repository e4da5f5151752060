//! The stable ABI between brewblox-host and its plugins: everything that crosses the library
//! boundary, and nothing else.
//!
//! The host depends on this crate alone; plugins depend on `plugin-api`, the SDK, which wraps
//! it (and re-exports it as `plugin_api::abi`). Plugin authors never need it directly.
//!
//! What is here:
//! - the `#[repr(C)]` + [`StableAbi`](abi_stable::StableAbi) types and the `#[sabi_trait]`
//!   interfaces, checked by abi_stable when a plugin is loaded, and the root module
//!   ([`PluginMod`]) every plugin exports;
//! - [`API_VERSION`] and the [`ABI_FINGERPRINT`] (a hash of this crate's sources, see
//!   `build.rs`);
//! - the JSON contracts the host reads: the argument specs a plugin declares ([`Arg`]) and
//!   how a route's documentation carries its schemas ([`openapi`]);
//! - [`mqtt_names`]: which MQTT topics and filters may be sent to a broker (the host and the
//!   SDK's test kit both apply it);
//! - [`panics`]: how both sides catch a panic and describe it on one line ([`panic_text`]).
//!
//! Design rules, learnt the hard way (the reasons are in `docs/plugin-abi.md`):
//! - Low-frequency data (config, argument specs, route docs) crosses as JSON strings, so it can
//!   grow without a layout change. Hot paths (requests, bus messages) use plain structs.
//! - Every function a plugin implements returns an [`FfiFuture`] and runs no plugin code
//!   synchronously; the SDK catches panics inside the future, so none reaches the host.
//!   [`future`] passes a waker that has crossed the boundary back as it is, so a host future
//!   a plugin awaits is polled with the host's own waker.
//! - Any change to the types or traits here is a minor version bump (0.x): the host refuses
//!   plugins built against another minor version, so every plugin is rebuilt, and each vtable
//!   marks its last method as its last prefix field (every method is required).

pub mod amqp;
mod args;
pub mod asyncapi;
pub mod config;
pub mod features;
pub mod future;
#[allow(non_local_definitions)] // abi_stable 0.11's `sabi_trait` expansion; harmless
mod host;
pub mod metrics;
pub mod mqtt_names;
pub mod openapi;
pub mod panics;
#[allow(non_local_definitions)]
mod plugin;
pub mod routes;
pub mod sharing;
mod swar;
mod types;

/// Whether `text` is printable ASCII only (`' '..='~'`): the usual name, for which the
/// per-character checks of names (control characters, noncharacters) have nothing to find.
/// Eight bytes at a time, where those checks decode characters; they run on every publish.
pub(crate) fn printable_ascii(text: &str) -> bool {
    let (mut words, rest) = swar::words(text.as_bytes());
    words.all(printable_word) && rest.iter().all(|&b| printable_byte(b))
}

/// The printable ASCII range, `' '..='~'`.
const PRINTABLE: (u8, u8) = (b' ', b'~');

/// Whether `b` is printable ASCII.
pub(crate) fn printable_byte(b: u8) -> bool {
    (PRINTABLE.0..=PRINTABLE.1).contains(&b)
}

/// Whether the eight bytes of `word` (see [`swar::words`]) are all printable ASCII.
pub(crate) fn printable_word(word: u64) -> bool {
    swar::all_in(word, PRINTABLE.0, PRINTABLE.1)
}

pub use args::{Arg, ArgKind};
pub use future::FfiFuture;
pub use host::*;
pub use plugin::*;
pub use types::*;

// Re-exported for the SDK and its macro expansion, not for plugin authors: hidden from the
// docs. (rustdoc lists the blanket impls of every crate in the dependency graph on every
// type — abi_stable's `AlignerFor`, `SelfOps`, tracing's `Instrument` — whatever is
// re-exported; see docs/plugin-abi.md, "Reading the SDK's rustdoc".)
#[doc(hidden)]
pub use abi_stable;

pub use panics::panic_text;
