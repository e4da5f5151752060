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

use crate::swar;

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

/// What one pass over a name's bytes found: it runs on every publish, and three passes
/// (printable, separators, wildcards) cost three times its length.
struct Scanned {
    /// Printable ASCII only (`' '..='~'`): the per-character checks have nothing to find.
    printable: bool,
    separators: usize,
    wildcard: bool,
}

fn scan(text: &str) -> Scanned {
    let mut found = Scanned {
        printable: true,
        separators: 0,
        wildcard: false,
    };
    let (words, rest) = swar::words(text.as_bytes());
    for word in words {
        found.printable &= crate::printable_word(word);
        found.separators += swar::count_equal(word, b'/') as usize;
        found.wildcard |= swar::equal_bytes(word, b'+') | swar::equal_bytes(word, b'#') != 0;
    }
    for &b in rest {
        found.printable &= crate::printable_byte(b);
        found.separators += usize::from(b == b'/');
        found.wildcard |= b == b'+' || b == b'#';
    }
    found
}

/// The rules of topics and filters alike; says whether `text` holds a wildcard character.
fn check_common(kind: &str, text: &str) -> Result<bool, TopicError> {
    if text.is_empty() {
        return Err(TopicError(format!("MQTT {kind} is empty")));
    }
    if text.len() > MAX_TOPIC_BYTES {
        return Err(TopicError(format!(
            "MQTT {kind} of {} bytes is longer than {MAX_TOPIC_BYTES} bytes",
            text.len()
        )));
    }
    let scanned = scan(text);
    if let Some(c) = (!scanned.printable)
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
    if scanned.separators > MAX_TOPIC_SEPARATORS {
        return Err(TopicError(format!(
            "MQTT {kind} '{}' has {} levels; brokers accept at most {}",
            shown(text),
            scanned.separators + 1,
            MAX_TOPIC_SEPARATORS + 1
        )));
    }
    Ok(scanned.wildcard)
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
    if check_common("topic", topic)? {
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
    if !check_common("topic filter", filter)? {
        return Ok(());
    }
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
    matches_levels(filter.as_bytes(), topic.as_bytes())
}

/// The level-by-level match of a valid filter and topic, in one pass over both: it runs for
/// every message and every subscription, and splitting both into levels first cost several
/// times this (each split searched for the next `/` before a byte was compared).
///
/// The bytes both begin with are compared eight at a time first: a common prefix matches
/// whatever wildcards it holds (a `+` level there stands for the same level of the topic,
/// a `#` ends the filter), so the levels are walked from the start of the level where the
/// two first differ.
fn matches_levels(filter: &[u8], topic: &[u8]) -> bool {
    let same = common_prefix(filter, topic);
    let level = filter[..same]
        .iter()
        .rposition(|&b| b == b'/')
        .map_or(0, |slash| slash + 1);
    let (mut f, mut t) = (level, level);
    loop {
        // Here `f` and `t` are at the start of a level of each.
        match &filter[f..] {
            // A multi-level wildcard is the filter's last level, and matches the rest.
            [b'#'] => return true,
            // A single-level wildcard takes the topic's level, whatever it holds.
            [b'+', rest @ ..] if rest.first().is_none_or(|&b| b == b'/') => {
                f += 1;
                while t < topic.len() && topic[t] != b'/' {
                    t += 1;
                }
            }
            // A plain level: the same bytes, up to the same end of level.
            _ => {
                while f < filter.len() && filter[f] != b'/' {
                    if topic.get(t) != Some(&filter[f]) {
                        return false;
                    }
                    f += 1;
                    t += 1;
                }
                if t < topic.len() && topic[t] != b'/' {
                    return false;
                }
            }
        }
        // Each is now at its end or at a `/`.
        match (f == filter.len(), t == topic.len()) {
            (true, true) => return true,
            (true, false) => return false,
            // `a/b/#` matches `a/b` itself.
            (false, true) => return &filter[f..] == b"/#",
            (false, false) => {
                f += 1;
                t += 1;
            }
        }
    }
}

/// How many bytes `a` and `b` begin with in common.
fn common_prefix(a: &[u8], b: &[u8]) -> usize {
    let len = a.len().min(b.len());
    let (a_words, _) = swar::words(&a[..len]);
    let (b_words, _) = swar::words(&b[..len]);
    let mut same = 0;
    for (x, y) in a_words.zip(b_words) {
        let differ = x ^ y;
        if differ != 0 {
            // Little-endian words: the lowest set bit is in the first differing byte.
            return same + (differ.trailing_zeros() / 8) as usize;
        }
        same += 8;
    }
    same + a[same..len]
        .iter()
        .zip(&b[same..len])
        .take_while(|(x, y)| x == y)
        .count()
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

    /// The matcher's definition, level by level as the MQTT standard says it: the one-pass
    /// [`matches_levels`] must agree with it.
    fn matches_by_split(filter: &str, topic: &str) -> bool {
        let mut topic_levels = topic.split('/');
        for level in filter.split('/') {
            match (level, topic_levels.next()) {
                ("#", _) => return true,
                ("+", Some(_)) => {}
                (expected, Some(actual)) if expected == actual => {}
                _ => return false,
            }
        }
        topic_levels.next().is_none()
    }

    /// The eight-at-a-time scan finds what a byte at a time finds, for every byte value in
    /// every position of a word and of the remainder.
    #[test]
    fn the_scan_agrees_with_a_byte_at_a_time() {
        let base = *b"ab/cd/ef/gh";
        for at in 0..base.len() {
            for byte in 0..=255u8 {
                let mut bytes = base;
                bytes[at] = byte;
                let Ok(text) = std::str::from_utf8(&bytes) else {
                    continue;
                };
                let found = scan(text);
                let printable = bytes.iter().all(|&b| (b' '..=b'~').contains(&b));
                let separators = bytes.iter().filter(|&&b| b == b'/').count();
                let wildcard = bytes.iter().any(|&b| b == b'+' || b == b'#');
                assert_eq!(found.printable, printable, "{byte:#x} at {at}");
                assert_eq!(found.separators, separators, "{byte:#x} at {at}");
                assert_eq!(found.wildcard, wildcard, "{byte:#x} at {at}");
            }
        }
        assert!(!scan("brewcast/state/é-svc").printable);
        assert!(scan("brewcast/state/svc-1").printable);
    }

    #[test]
    fn the_common_prefix_is_counted_to_the_byte() {
        let text = b"brewcast/history/fermenter-1";
        for len in 0..=text.len() {
            let mut other = text[..len].to_vec();
            assert_eq!(common_prefix(text, &other), len);
            other.push(b'?');
            assert_eq!(common_prefix(&other, text), len, "{len}");
        }
    }

    /// Every valid filter of up to four levels over a small alphabet against every topic of
    /// up to four levels over the same: the one-pass matcher agrees with the definition.
    #[test]
    fn one_pass_matching_agrees_with_level_by_level_matching() {
        let levels = ["", "a", "b", "ab", "ba"];
        let mut topics = vec![String::new()];
        for depth in 0..3 {
            let longer: Vec<String> = topics
                .iter()
                .filter(|t| t.matches('/').count() == depth)
                .flat_map(|t| levels.iter().map(move |l| format!("{t}/{l}")))
                .collect();
            topics.extend(longer);
        }
        topics.extend(levels.iter().skip(1).map(|l| (*l).to_owned()));
        let mut filters: Vec<String> = topics.clone();
        for topic in &topics {
            filters.push(format!("{topic}/#"));
            filters.push(topic.replacen('a', "+", 1));
            filters.push(topic.replace("ab", "+"));
        }
        filters.push("#".to_owned());
        filters.retain(|f| validate_filter(f).is_ok());
        topics.retain(|t| validate_topic(t).is_ok());
        let mut compared = 0;
        for filter in &filters {
            for topic in &topics {
                assert_eq!(
                    matches_levels(filter.as_bytes(), topic.as_bytes()),
                    matches_by_split(filter, topic),
                    "{filter:?} against {topic:?}"
                );
                compared += 1;
            }
        }
        assert!(compared > 10_000, "{compared} pairs compared");
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
