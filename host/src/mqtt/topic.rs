//! MQTT topic names and topic filters: what may be sent, and which topics a filter matches.
//!
//! The rules live in `plugin_abi::mqtt_names` (the SDK's test kit applies the same ones); the
//! module documents them with the MQTT 3.1.1 and Mosquitto limits they come from: UTF-8 of 1
//! to 65535 bytes, no NUL, no control characters (U+0001..U+001F, U+007F..U+009F), no Unicode
//! noncharacters, at most 200 `/` separators, and wildcards only as whole levels of a filter.

pub use plugin_abi::mqtt_names::{
    matches, validate_filter, validate_topic, TopicError, MAX_TOPIC_BYTES, MAX_TOPIC_SEPARATORS,
};
