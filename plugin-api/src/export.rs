//! `export_plugin!` and the glue it expands to.

/// Exports a [`Plugin`](crate::Plugin) type from a `cdylib` crate. Use it once per plugin
/// library, at the crate root.
///
/// The plugin is named after its crate (`CARGO_PKG_NAME`). The instance is made with
/// `Default::default()`, or with the constructor given as a second argument.
///
/// ```
/// use plugin_api::{export_plugin, Context, Plugin, Result};
///
/// struct Counter { start: u64 }
///
/// impl Plugin for Counter {
///     async fn startup(self: std::sync::Arc<Self>, _ctx: &Context) -> Result<()> {
///         tracing::info!("counting from {}", self.start);
///         Ok(())
///     }
/// }
///
/// export_plugin!(Counter, || Counter { start: 1 });
/// ```
#[macro_export]
macro_rules! export_plugin {
    ($plugin:ty) => {
        $crate::export_plugin!($plugin, <$plugin as ::core::default::Default>::default);
    };
    ($plugin:ty, $constructor:expr) => {
        /// The ABI fingerprint the host compares before loading (see `abi::ABI_FINGERPRINT`).
        #[no_mangle]
        #[allow(non_upper_case_globals)]
        pub static brewblox_plugin_abi_fingerprint: [u8; 32] = $crate::abi::ABI_FINGERPRINT;

        /// The abi_stable library header the host looks up (what `#[export_root_module]`
        /// generates, spelled out so plugin crates need no direct abi_stable dependency;
        /// it relies on abi_stable internals, hence plugin-abi's exact pin of abi_stable).
        #[no_mangle]
        pub static _1as_0lib_1header_0root_bmodule_bloader: $crate::__private::LibHeader = {
            fn root() -> $crate::abi::PluginModRef {
                $crate::__private::module(info, $crate::__private::declare_args::<$plugin>, create)
            }
            extern "C" fn module() -> $crate::__private::RootModuleResult {
                $crate::__private::root_module_result(root)
            }
            extern "C" fn info() -> $crate::abi::PluginInfo {
                $crate::__private::info(
                    ::core::env!("CARGO_PKG_NAME"),
                    ::core::env!("CARGO_PKG_VERSION"),
                    ::core::cfg!(panic = "unwind"),
                )
            }
            extern "C" fn create(
                host: $crate::abi::HostContextArc,
            ) -> $crate::__private::CreateResult {
                $crate::__private::create::<$plugin, _>(host, $constructor)
            }
            $crate::__private::lib_header(module)
        };
    };
}

#[doc(hidden)]
pub mod __private {
    use std::sync::Arc;

    use crate::abi::FfiFuture;
    pub use abi_stable::library::{LibHeader, RootModuleResult};
    use abi_stable::{
        library::CheckTypeLayout,
        prefix_type::PrefixTypeTrait,
        sabi_trait::TD_Opaque,
        std_types::{ROption, RResult, RString},
    };

    use crate::{
        abi::{
            self, HostContextArc, HostLoggerBox, PluginInfo, PluginInstanceBox, PluginMod,
            PluginModRef, API_VERSION,
        },
        logging, runtime, Context, Plugin,
    };

    pub type CreateResult = RResult<PluginInstanceBox, RString>;

    /// The header static's value.
    pub const fn lib_header(module: extern "C" fn() -> RootModuleResult) -> LibHeader {
        // SAFETY: `module` returns a `PluginModRef` erased by `root_module_result`, which is
        // exactly what `from_constructor::<PluginModRef>` requires.
        unsafe { LibHeader::from_constructor::<PluginModRef>(module, CheckTypeLayout::Yes) }
    }

    /// Builds the root module, turning a panic into an error result. abi_stable's hidden
    /// helper behind `#[export_root_module]`: stable only because plugin-abi pins abi_stable
    /// exactly.
    pub fn root_module_result(root: fn() -> PluginModRef) -> RootModuleResult {
        abi_stable::library::__call_root_module_loader(root)
    }

    pub fn module(
        info: extern "C" fn() -> PluginInfo,
        declare_args: extern "C" fn() -> RResult<RString, RString>,
        create: extern "C" fn(HostContextArc) -> CreateResult,
    ) -> PluginModRef {
        PluginMod {
            info,
            declare_args,
            init_logging,
            create,
        }
        .leak_into_prefix()
    }

    pub fn info(name: &str, version: &str, panic_unwind: bool) -> PluginInfo {
        PluginInfo {
            name: name.into(),
            version: version.into(),
            api_version: API_VERSION.into(),
            panic_unwind,
        }
    }

    pub extern "C" fn declare_args<P: Plugin>() -> RResult<RString, RString> {
        let result = runtime::guard_describe(|| serde_json::to_string(&P::args()))
            .and_then(|json| json.map_err(|err| err.to_string()));
        match result {
            Ok(json) => RResult::ROk(json.into()),
            Err(err) => RResult::RErr(err.into()),
        }
    }

    extern "C" fn init_logging(host: HostLoggerBox) {
        logging::init(host);
    }

    pub fn create<P: Plugin, F: FnOnce() -> P>(
        host: HostContextArc,
        constructor: F,
    ) -> CreateResult {
        let name = host.plugin_name();
        runtime::set_plugin_name(&name);
        let built = runtime::guard_sync(move || -> Result<_, String> {
            let ctx = Context::new(host).map_err(|err| err.to_string())?;
            let plugin = Arc::new(constructor());
            Ok(Instance { plugin, ctx })
        })
        .and_then(|inner| inner);
        match built {
            Ok(instance) => RResult::ROk(abi::PluginInstance_TO::from_value(instance, TD_Opaque)),
            Err(err) => RResult::RErr(err.into()),
        }
    }

    /// Adapts a [`Plugin`] to the ABI's `PluginInstance`.
    struct Instance<P> {
        plugin: Arc<P>,
        ctx: Context,
    }

    impl<P: Plugin> abi::PluginInstance for Instance<P> {
        fn startup(&self) -> FfiFuture<RResult<(), RString>> {
            let (plugin, ctx) = (Arc::clone(&self.plugin), self.ctx.clone());
            runtime::into_ffi(async move {
                plugin
                    .startup(&ctx)
                    .await
                    .map_err(|e| RString::from(e.to_string()))
            })
        }

        fn before_shutdown(&self) -> FfiFuture<RResult<(), RString>> {
            let (plugin, ctx) = (Arc::clone(&self.plugin), self.ctx.clone());
            runtime::into_ffi(async move {
                plugin
                    .before_shutdown(&ctx)
                    .await
                    .map_err(|e| RString::from(e.to_string()))
            })
        }

        fn shutdown(&self) -> FfiFuture<RResult<(), RString>> {
            let (plugin, ctx) = (Arc::clone(&self.plugin), self.ctx.clone());
            runtime::into_ffi(async move {
                plugin
                    .shutdown(&ctx)
                    .await
                    .map_err(|e| RString::from(e.to_string()))
            })
        }

        fn handover(&self) -> FfiFuture<RResult<ROption<abi::FfiHandover>, RString>> {
            let (plugin, ctx) = (Arc::clone(&self.plugin), self.ctx.clone());
            runtime::into_ffi(async move {
                match plugin.handover(&ctx).await {
                    Ok(state) => Ok(state.map(crate::Handover::into_ffi).into()),
                    Err(err) => Err(RString::from(err.to_string())),
                }
            })
        }
    }

    #[cfg(test)]
    mod tests {
        /// `export_plugin!` writes the header symbol's name out by hand; moving abi_stable's
        /// pin must keep this passing.
        #[test]
        fn header_symbol_matches_abi_stable() {
            assert_eq!(
                abi_stable::library::ROOT_MODULE_LOADER_NAME,
                "_1as_0lib_1header_0root_bmodule_bloader"
            );
        }
    }
}
