//! Shared and durable subscriptions: the names they travel under on each transport, written
//! once so that the host and the SDK's test host agree on them.
//!
//! A **group** is a name several instances of a service agree on: the messages of a
//! subscription made in a group are split between the instances subscribed in it (each
//! message is handled by one of them). A **durable** subscription keeps what is published
//! while its service is away, for when it is back. On the wire:
//!
//! - AMQP: a named, durable queue (quorum by default) that every instance of the group
//!   consumes, acknowledged after the handler. Its name is [`amqp_queue`]:
//!   `<group>:<exchange>:<routing>`, so the instances of a group meet on the same queue for
//!   the same binding, and two bindings of one group never share a queue. A durable
//!   subscription without a group is a group of its own service: `<service>:…`.
//! - MQTT: `$share/<group>/<filter>` ([`mqtt_shared_filter`]), which brokers since MQTT 5
//!   (Mosquitto 2.0 for MQTT 3.1.1 clients too) hand round the group's subscribers; the
//!   messages arrive on their plain topics, which [`crate::mqtt_names::matches`] matches
//!   against the filter inside.
//!
//! A group name is 1 to [`MAX_GROUP_BYTES`] bytes of ASCII letters, digits, `-`, `_` and
//! `.`: it is part of a queue name and of an MQTT filter level, where `/`, `+`, `#` and `:`
//! would change what it means, and it is shown in logs and health.

use crate::{amqp::MAX_NAME_BYTES, mqtt_names};

/// The longest group name in bytes.
pub const MAX_GROUP_BYTES: usize = 64;

/// The prefix of an MQTT shared subscription's filter.
pub const MQTT_SHARE_PREFIX: &str = "$share/";

/// Why `group` cannot name a group, as a phrase after "group '<group>' ".
///
/// ```
/// use plugin_abi::sharing::validate_group;
/// assert!(validate_group("history-1").is_ok());
/// assert!(validate_group("a/b").is_err());
/// assert!(validate_group("").is_err());
/// ```
pub fn validate_group(group: &str) -> Result<(), String> {
    if group.is_empty() {
        return Err("a subscription's group name is empty".into());
    }
    if group.len() > MAX_GROUP_BYTES {
        return Err(format!(
            "group name of {} bytes is longer than {MAX_GROUP_BYTES} bytes",
            group.len()
        ));
    }
    if let Some(c) = group
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        let shown: String = group.chars().take(MAX_GROUP_BYTES).collect();
        return Err(format!(
            "group name '{}' contains {c:?}: a group is ASCII letters, digits, '-', '_' and '.'",
            shown.escape_debug()
        ));
    }
    Ok(())
}

/// The name of the queue a shared or durable AMQP subscription consumes (`group` is the
/// service's name for a durable subscription without a group). Errors: a bad group, or a
/// name longer than AMQP allows.
///
/// ```
/// use plugin_abi::sharing::amqp_queue;
/// assert_eq!(amqp_queue("history", "brewcast", "#").unwrap(), "history:brewcast:#");
/// assert!(amqp_queue("history", &"x".repeat(250), "#").is_err());
/// ```
pub fn amqp_queue(group: &str, exchange: &str, routing: &str) -> Result<String, String> {
    validate_group(group)?;
    let name = format!("{group}:{exchange}:{routing}");
    if name.len() > MAX_NAME_BYTES {
        return Err(format!(
            "the queue name of group '{group}' for exchange and routing key would be {} bytes; \
             AMQP names hold at most {MAX_NAME_BYTES} bytes",
            name.len()
        ));
    }
    Ok(name)
}

/// The filter an MQTT subscription in `group` is made with: `$share/<group>/<filter>`.
/// Errors: a bad group, or a filter the broker would refuse.
///
/// ```
/// use plugin_abi::sharing::mqtt_shared_filter;
/// assert_eq!(
///     mqtt_shared_filter("hist", "brewcast/history/#").unwrap(),
///     "$share/hist/brewcast/history/#"
/// );
/// ```
pub fn mqtt_shared_filter(group: &str, filter: &str) -> Result<String, String> {
    validate_group(group)?;
    mqtt_names::validate_filter(filter).map_err(|e| e.0)?;
    let shared = format!("{MQTT_SHARE_PREFIX}{group}/{filter}");
    mqtt_names::validate_filter(&shared).map_err(|e| e.0)?;
    Ok(shared)
}

/// The group and the inner filter of an MQTT shared subscription's filter; `None` for a
/// plain filter.
///
/// ```
/// use plugin_abi::sharing::split_mqtt_shared;
/// assert_eq!(split_mqtt_shared("$share/g/a/#"), Some(("g", "a/#")));
/// assert_eq!(split_mqtt_shared("a/#"), None);
/// ```
pub fn split_mqtt_shared(filter: &str) -> Option<(&str, &str)> {
    filter.strip_prefix(MQTT_SHARE_PREFIX)?.split_once('/')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_names_are_refused_with_the_reason() {
        for bad in ["a/b", "a+", "#", "a:b", "a b", "é", "a\n"] {
            let err = validate_group(bad).expect_err(bad);
            assert!(err.contains("contains"), "{bad}: {err}");
        }
        assert!(validate_group(&"g".repeat(65))
            .unwrap_err()
            .contains("longer than 64"));
        assert!(validate_group(&"g".repeat(64)).is_ok());
    }

    #[test]
    fn a_shared_filter_round_trips_and_its_messages_match_the_inner_filter() {
        let shared = mqtt_shared_filter("g", "brewcast/+/svc").unwrap();
        assert_eq!(split_mqtt_shared(&shared), Some(("g", "brewcast/+/svc")));
        assert!(mqtt_names::matches(&shared, "brewcast/history/svc"));
        assert!(!mqtt_names::matches(&shared, "brewcast/history/other"));
        assert!(mqtt_shared_filter("g", "a/#/b").is_err());
        assert!(mqtt_shared_filter("g/h", "a").is_err());
    }

    #[test]
    fn a_queue_name_keeps_the_binding_apart_and_fits_amqp() {
        assert_ne!(
            amqp_queue("g", "brewcast", "a").unwrap(),
            amqp_queue("g", "brewcast", "b").unwrap()
        );
        let long = amqp_queue("g", &"e".repeat(200), &"r".repeat(60)).unwrap_err();
        assert!(long.contains("at most 255 bytes"), "{long}");
    }
}
