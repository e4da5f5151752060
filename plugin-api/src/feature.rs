//! Named features: services one plugin offers to the others in the same host.

use std::fmt;

use abi_stable::std_types::RResult;
use serde::{de::DeserializeOwned, Serialize};

use crate::{
    abi::{self, FfiError},
    Error, Result,
};

/// A feature registered by some plugin, looked up with
/// [`Context::feature`](crate::Context::feature). Calls are typed on both sides — the
/// caller's input and output types need only serialize to and from the same JSON as the
/// feature's own — since plugins share no Rust types. An error the feature returns
/// reaches the caller with its [kind](crate::ErrorKind).
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

    /// Calls the feature with `input` serialized as JSON, decoding the answer into `O`. An
    /// answer that does not decode is an [`Invalid`](crate::ErrorKind::Invalid) error.
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
            RResult::ROk(output) => crate::decode::json(output.as_bytes()).map_err(|err| {
                Error::invalid(format!("feature \"{}\" answered: {err}", self.name))
            }),
            // The feature's error kind survives; the message says which feature.
            RResult::RErr(failure) => Err(Error::from_ffi(FfiError::new(
                failure.error.code,
                format!("feature \"{}\": {}", self.name, failure.error.message),
            ))),
        }
    }
}

impl fmt::Debug for Feature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Feature").field("name", &self.name).finish()
    }
}
