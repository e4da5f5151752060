//! The stable ABI between the host and plugins.
//!
//! Everything here is `#[repr(C)]` + [`StableAbi`](abi_stable::StableAbi), checked by abi_stable when a plugin is
//! loaded. Plugin authors never touch this module: the SDK (the rest of this crate) wraps it.
//!
//! Design rules, learnt the hard way (the reasons are in `docs/plugin-abi.md`):
//! - Low-frequency data (config, argument specs, route docs) crosses as JSON strings, so it can
//!   grow without a layout change. Hot paths (requests, bus messages) use plain structs.
//! - Every function a plugin implements returns an [`FfiFuture`](async_ffi::FfiFuture) and runs no plugin code
//!   synchronously; the SDK catches panics inside the future, so none reaches the host.
//! - A vtable the *host* implements cannot gain methods without rejecting older plugins
//!   (abi_stable lets a library have more prefix fields than the loader, never fewer). Any
//!   change to this module is therefore a minor version bump of `plugin-api`, and the host
//!   refuses plugins built against another minor version: rebuild all plugins.

#[allow(non_local_definitions)] // abi_stable 0.11's `sabi_trait` expansion; harmless
mod host;
#[allow(non_local_definitions)]
mod plugin;
mod types;

pub use host::*;
pub use plugin::*;
pub use types::*;

pub use abi_stable;
pub use async_ffi;
