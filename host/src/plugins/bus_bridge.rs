//! Connects plugin publish/subscribe calls to the host's eventbus.

use abi_stable::std_types::RResult;
use async_ffi::FfiFuture;
use plugin_api::abi::{
    error_code, FfiError, FfiPublish, FfiSubscribe, HostSubscriptionArc, MessageHandlerBox,
};
use tokio::runtime::Handle;

/// The eventbus as plugins reach it.
pub struct BusBridge {}

impl BusBridge {
    pub fn disabled() -> Self {
        BusBridge {}
    }

    pub fn publish(
        &self,
        _runtime: &Handle,
        _message: FfiPublish,
    ) -> FfiFuture<RResult<(), FfiError>> {
        FfiFuture::new(async {
            RResult::RErr(FfiError::new(error_code::UNAVAILABLE, "no eventbus"))
        })
    }

    pub fn subscribe(
        &self,
        _plugin: &str,
        _sub: FfiSubscribe,
        _handler: MessageHandlerBox,
    ) -> Result<HostSubscriptionArc, FfiError> {
        Err(FfiError::new(error_code::UNAVAILABLE, "no eventbus"))
    }
}
