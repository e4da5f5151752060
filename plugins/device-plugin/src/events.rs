//! The device's MQTT events, in the formats today's BrewBlox services use.
//!
//! - History, to `<history-topic>/<service>`, never retained:
//!   `{"key": <service>, "data": {<device id>: {"temperature[degC]": 19.8, …}}}`. Numbers
//!   carry their unit in their name and booleans count as 1/0, so brewblox-history stores
//!   every field as `<service>/<device id>/<field>`.
//! - State, to `<state-topic>/<service>`, retained, so a client that subscribes later gets it
//!   at once: `{"key": <service>, "type": "Device.state", "data": <the state>}`. The will is
//!   the same with `"data": null`: the service is gone.

use std::collections::BTreeMap;

use plugin_api::{schemars, JsonSchema};
use serde::Serialize;

use crate::DeviceState;

/// The `type` of the device's state events.
pub const STATE_TYPE: &str = "Device.state";

/// The MQTT topics the device publishes to.
#[derive(Debug, Clone)]
pub struct Topics {
    pub history: String,
    pub state: String,
}

impl Topics {
    pub fn new(history_topic: &str, state_topic: &str, service: &str) -> Self {
        Topics {
            history: format!("{}/{service}", history_topic.trim_end_matches('/')),
            state: format!("{}/{service}", state_topic.trim_end_matches('/')),
        }
    }
}

/// A history event: the service's readings, by device id. The type both publishes and
/// documents it (the AsyncAPI document's payload schema).
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct HistoryEvent {
    /// The service name.
    pub key: String,
    /// One entry per device id.
    pub data: BTreeMap<String, HistoryFields>,
}

/// One device's readings in a history event, units in the names as brewblox-history reads.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct HistoryFields {
    /// Chamber temperature.
    #[serde(rename = "temperature[degC]")]
    pub temperature: f64,
    /// Target temperature.
    #[serde(rename = "setpoint[degC]")]
    pub setpoint: f64,
    /// Room temperature.
    #[serde(rename = "ambient[degC]")]
    pub ambient: f64,
    pub heater: bool,
    pub cooler: bool,
}

/// A state event (retained): the device's state, or null in the will (the service is gone).
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct StateEvent {
    /// The service name.
    pub key: String,
    /// Always `Device.state`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The state; null when the service is gone.
    pub data: Option<DeviceState>,
}

/// The history event of `state`.
pub fn history(service: &str, state: &DeviceState) -> HistoryEvent {
    let fields = HistoryFields {
        temperature: state.temperature,
        setpoint: state.setpoint,
        ambient: state.ambient,
        heater: state.heater,
        cooler: state.cooler,
    };
    HistoryEvent {
        key: service.to_owned(),
        data: BTreeMap::from([(state.device_id.clone(), fields)]),
    }
}

/// The state event: `Some(state)` while alive, `None` for the will.
pub fn state(service: &str, state: Option<&DeviceState>) -> StateEvent {
    StateEvent {
        key: service.to_owned(),
        kind: STATE_TYPE.to_owned(),
        data: state.cloned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Device;
    use serde_json::Value;

    fn json(value: impl Serialize) -> Value {
        serde_json::to_value(value).unwrap()
    }

    #[test]
    fn events_follow_the_brewblox_formats() {
        let device = Device::new("fermenter-1".into());
        let s = device.state();
        let h = json(history("svc", &s));
        assert_eq!(h["key"], "svc");
        let fields = h["data"]["fermenter-1"].as_object().unwrap();
        assert!(fields["temperature[degC]"].is_f64());
        assert!(fields.contains_key("heater"));
        let alive = json(state("svc", Some(&s)));
        assert_eq!(alive["type"], STATE_TYPE);
        assert_eq!(alive["data"]["device_id"], "fermenter-1");
        assert_eq!(json(state("svc", None))["data"], Value::Null);
        let topics = Topics::new("brewcast/history/", "brewcast/state", "a/b");
        assert_eq!(topics.history, "brewcast/history/a/b");
        assert_eq!(topics.state, "brewcast/state/a/b");
    }
}
