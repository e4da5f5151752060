//! MQTT topic names and topic filters: which ones the host sends to a broker, and which topics
//! a filter matches. Written once, so that the host and the SDK's test kit refuse the same
//! names with the same words.
//!
//! Why these rules: a broker does not answer a name it dislikes with an error, it drops the
//! connection, and with it every publish in flight and every subscription. A name from a
//! request or a command line must therefore be refused before it is sent. The rules are the
//! union of what MQTT 3.1.1 requires and what Mosquitto (2.0, the broker BrewBlox runs)
//! enforces; each was checked against a private Mosquitto 2.0.11:
//!
//! - MQTT 3.1.1 (sections 1.5.3 and 4.7): UTF-8, at least one byte, at most 65535 bytes (the
//!   length prefix is two bytes), no U+0000. The wildcards `+` (one level) and `#` (any number
//!   of levels, the parent included) appear only in filters, each as a whole level, `#` only
//!   as the last one.
//! - Mosquitto refuses (disconnects the client for) the control characters U+0001..U+001F
//!   (tab and newline included) and U+007F..U+009F, and the Unicode noncharacters
//!   U+FDD0..U+FDEF and every code point ending in FFFE or FFFF (U+FFFE, U+FFFF,
//!   U+1FFFE, …, U+10FFFF). Rust strings hold no surrogates or invalid UTF-8 to begin with.
//! - Mosquitto refuses a topic or filter with more than 200 `/` separators, i.e. more than
//!   201 levels (its `TOPIC_HIERARCHY_LIMIT`; `a/b` has one separator and two levels).
//!
//! Topics starting with `$` (the broker's own, such as `$SYS/…`) are matched by no filter that
//! starts with a wildcard, as MQTT says.

use std::fmt;

/// The longest topic or filter in bytes: MQTT strings carry a two-byte length.
pub const MAX_TOPIC_BYTES: usize = 65535;

/// The most `/` separators in a topic or filter that Mosquitto accepts (201 levels).
pub const MAX_TOPIC_SEPARATORS: usize = 200;

/// Why a topic or a filter was refused: one line, the name shown escaped and shortened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicError(pub String);

impl fmt::Display for TopicError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TopicError {}

/// Whether Mosquitto refuses `c` anywhere in a topic or filter.
pub fn is_refused_char(c: char) -> bool {
    let code = u32::from(c);
    c == '\0'
        || c.is_control() // U+0001..U+001F and U+007F..U+009F
        || (0xFDD0..=0xFDEF).contains(&code)
        || code & 0xFFFE == 0xFFFE
}

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
    let ascii = crate::printable_ascii(text);
    if let Some(c) = (!ascii)
        .then(|| text.chars().find(|&c| is_refused_char(c)))
        .flatten()
    {
        let what = if c == '\0' {
            "a NUL character".to_owned()
        } else if c.is_control() {
            format!("the control character U+{:04X}", u32::from(c))
        } else {
            format!("the Unicode noncharacter U+{:04X}", u32::from(c))
        };
        return Err(TopicError(format!(
            "MQTT {kind} '{}' contains {what}, which MQTT brokers refuse",
            shown(text)
        )));
    }
    let separators = text.bytes().filter(|&b| b == b'/').count();
    if separators > MAX_TOPIC_SEPARATORS {
        return Err(TopicError(format!(
            "MQTT {kind} '{}' has {} levels; brokers accept at most {}",
            shown(text),
            separators + 1,
            MAX_TOPIC_SEPARATORS + 1
        )));
    }
    Ok(())
}

/// A topic a message can be published to: the common rules, and no wildcards.
///
/// ```
/// use plugin_abi::mqtt_names::validate_topic;
/// assert!(validate_topic("brewcast/state/svc").is_ok());
/// assert!(validate_topic("a/+").is_err());
/// assert!(validate_topic("x/\u{2}").is_err());
/// ```
pub fn validate_topic(topic: &str) -> Result<(), TopicError> {
    check_common("topic", topic)?;
    // Bytes, not `contains(['+', '#'])`: a char-set search decodes every character.
    if topic.bytes().any(|b| b == b'+' || b == b'#') {
        return Err(TopicError(format!(
            "MQTT topic '{}' contains a wildcard ('+' or '#'); wildcards are for subscriptions",
            shown(topic)
        )));
    }
    Ok(())
}

/// A filter a subscription can be made with: the common rules, `+` and `#` only as whole
/// levels, `#` last.
///
/// ```
/// use plugin_abi::mqtt_names::validate_filter;
/// assert!(validate_filter("brewcast/+/#").is_ok());
/// assert!(validate_filter("a/#/b").is_err());
/// assert!(validate_filter("x/\u{ffff}").is_err());
/// ```
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

/// Whether `topic` matches `filter` (both assumed valid). `a/b/#` matches `a/b` itself. A
/// shared subscription's filter (`$share/<group>/<filter>`) matches what its inner filter
/// matches: the broker delivers its messages on their plain topics.
pub fn matches(filter: &str, topic: &str) -> bool {
    let filter = match crate::sharing::split_mqtt_shared(filter) {
        Some((_, inner)) => inner,
        None => filter,
    };
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

    /// Each case was tried on a private Mosquitto 2.0.11: the refused ones made it drop the
    /// connection (for a SUBSCRIBE and for a PUBLISH), the accepted ones did not.
    #[test]
    fn refuses_what_mosquitto_refuses_and_nothing_else() {
        let refused = [
            "x/\u{1}",
            "x/\u{2}",
            "x/\u{1f}",
            "x/\t",
            "x/\n",
            "x/\u{7f}",
            "x/\u{85}",
            "x/\u{9f}",
            "x/\u{fffe}",
            "x/\u{ffff}",
            "x/\u{fdd0}",
            "x/\u{fdef}",
            "x/\u{1fffe}",
            "x/\u{10ffff}",
        ];
        for text in refused {
            let err = validate_topic(text).unwrap_err();
            assert!(err.0.contains("U+"), "{err}");
            assert!(!err.0.chars().any(char::is_control), "{err}");
            assert!(validate_filter(text).is_err(), "{text:?}");
        }
        let accepted = [
            "x/\u{a0}",
            "x/\u{fdf0}",
            "x/\u{1f600}",
            "x/\u{feff}",
            "x/\u{2028}",
            "x/\u{fffd}",
            "x/ y",
        ];
        for text in accepted {
            assert!(validate_topic(text).is_ok(), "{text:?}");
            assert!(validate_filter(text).is_ok(), "{text:?}");
        }
        let deepest = vec!["a"; MAX_TOPIC_SEPARATORS + 1].join("/");
        assert!(validate_topic(&deepest).is_ok());
        assert!(validate_filter(&deepest.replace('a', "+")).is_ok());
        assert!(validate_topic(&"/".repeat(MAX_TOPIC_SEPARATORS)).is_ok());
        let deeper = format!("{deepest}/a");
        let err = validate_topic(&deeper).unwrap_err();
        assert!(
            err.0.contains("202 levels") && err.0.contains("at most 201"),
            "{err}"
        );
        assert!(validate_filter(&format!("{deepest}/#")).is_err());
        assert!(validate_filter(&"/".repeat(MAX_TOPIC_SEPARATORS + 1)).is_err());
    }
}
