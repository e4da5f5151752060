//! Named features: services one plugin offers to the others in the same host.

use std::{fmt, future::Future, sync::Arc};

use abi_stable::std_types::{RResult, RString};
use async_ffi::FfiFuture;
use serde::{de::DeserializeOwned, Serialize};
use serde_json::Value;

use crate::{
    abi::{self, FfiError},
    runtime, Error, Result,
};

/// A feature registered by some plugin, looked up with
/// [`Context::feature`](crate::Context::feature). Calls take and return JSON, since plugins
/// share no Rust types.
///
/// ```no_run
/// # async fn demo(ctx: plugin_api::Context) -> plugin_api::Result<()> {
/// let device = ctx.feature("device")?;
/// let state: serde_json::Value = device.call(&serde_json::json!({"get": "state"})).await?;
/// # Ok(()) }
/// ```
pub struct Feature {
    name: String,
    inner: abi::FeatureArc,
}

impl Clone for Feature {
    fn clone(&self) -> Self {
        Feature {
            name: self.name.clone(),
            inner: abi::Feature_TO::from_sabi(self.inner.obj.shallow_clone()),
        }
    }
}

impl Feature {
    pub(crate) fn new(name: String, inner: abi::FeatureArc) -> Self {
        Feature { name, inner }
    }

    /// The name it was registered under.
    ///
    /// ```no_run
    /// # fn demo(ctx: plugin_api::Context) -> plugin_api::Result<()> {
    /// assert_eq!(ctx.feature("device")?.name(), "device");
    /// # Ok(()) }
    /// ```
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Calls the feature with `input` serialized as JSON, decoding the answer into `O`.
    ///
    /// ```no_run
    /// # async fn demo(ctx: plugin_api::Context) -> plugin_api::Result<()> {
    /// let doubled: serde_json::Value = ctx.feature("doubler")?.call(&serde_json::json!({"n": 2})).await?;
    /// # Ok(()) }
    /// ```
    pub async fn call<I, O>(&self, input: &I) -> Result<O>
    where
        I: Serialize + ?Sized,
        O: DeserializeOwned,
    {
        let input = serde_json::to_string(input)?;
        match self.inner.call(input.into()).await {
            RResult::ROk(output) => serde_json::from_str(&output)
                .map_err(|err| Error::msg(format!("feature \"{}\" answered: {err}", self.name))),
            // The feature's error kind survives; the message says which feature.
            RResult::RErr(err) => Err(Error::from_ffi(FfiError::new(
                err.code,
                format!("feature \"{}\": {}", self.name, err.message),
            ))),
        }
    }
}

impl fmt::Debug for Feature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Feature").field("name", &self.name).finish()
    }
}

/// The plugin-side object behind a registered feature.
pub(crate) struct FeatureImpl<F> {
    pub(crate) func: Arc<F>,
}

impl<F, Fut> abi::Feature for FeatureImpl<F>
where
    F: Fn(Value) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Value>> + Send + 'static,
{
    fn call(&self, input: RString) -> FfiFuture<RResult<RString, FfiError>> {
        let func = Arc::clone(&self.func);
        let guarded = runtime::into_ffi(async move {
            let answer = match serde_json::from_str::<Value>(&input) {
                Ok(input) => func(input).await,
                Err(err) => Err(Error::bad_request(format!("invalid input: {err}"))),
            };
            // The error's kind crosses as the FfiError code.
            Ok(match answer {
                Ok(output) => RResult::ROk(RString::from(output.to_string())),
                Err(err) => RResult::RErr(err.to_ffi()),
            })
        });
        FfiFuture::new(async move {
            match guarded.await {
                RResult::ROk(answer) => answer,
                // A panic in the feature, caught by the guard.
                RResult::RErr(panic) => RResult::RErr(FfiError::new(abi::error_code::OTHER, panic)),
            }
        })
    }
}
