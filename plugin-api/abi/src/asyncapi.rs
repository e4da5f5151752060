//! What a plugin declares it publishes, for the service's AsyncAPI document: the JSON a
//! plugin hands to `HostContext::declare_publish`, and the rule that accepts it, applied
//! alike by the host and the SDK's test kit.
//!
//! A declaration names one channel — an AMQP exchange and routing key, or an MQTT topic —
//! with its bindings (exchange type; QoS and retain), the message's name, a summary, and the
//! payload's JSON Schema (draft 7, as AsyncAPI's default schema format is its superset), with
//! the named schemas its `$ref`s point to (`#/components/schemas/…`) under
//! [`SCHEMAS_KEY`](crate::openapi::SCHEMAS_KEY), as a route's documentation carries them.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{error_code, FfiError};

/// Most declarations one plugin may make.
pub const MAX_PUBLICATIONS: usize = 100;
/// Longest declaration, as JSON, in bytes (schemas included).
pub const MAX_DECLARATION: usize = 256 * 1024;
/// Longest exchange, routing key or message name, in bytes (AMQP's short string).
pub const MAX_NAME: usize = 255;
/// Longest MQTT topic, in bytes.
pub const MAX_TOPIC: usize = 1024;
/// Longest summary, in bytes.
pub const MAX_SUMMARY: usize = 1024;

/// The channel of a declaration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "bus", rename_all = "lowercase")]
pub enum Channel {
    /// An AMQP exchange and routing key.
    Amqp {
        exchange: String,
        /// `topic`, `fanout` or `direct`.
        exchange_type: String,
        routing: String,
    },
    /// An MQTT topic (no wildcards).
    Mqtt {
        topic: String,
        qos: u8,
        retain: bool,
    },
}

/// One declaration: a plugin publishes messages of this shape on this channel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Publication {
    #[serde(flatten)]
    pub channel: Channel,
    /// The message's name (its Rust type's, by default).
    pub message: String,
    /// One line on what is published and when.
    #[serde(default)]
    pub summary: String,
    /// The payload's JSON Schema, its named schemas under `x-schemas`.
    pub payload: Value,
}

fn invalid(message: String) -> FfiError {
    FfiError {
        code: error_code::INVALID,
        message: message.into(),
    }
}

/// `value` is 1 to `max` bytes without control characters.
fn text(field: &str, value: &str, max: usize) -> Result<(), FfiError> {
    if value.is_empty() || value.len() > max {
        return Err(invalid(format!("{field} must be 1 to {max} bytes")));
    }
    if value.chars().any(char::is_control) {
        return Err(invalid(format!(
            "{field} must not contain control characters"
        )));
    }
    Ok(())
}

impl Publication {
    /// Reads and checks a declaration's JSON.
    ///
    /// ```
    /// use plugin_abi::asyncapi::Publication;
    ///
    /// let ok = r#"{"bus": "mqtt", "topic": "brewcast/state/me", "qos": 1, "retain": true,
    ///              "message": "State", "payload": {"type": "object"}}"#;
    /// assert!(Publication::from_json(ok).is_ok());
    /// let wildcard = ok.replace("state/me", "state/#");
    /// assert!(Publication::from_json(&wildcard).is_err());
    /// ```
    pub fn from_json(json: &str) -> Result<Publication, FfiError> {
        if json.len() > MAX_DECLARATION {
            return Err(invalid(format!(
                "a publish declaration is at most {MAX_DECLARATION} bytes"
            )));
        }
        let publication: Publication = serde_json::from_str(json)
            .map_err(|err| invalid(format!("not a publish declaration: {err}")))?;
        publication.check()?;
        Ok(publication)
    }

    /// The rule: names within their bounds and without control characters, an exchange type
    /// AMQP knows, an MQTT topic without wildcards and a QoS of 0 or 1, a payload schema that
    /// is an object (or `true`).
    pub fn check(&self) -> Result<(), FfiError> {
        match &self.channel {
            Channel::Amqp {
                exchange,
                exchange_type,
                routing,
            } => {
                text("exchange", exchange, MAX_NAME)?;
                if !routing.is_empty() {
                    text("routing key", routing, MAX_NAME)?;
                }
                if !matches!(exchange_type.as_str(), "topic" | "fanout" | "direct") {
                    return Err(invalid(format!(
                        "exchange type must be topic, fanout or direct, not {exchange_type:?}"
                    )));
                }
            }
            Channel::Mqtt { topic, qos, .. } => {
                text("topic", topic, MAX_TOPIC)?;
                if topic.contains(['+', '#']) {
                    return Err(invalid("a published topic has no wildcards".into()));
                }
                if *qos > 1 {
                    return Err(invalid(format!("QoS must be 0 or 1, not {qos}")));
                }
            }
        }
        text("message name", &self.message, MAX_NAME)?;
        if !self.summary.is_empty() {
            text("summary", &self.summary, MAX_SUMMARY)?;
        }
        if !(self.payload.is_object() || self.payload == Value::Bool(true)) {
            return Err(invalid("the payload schema must be a JSON object".into()));
        }
        Ok(())
    }
}

/// Adds the declaration `json` to a plugin's `declared` ones: checked, at most
/// [`MAX_PUBLICATIONS`], and the same declaration twice is kept once.
pub fn declare(declared: &mut Vec<Publication>, json: &str) -> Result<(), FfiError> {
    let publication = Publication::from_json(json)?;
    if declared.contains(&publication) {
        return Ok(());
    }
    if declared.len() >= MAX_PUBLICATIONS {
        return Err(invalid(format!(
            "a plugin declares at most {MAX_PUBLICATIONS} publications"
        )));
    }
    declared.push(publication);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn amqp(exchange: &str, kind: &str, routing: &str) -> Publication {
        Publication {
            channel: Channel::Amqp {
                exchange: exchange.into(),
                exchange_type: kind.into(),
                routing: routing.into(),
            },
            message: "State".into(),
            summary: String::new(),
            payload: json!({}),
        }
    }

    #[test]
    fn the_rule() {
        assert!(amqp("brewcast", "topic", "me").check().is_ok());
        assert!(amqp("alerts", "fanout", "").check().is_ok());
        assert!(amqp("", "topic", "me").check().is_err());
        assert!(amqp("x", "headers", "me").check().is_err());
        assert!(amqp("x", "topic", "a\nb").check().is_err());
        assert!(amqp(&"x".repeat(256), "topic", "me").check().is_err());
        let mut p = amqp("x", "topic", "me");
        p.payload = json!(3);
        assert!(p.check().is_err());
        let text = serde_json::to_string(&amqp("x", "topic", "me")).unwrap();
        assert!(text.contains("\"bus\":\"amqp\""), "{text}");
        assert_eq!(
            Publication::from_json(&text).unwrap(),
            amqp("x", "topic", "me")
        );
        let qos2 = json!({"bus": "mqtt", "topic": "t", "qos": 2, "retain": false,
                          "message": "M", "payload": {}});
        let err = Publication::from_json(&qos2.to_string()).unwrap_err();
        assert!(err.message.contains("QoS"), "{}", err.message);
        assert!(Publication::from_json(&" ".repeat(MAX_DECLARATION + 1)).is_err());
    }

    #[test]
    fn declarations_are_bounded_and_kept_once() {
        let mut declared = Vec::new();
        let json = |n: usize| serde_json::to_string(&amqp("x", "topic", &n.to_string())).unwrap();
        declare(&mut declared, &json(0)).unwrap();
        declare(&mut declared, &json(0)).unwrap();
        assert_eq!(declared.len(), 1);
        for n in 1..MAX_PUBLICATIONS {
            declare(&mut declared, &json(n)).unwrap();
        }
        assert!(declare(&mut declared, &json(MAX_PUBLICATIONS)).is_err());
        assert_eq!(declared.len(), MAX_PUBLICATIONS);
    }
}
