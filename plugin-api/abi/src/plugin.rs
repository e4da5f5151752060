//! Interfaces plugins implement (through the SDK) and the root module they export.

use crate::FfiFuture;
use abi_stable::{
    declare_root_module_statics,
    library::RootModule,
    package_version_strings, sabi_trait,
    sabi_types::VersionStrings,
    std_types::{RArc, RBox, ROption, RResult, RString},
    StableAbi,
};

use super::host::{HostContextArc, HostLoggerBox, HostSubscriptionArc};
use super::{FfiFailure, FfiHandover, FfiMessage, FfiRequest, FfiResponse, PluginInfo};

/// A route handler. `Err` is an internal error or a panic: the host answers
/// `500: <message>`. (An input an extractor refuses is an ordinary 400 response.)
#[sabi_trait]
pub trait RouteHandler: Send + Sync {
    #[sabi(last_prefix_field)]
    fn handle(&self, request: FfiRequest) -> FfiFuture<RResult<FfiResponse, FfiFailure>>;
}
pub type RouteHandlerBox = RouteHandler_TO<'static, RBox<()>>;

/// A named service one plugin offers to others: JSON in, JSON out. An error keeps its kind
/// (the [`FfiError`](crate::FfiError) code) on its way to the calling plugin, and says whether the input was
/// refused or the feature panicked.
#[sabi_trait]
pub trait Feature: Send + Sync {
    #[sabi(last_prefix_field)]
    fn call(&self, input: RString) -> FfiFuture<RResult<RString, FfiFailure>>;
}
pub type FeatureArc = Feature_TO<'static, RArc<()>>;

/// Receives eventbus messages of one subscription. `Err` says whether the message was
/// refused (not JSON, not of the handler's type), the handler failed, or it panicked.
#[sabi_trait]
pub trait MessageHandler: Send + Sync {
    #[sabi(last_prefix_field)]
    fn on_message(
        &self,
        subscription: HostSubscriptionArc,
        message: FfiMessage,
    ) -> FfiFuture<RResult<(), FfiFailure>>;
}
pub type MessageHandlerBox = MessageHandler_TO<'static, RBox<()>>;

/// A created plugin: the three lifecycle hooks of a brewblox feature, and the handover of
/// its state to its next generation at a hot swap.
#[sabi_trait]
pub trait PluginInstance: Send + Sync {
    fn startup(&self) -> FfiFuture<RResult<(), RString>>;
    fn before_shutdown(&self) -> FfiFuture<RResult<(), RString>>;
    fn shutdown(&self) -> FfiFuture<RResult<(), RString>>;
    /// The state to hand to the plugin of the same name in the next generation (`RNone`:
    /// nothing). Called on the outgoing generation before the next one starts, bounded by
    /// the host's hook timeout and [`MAX_HANDOVER_BYTES`](crate::MAX_HANDOVER_BYTES).
    #[sabi(last_prefix_field)]
    fn handover(&self) -> FfiFuture<RResult<ROption<FfiHandover>, RString>>;
}
pub type PluginInstanceBox = PluginInstance_TO<'static, RBox<()>>;

/// The root module every plugin library exports (via `export_plugin!`).
#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = PluginModRef)))]
#[sabi(missing_field(panic))]
pub struct PluginMod {
    /// Constants only: safe to call before anything else.
    pub info: extern "C" fn() -> PluginInfo,
    /// The plugin's command-line arguments as a JSON array of argument specs.
    pub declare_args: extern "C" fn() -> RResult<RString, RString>,
    /// Route the plugin's `tracing` events to the host.
    pub init_logging: extern "C" fn(HostLoggerBox),
    /// Create the plugin instance with its host context.
    #[sabi(last_prefix_field)]
    pub create: extern "C" fn(HostContextArc) -> RResult<PluginInstanceBox, RString>,
}

impl RootModule for PluginModRef {
    declare_root_module_statics! {PluginModRef}
    const BASE_NAME: &'static str = "brewblox_plugin";
    const NAME: &'static str = "brewblox_plugin";
    const VERSION_STRINGS: VersionStrings = package_version_strings!();
}

/// The `plugin-api` version (this crate always has plugin-api's version); plugins record it
/// at build time, and the host refuses another minor version.
pub const API_VERSION: &str = env!("CARGO_PKG_VERSION");

/// The ABI fingerprint: a hash of this crate's version and of its sources (see `build.rs`).
/// Each plugin exports it as [`ABI_FINGERPRINT_SYMBOL`]; a host whose own fingerprint is
/// equal knows the plugin was built against byte-identical ABI sources and may skip
/// abi_stable's (costly) layout check. Anything else gets the full check.
pub const ABI_FINGERPRINT: [u8; 32] = fingerprint_bytes(env!("PLUGIN_ABI_FINGERPRINT"));

/// The symbol under which `export_plugin!` exports [`ABI_FINGERPRINT`] (a `[u8; 32]`).
pub const ABI_FINGERPRINT_SYMBOL: &[u8] = b"brewblox_plugin_abi_fingerprint\0";

const fn fingerprint_bytes(text: &str) -> [u8; 32] {
    let bytes = text.as_bytes();
    let mut out = [0u8; 32];
    let mut i = 0;
    while i < 32 && i < bytes.len() {
        out[i] = bytes[i];
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fingerprint_is_128_bits_of_hex() {
        assert!(ABI_FINGERPRINT.iter().all(u8::is_ascii_hexdigit));
        assert!(ABI_FINGERPRINT.iter().any(|&b| b != b'0'));
    }

    #[test]
    fn root_module_names() {
        assert_eq!(PluginModRef::BASE_NAME, "brewblox_plugin");
        assert_eq!(PluginModRef::NAME, "brewblox_plugin");
    }
}
