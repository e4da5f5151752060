//! The device's MQTT events, in the formats today's BrewBlox services use.
//!
//! - History, to `<history-topic>/<service>`, never retained:
//!   `{"key": <service>, "data": {<device id>: {"temperature[degC]": 19.8, …}}}`. Numbers
//!   carry their unit in their name and booleans count as 1/0, so brewblox-history stores
//!   every field as `<service>/<device id>/<field>`.
//! - State, to `<state-topic>/<service>`, retained, so a client that subscribes later gets it
//!   at once: `{"key": <service>, "type": "Device.state", "data": <the state>}`. The will is
//!   the same with `"data": null`: the service is gone.

use serde_json::{json, Value};

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

/// The history event of `state`.
pub fn history(service: &str, state: &DeviceState) -> Value {
    json!({
        "key": service,
        "data": {
            state.device_id.as_str(): {
                "temperature[degC]": state.temperature,
                "setpoint[degC]": state.setpoint,
                "ambient[degC]": state.ambient,
                "heater": state.heater,
                "cooler": state.cooler,
            }
        }
    })
}

/// The state event: `Some(state)` while alive, `None` for the will.
pub fn state(service: &str, state: Option<&DeviceState>) -> Value {
    json!({"key": service, "type": STATE_TYPE, "data": state})
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Device;

    #[test]
    fn events_follow_the_brewblox_formats() {
        let device = Device::new("fermenter-1".into());
        let s = device.state();
        let h = history("svc", &s);
        assert_eq!(h["key"], "svc");
        let fields = h["data"]["fermenter-1"].as_object().unwrap();
        assert!(fields["temperature[degC]"].is_f64());
        assert!(fields.contains_key("heater"));
        let alive = state("svc", Some(&s));
        assert_eq!(alive["type"], STATE_TYPE);
        assert_eq!(alive["data"]["device_id"], "fermenter-1");
        assert_eq!(state("svc", None)["data"], Value::Null);
        let topics = Topics::new("brewcast/history/", "brewcast/state", "a/b");
        assert_eq!(topics.history, "brewcast/history/a/b");
        assert_eq!(topics.state, "brewcast/state/a/b");
    }
}
