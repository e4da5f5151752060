//! MQTT topic names and topic filters: what may be sent, and which topics a filter matches.
//!
//! A topic or filter is 1 to 65535 bytes of UTF-8 (MQTT's length prefix is two bytes) without
//! NUL. The wildcards `+` (one level) and `#` (any number of levels, the parent included) may
//! appear only in filters, each as a whole level, and `#` only as the last one. Topics
//! starting with `$` (the broker's own, such as `$SYS/…`) are matched by no filter that starts
//! with a wildcard, as the MQTT rules say.

use std::fmt;

/// The longest topic or filter in bytes: MQTT strings carry a two-byte length.
pub const MAX_TOPIC_BYTES: usize = 65535;

/// Why a topic or a filter was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicError(pub String);

impl fmt::Display for TopicError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TopicError {}

fn check_common(kind: &str, text: &str) -> Result<(), TopicError> {
    if text.is_empty() {
        return Err(TopicError(format!("MQTT {kind} is empty")));
    }
    if text.len() > MAX_TOPIC_BYTES {
        return Err(TopicError(format!(
            "MQTT {kind} of {} bytes is longer than {MAX_TOPIC_BYTES} bytes",
            text.len()
        )));
    }
    if text.contains('\0') {
        return Err(TopicError(format!("MQTT {kind} contains a NUL character")));
    }
    Ok(())
}

/// A topic a message can be published to: no wildcards.
pub fn validate_topic(topic: &str) -> Result<(), TopicError> {
    check_common("topic", topic)?;
    if topic.contains(['+', '#']) {
        return Err(TopicError(format!(
            "MQTT topic '{}' contains a wildcard ('+' or '#'); wildcards are for subscriptions",
            shown(topic)
        )));
    }
    Ok(())
}

/// A filter a subscription can be made with: `+` and `#` only as whole levels, `#` last.
pub fn validate_filter(filter: &str) -> Result<(), TopicError> {
    check_common("topic filter", filter)?;
    let levels: Vec<&str> = filter.split('/').collect();
    for (index, level) in levels.iter().enumerate() {
        let wild = level.contains(['+', '#']);
        if wild && *level != "+" && *level != "#" {
            return Err(TopicError(format!(
                "MQTT topic filter '{}': a wildcard must be a whole level, not '{}'",
                shown(filter),
                shown(level)
            )));
        }
        if *level == "#" && index + 1 != levels.len() {
            return Err(TopicError(format!(
                "MQTT topic filter '{}': '#' must be the last level",
                shown(filter)
            )));
        }
    }
    Ok(())
}

/// Whether `topic` matches `filter` (both assumed valid). `a/b/#` matches `a/b` itself.
pub fn matches(filter: &str, topic: &str) -> bool {
    if topic.starts_with('$') && filter.starts_with(['+', '#']) {
        return false;
    }
    // Split as bytes: `str::split` with a char pattern searches with memchr, which for
    // levels of a few bytes costs several times this (it runs for every message and every
    // subscription).
    let mut topic_levels = topic.as_bytes().split(|&b| b == b'/');
    for level in filter.as_bytes().split(|&b| b == b'/') {
        match (level, topic_levels.next()) {
            (b"#", _) => return true,
            (b"+", Some(_)) => {}
            (expected, Some(actual)) if expected == actual => {}
            _ => return false,
        }
    }
    topic_levels.next().is_none()
}

/// A topic for an error message: at most 200 characters, control characters escaped.
fn shown(text: &str) -> String {
    let mut out: String = text.chars().take(200).collect();
    if out.len() < text.len() {
        out.push('…');
    }
    out.escape_debug().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_match_as_mqtt_says() {
        let yes = [
            ("a/b", "a/b"),
            ("a/+", "a/b"),
            ("+/b", "a/b"),
            ("a/#", "a/b/c"),
            ("a/b/#", "a/b"),
            ("#", "a/b"),
            ("+", "a"),
            ("a/+/c", "a//c"),
            ("a/+", "a/"),
            ("brewcast/#", "brewcast/history/svc"),
            ("$SYS/#", "$SYS/broker"),
        ];
        for (filter, topic) in yes {
            assert!(matches(filter, topic), "{filter} should match {topic}");
        }
        let no = [
            ("a/b", "a/b/c"),
            ("a/+", "a/b/c"),
            ("a/+", "a"),
            ("a/b/#", "a"),
            ("a/b/#", "a/bc"),
            ("+", "a/b"),
            ("#", "$SYS/broker"),
            ("+/broker", "$SYS/broker"),
            ("a/b", "a"),
        ];
        for (filter, topic) in no {
            assert!(!matches(filter, topic), "{filter} should not match {topic}");
        }
    }

    #[test]
    fn topics_and_filters_are_checked() {
        assert!(validate_topic("brewcast/state/svc").is_ok());
        assert!(validate_topic("/leading/and/trailing/").is_ok());
        for bad in ["", "a/+", "a/#", "a\0b", "a+b"] {
            assert!(validate_topic(bad).is_err(), "{bad:?}");
        }
        assert!(validate_topic(&"x".repeat(MAX_TOPIC_BYTES)).is_ok());
        let err = validate_topic(&"x".repeat(MAX_TOPIC_BYTES + 1)).unwrap_err();
        assert!(err.0.contains("65536 bytes"), "{err}");
        for good in ["#", "+", "a/+/c", "a/#", "+/+/#", "a/b"] {
            assert!(validate_filter(good).is_ok(), "{good}");
        }
        for bad in ["", "a/#/c", "a#", "a/b+", "#/a", "a\0"] {
            assert!(validate_filter(bad).is_err(), "{bad:?}");
        }
        let err = validate_filter("a/x#\n").unwrap_err();
        assert!(err.0.contains("\\n") && !err.0.contains('\n'), "{err}");
    }
}
