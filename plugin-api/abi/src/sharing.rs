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
//!   against the filter inside. A durable subscription is made on the service's persistent
//!   session (clean session off, client id [`mqtt_session_id`], QoS 1, acknowledged after
//!   the handler), a connection beside the service's clean-session one ([`mqtt_plan`]).
//!
//! A group name is 1 to [`MAX_GROUP_BYTES`] bytes of ASCII letters, digits, `-`, `_` and
//! `.`: it is part of a queue name and of an MQTT filter level, where `/`, `+`, `#` and `:`
//! would change what it means, and it is shown in logs and health.

use crate::{
    amqp::{self, MAX_NAME_BYTES},
    mqtt_names, FfiSharing,
};

/// The longest group name in bytes.
pub const MAX_GROUP_BYTES: usize = 64;

/// The prefix of an MQTT shared subscription's filter.
pub const MQTT_SHARE_PREFIX: &str = "$share/";

/// Why `group` cannot name a group, as a phrase after `group '<group>' `.
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

/// The queue of a shared or durable AMQP subscription, as every host declares it: named,
/// durable, neither exclusive nor auto-deleted, so that it outlives each consumer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AmqpQueue {
    /// [`amqp_queue`]'s name.
    pub name: String,
    /// `x-queue-type: quorum` (replicated on a cluster); false: a classic queue.
    pub quorum: bool,
    /// Unacknowledged messages per consumer; `None`: the host's prefetch.
    pub prefetch: Option<u16>,
    /// `x-delivery-limit` (quorum queues only).
    pub delivery_limit: Option<u32>,
    /// `x-dead-letter-exchange`.
    pub dead_letter_exchange: Option<String>,
}

/// Whether `sharing` asks for nothing: a plain subscription.
pub fn is_plain(sharing: &FfiSharing) -> bool {
    *sharing == FfiSharing::default()
}

/// The queue a subscription of `service` to `exchange`/`routing` consumes, by the options of
/// `sharing`: `None` for a plain subscription. A durable subscription without a group is in
/// the group of its service. Errors (as a sentence): a bad group or dead-letter exchange
/// name, queue options without a group or `durable` (a plain queue is the service's own and
/// transient), a delivery limit on a classic queue (only quorum queues count deliveries).
///
/// ```
/// use plugin_abi::{sharing::amqp_plan, FfiSharing};
/// let durable = FfiSharing { durable: true, ..FfiSharing::default() };
/// let queue = amqp_plan(&durable, "history", "brewcast", "#").unwrap().unwrap();
/// assert_eq!((queue.name.as_str(), queue.quorum), ("history:brewcast:#", true));
/// assert!(amqp_plan(&FfiSharing::default(), "history", "brewcast", "#").unwrap().is_none());
/// let limit_only = FfiSharing { delivery_limit: 3, ..FfiSharing::default() };
/// assert!(amqp_plan(&limit_only, "history", "brewcast", "#").is_err());
/// ```
pub fn amqp_plan(
    sharing: &FfiSharing,
    service: &str,
    exchange: &str,
    routing: &str,
) -> Result<Option<AmqpQueue>, String> {
    if is_plain(sharing) {
        return Ok(None);
    }
    let group = match (sharing.group.as_str(), sharing.durable) {
        ("", false) => {
            return Err(
                "queue options (classic, prefetch, delivery limit, dead-letter \
                        exchange) need a group or a durable subscription"
                    .into(),
            )
        }
        ("", true) => service,
        (group, _) => group,
    };
    if sharing.classic && sharing.delivery_limit > 0 {
        return Err(
            "a delivery limit needs a quorum queue (x-delivery-limit is counted by \
                    quorum queues only)"
                .into(),
        );
    }
    let dead_letter_exchange = match sharing.dead_letter_exchange.as_str() {
        "" => None,
        name => match amqp::name_problem(name) {
            Some(problem) => return Err(format!("dead-letter exchange {problem}")),
            None => Some(name.to_owned()),
        },
    };
    Ok(Some(AmqpQueue {
        name: amqp_queue(group, exchange, routing)?,
        quorum: !sharing.classic,
        prefetch: (sharing.prefetch > 0).then_some(sharing.prefetch),
        delivery_limit: (sharing.delivery_limit > 0).then_some(sharing.delivery_limit),
        dead_letter_exchange,
    }))
}

/// How an MQTT subscription is made: its filter and the session that carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MqttPlan {
    /// `$share/<group>/<filter>` in a group, the filter itself otherwise.
    pub filter: String,
    /// On the service's persistent session ([`mqtt_session_id`]), QoS 1, acknowledged after
    /// the handler; false: on the service's clean-session connection.
    pub durable: bool,
}

/// The plan of an MQTT subscription to `filter`, by the options of `sharing`: in a group,
/// `$share/<group>/<filter>`; durable, on the service's persistent session. Errors (as a
/// sentence): a bad group or filter, and AMQP queue options.
///
/// ```
/// use plugin_abi::{sharing::mqtt_plan, FfiSharing};
/// let shared = FfiSharing { group: "hist".into(), ..FfiSharing::default() };
/// assert_eq!(mqtt_plan(&shared, "brewcast/#").unwrap().filter, "$share/hist/brewcast/#");
/// let plain = mqtt_plan(&FfiSharing::default(), "a/b").unwrap();
/// assert_eq!((plain.filter.as_str(), plain.durable), ("a/b", false));
/// let durable = FfiSharing { durable: true, ..FfiSharing::default() };
/// assert!(mqtt_plan(&durable, "a/b").unwrap().durable);
/// ```
pub fn mqtt_plan(sharing: &FfiSharing, filter: &str) -> Result<MqttPlan, String> {
    if sharing.classic
        || sharing.prefetch > 0
        || sharing.delivery_limit > 0
        || !sharing.dead_letter_exchange.is_empty()
    {
        return Err(
            "queue options (classic, prefetch, delivery limit, dead-letter exchange) \
                    are AMQP's; an MQTT subscription takes a group and durable only"
                .into(),
        );
    }
    let filter = match sharing.group.as_str() {
        "" => mqtt_names::validate_filter(filter)
            .map(|()| filter.to_owned())
            .map_err(|e| e.0)?,
        group => mqtt_shared_filter(group, filter)?,
    };
    Ok(MqttPlan {
        filter,
        durable: sharing.durable,
    })
}

/// The longest client id of a persistent session, in bytes. MQTT 3.1.1 obliges a broker to
/// take 23 bytes of letters and digits and allows it more; Mosquitto, RabbitMQ's MQTT plugin,
/// EMQX and HiveMQ take far longer ones of any UTF-8, and the host's other client ids are
/// longer than 23 bytes already.
pub const MAX_CLIENT_ID_BYTES: usize = 128;

/// What ends the client id of a persistent session.
pub const MQTT_SESSION_SUFFIX: &str = "-durable";

/// The client id of the persistent session that carries a service's durable MQTT
/// subscriptions: `<client-id>-durable` when the service was given a client id
/// (`--mqtt-client-id`, one per instance), else `brewblox-host-<service>-durable`. It must be
/// the same at every start of the service (the broker keeps the session under it) and
/// another one for every instance (a second connection with the id takes the session from
/// the first). Errors: an id longer than [`MAX_CLIENT_ID_BYTES`], or a character other than
/// ASCII letters, digits, `-`, `_` and `.` (an id is shown in logs and health, and some
/// brokers take no more).
///
/// ```
/// use plugin_abi::sharing::mqtt_session_id;
/// assert_eq!(mqtt_session_id("history", None).unwrap(), "brewblox-host-history-durable");
/// assert_eq!(mqtt_session_id("history", Some("hist-2")).unwrap(), "hist-2-durable");
/// assert!(mqtt_session_id("a/b", None).is_err());
/// ```
pub fn mqtt_session_id(service: &str, client_id: Option<&str>) -> Result<String, String> {
    let id = match client_id {
        Some(client_id) => format!("{client_id}{MQTT_SESSION_SUFFIX}"),
        None => format!("brewblox-host-{service}{MQTT_SESSION_SUFFIX}"),
    };
    if id.len() > MAX_CLIENT_ID_BYTES {
        return Err(format!(
            "the MQTT client id of the durable session would be {} bytes; at most \
             {MAX_CLIENT_ID_BYTES} (a shorter --name or --mqtt-client-id)",
            id.len()
        ));
    }
    if let Some(c) = id
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        let shown: String = id.chars().take(MAX_CLIENT_ID_BYTES).collect();
        return Err(format!(
            "the MQTT client id of the durable session '{}' contains {c:?}: a client id is \
             ASCII letters, digits, '-', '_' and '.' (another --name or --mqtt-client-id)",
            shown.escape_debug()
        ));
    }
    Ok(id)
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

    fn sharing(group: &str) -> FfiSharing {
        FfiSharing {
            group: group.into(),
            ..FfiSharing::default()
        }
    }

    #[test]
    fn an_amqp_plan_takes_the_options_that_go_together() {
        let mut options = sharing("workers");
        options.prefetch = 5;
        options.delivery_limit = 3;
        options.dead_letter_exchange = "dead".into();
        let queue = amqp_plan(&options, "svc", "jobs", "a.#").unwrap().unwrap();
        assert_eq!(
            queue,
            AmqpQueue {
                name: "workers:jobs:a.#".into(),
                quorum: true,
                prefetch: Some(5),
                delivery_limit: Some(3),
                dead_letter_exchange: Some("dead".into()),
            }
        );
        options.classic = true;
        let err = amqp_plan(&options, "svc", "jobs", "a.#").unwrap_err();
        assert!(err.contains("quorum"), "{err}");
        options.delivery_limit = 0;
        assert!(
            !amqp_plan(&options, "svc", "jobs", "a")
                .unwrap()
                .unwrap()
                .quorum
        );
        options.dead_letter_exchange = "a\nb".into();
        assert!(amqp_plan(&options, "svc", "jobs", "a").is_err());
        assert!(amqp_plan(&sharing("a/b"), "svc", "jobs", "a").is_err());
        let classic_alone = FfiSharing {
            classic: true,
            ..FfiSharing::default()
        };
        let err = amqp_plan(&classic_alone, "svc", "jobs", "a").unwrap_err();
        assert!(err.contains("need a group"), "{err}");
    }

    #[test]
    fn an_mqtt_plan_takes_a_group_and_durable_only() {
        assert_eq!(
            mqtt_plan(&sharing("g"), "a/+").unwrap(),
            MqttPlan {
                filter: "$share/g/a/+".into(),
                durable: false
            }
        );
        let mut options = sharing("g");
        options.prefetch = 1;
        assert!(mqtt_plan(&options, "a").unwrap_err().contains("AMQP"));
        let mut durable = FfiSharing {
            durable: true,
            ..FfiSharing::default()
        };
        assert_eq!(
            mqtt_plan(&durable, "a/#").unwrap(),
            MqttPlan {
                filter: "a/#".into(),
                durable: true
            }
        );
        durable.group = "g".into();
        assert_eq!(mqtt_plan(&durable, "a").unwrap().filter, "$share/g/a");
        assert!(mqtt_plan(&FfiSharing::default(), "a/#/b").is_err());
    }

    #[test]
    fn a_session_id_is_stable_and_fits_mqtt() {
        let id = mqtt_session_id("svc", None).unwrap();
        assert_eq!(id, mqtt_session_id("svc", None).unwrap());
        assert_ne!(id, mqtt_session_id("svc2", None).unwrap());
        assert_eq!(
            mqtt_session_id("x", Some("a.b_c")).unwrap(),
            "a.b_c-durable"
        );
        for bad in ["a b", "a/b", "é", "a+", "a#"] {
            let err = mqtt_session_id(bad, None).expect_err(bad);
            assert!(err.contains("contains"), "{bad}: {err}");
        }
        let longest = "s".repeat(MAX_CLIENT_ID_BYTES - "-durable".len());
        assert!(mqtt_session_id("", Some(&longest)).is_ok());
        let err = mqtt_session_id("", Some(&format!("{longest}s"))).unwrap_err();
        assert!(err.contains("at most 128"), "{err}");
    }
}
