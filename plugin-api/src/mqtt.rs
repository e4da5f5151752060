//! The MQTT eventbus for plugins: publish to a topic, subscribe with a topic filter, and the
//! service's will. The host owns the connection; see [`Context::mqtt_publish`](crate::Context::mqtt_publish).

use serde::Serialize;

use crate::{abi, Error, Result};

/// MQTT quality of service: the host supports 0 and 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum QoS {
    /// At most once: `Ok` once the message was sent.
    #[default]
    AtMostOnce,
    /// At least once: `Ok` once the broker acknowledged it.
    AtLeastOnce,
}

impl QoS {
    pub(crate) fn level(self) -> u8 {
        match self {
            QoS::AtMostOnce => 0,
            QoS::AtLeastOnce => 1,
        }
    }
}

/// JSON for an MQTT payload.
pub(crate) fn json_payload<T: Serialize + ?Sized>(message: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(message)
        .map_err(|err| Error::invalid(format!("message cannot be JSON: {err}")))
}

pub(crate) fn ffi(topic: &str, payload: Vec<u8>, qos: QoS, retain: bool) -> abi::FfiMqttPublish {
    abi::FfiMqttPublish {
        topic: topic.into(),
        payload: payload.into(),
        qos: qos.level(),
        retain,
    }
}
