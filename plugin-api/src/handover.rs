//! Handing a plugin's state from one generation to the next at a hot swap.
//!
//! At a reload the host starts the new generation of every plugin beside the old one. Just
//! before it does, it asks each old plugin for its [`Plugin::handover`](crate::Plugin::handover);
//! each new plugin reads what its namesake handed over with
//! [`Context::handed_over`](crate::Context::handed_over) in its `startup`. The state crosses
//! serialised, because the new library may have changed its types, with a version number
//! the plugin chooses: a new build that cannot read an old format says so, starts empty,
//! and the host logs it and shows it in the reload's health (`reload.last.handovers`).
//!
//! Bounds: at most [`MAX_HANDOVER_BYTES`] (16 MiB) per plugin, and the hook has the host's
//! `--hook-timeout`; a handover over either is dropped (logged, shown as `failed`) and the
//! new generation starts empty; the reload goes on. What the old generation changes after
//! it handed its state over (during the overlap, until the swap) is not carried over.

use serde::{de::DeserializeOwned, Serialize};

use crate::{abi, Error, Result};

pub use crate::abi::MAX_HANDOVER_BYTES;

/// A plugin's state on its way to its next generation: bytes in a format of the plugin's
/// choosing, and that format's version.
///
/// ```
/// use plugin_api::Handover;
/// let handover = Handover::json(2, &vec![1, 2, 3]).unwrap();
/// assert_eq!(handover.version(), 2);
/// assert_eq!(handover.data(), b"[1,2,3]");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handover {
    version: u32,
    data: Vec<u8>,
}

impl Handover {
    /// `state` as JSON, in format `version`.
    pub fn json<T: Serialize + ?Sized>(version: u32, state: &T) -> Result<Handover> {
        let data = serde_json::to_vec(state)
            .map_err(|err| Error::invalid(format!("state cannot be JSON: {err}")))?;
        Ok(Handover { version, data })
    }

    /// Bytes of the plugin's own format.
    pub fn bytes(version: u32, data: impl Into<Vec<u8>>) -> Handover {
        Handover {
            version,
            data: data.into(),
        }
    }

    pub fn version(&self) -> u32 {
        self.version
    }

    pub fn data(&self) -> &[u8] {
        &self.data
    }

    pub(crate) fn into_ffi(self) -> abi::FfiHandover {
        abi::FfiHandover {
            version: self.version,
            data: self.data.into(),
        }
    }

    pub(crate) fn from_ffi(ffi: abi::FfiHandover) -> Handover {
        Handover {
            version: ffi.version,
            data: ffi.data.into_vec(),
        }
    }
}

/// What a new generation found of its predecessor's state
/// ([`Context::handed_over`](crate::Context::handed_over)).
///
/// ```
/// use plugin_api::HandedOver;
/// let found: HandedOver<u32> = HandedOver::Accepted(7);
/// assert_eq!(found.accepted(), Some(7));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HandedOver<T> {
    /// Nothing was handed over: the first start, a plugin new in this reload, or an old
    /// generation that handed nothing (or failed to).
    Nothing,
    /// The state, read.
    Accepted(T),
    /// A state was handed over but this build cannot use it; the reason is logged by the
    /// host and shown in the reload's health. The plugin starts as on a first start.
    Refused(String),
}

impl<T> HandedOver<T> {
    /// The state, if it was accepted.
    pub fn accepted(self) -> Option<T> {
        match self {
            HandedOver::Accepted(state) => Some(state),
            _ => None,
        }
    }
}

/// Reads a handover of JSON in exactly `version`: anything else is refused with a reason.
pub(crate) fn read_json<T: DeserializeOwned>(
    version: u32,
    handover: &Handover,
) -> std::result::Result<T, String> {
    if handover.version != version {
        return Err(format!(
            "state version {} was handed over; this build reads version {version}",
            handover.version
        ));
    }
    serde_json::from_slice(&handover.data)
        .map_err(|err| format!("state version {version} cannot be read: {err}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn another_version_or_unreadable_data_is_refused_with_a_reason() {
        let handover = Handover::json(1, &[1u8, 2]).unwrap();
        assert_eq!(read_json::<Vec<u8>>(1, &handover), Ok(vec![1, 2]));
        let err = read_json::<Vec<u8>>(2, &handover).unwrap_err();
        assert_eq!(
            err,
            "state version 1 was handed over; this build reads version 2"
        );
        let err = read_json::<String>(1, &handover).unwrap_err();
        assert!(err.starts_with("state version 1 cannot be read: "), "{err}");
    }

    #[test]
    fn floats_cross_exactly() {
        // serde_json's default float parser reads this one a unit in the last place low
        // (20.1520034665806); the SDK builds it with `float_roundtrip`.
        let temperatures = [20.152003466580602_f64, 0.1 + 0.2, f64::MAX, 5e-324];
        let handover = Handover::json(1, &temperatures).unwrap();
        let back = read_json::<[f64; 4]>(1, &handover).unwrap();
        assert_eq!(back.map(f64::to_bits), temperatures.map(f64::to_bits));
    }
}
