//! Declaring what a plugin publishes, so that the service's AsyncAPI document
//! (`GET /{name}/api/asyncapi.json`) lists it with its message shape: the eventbus side of
//! what a route's handler types are to the OpenAPI document.
//!
//! ```no_run
//! use plugin_api::{prelude::*, Publishes, QoS};
//!
//! /// What the chamber publishes.
//! #[derive(serde::Serialize, JsonSchema)]
//! struct ChamberState {
//!     temperature: f64,
//! }
//!
//! # fn demo(ctx: &Context) -> plugin_api::Result<()> {
//! ctx.declare_publish::<ChamberState>(
//!     Publishes::mqtt("brewcast/state/me", QoS::AtLeastOnce, true)
//!         .summary("The chamber's state, retained"),
//! )?;
//! ctx.declare_publish::<ChamberState>(Publishes::amqp("brewcast", "me"))?;
//! # Ok(()) }
//! ```
//!
//! A declaration changes nothing about publishing itself: it documents. Declare during
//! `startup`, once per channel and type; the document is rebuilt with every reload.

use schemars::{
    generate::{Contract, SchemaSettings},
    JsonSchema,
};
use serde_json::{Map, Value};

use crate::{
    abi::asyncapi::{Channel, Publication},
    ExchangeType, QoS,
};

/// A channel a plugin publishes on, for [`Context::declare_publish`](crate::Context::declare_publish).
#[derive(Debug, Clone)]
pub struct Publishes {
    channel: Channel,
    message: Option<String>,
    summary: String,
}

impl Publishes {
    /// AMQP: exchange `exchange` (a topic exchange unless
    /// [`exchange_type`](Publishes::exchange_type) says otherwise) with routing key `routing`.
    pub fn amqp(exchange: &str, routing: &str) -> Self {
        Publishes {
            channel: Channel::Amqp {
                exchange: exchange.to_owned(),
                exchange_type: ExchangeType::Topic.as_str().to_owned(),
                routing: routing.to_owned(),
            },
            message: None,
            summary: String::new(),
        }
    }

    /// MQTT: topic `topic` (no wildcards) with this QoS, retained or not.
    pub fn mqtt(topic: &str, qos: QoS, retain: bool) -> Self {
        Publishes {
            channel: Channel::Mqtt {
                topic: topic.to_owned(),
                qos: qos.level(),
                retain,
            },
            message: None,
            summary: String::new(),
        }
    }

    /// The AMQP exchange's type (no effect on an MQTT channel).
    pub fn exchange_type(mut self, kind: ExchangeType) -> Self {
        if let Channel::Amqp { exchange_type, .. } = &mut self.channel {
            *exchange_type = kind.as_str().to_owned();
        }
        self
    }

    /// One line on what is published and when.
    pub fn summary(mut self, summary: &str) -> Self {
        self.summary = summary.to_owned();
        self
    }

    /// The message's name; the payload type's schema name by default.
    pub fn message_name(mut self, name: &str) -> Self {
        self.message = Some(name.to_owned());
        self
    }

    /// The declaration for payload type `T`, as the host reads it.
    pub(crate) fn declaration<T: JsonSchema + ?Sized>(self) -> Publication {
        let (mut payload, schemas) = payload_schema::<T>();
        if let (Value::Object(payload), false) = (&mut payload, schemas.is_empty()) {
            payload.insert(crate::openapi::SCHEMAS_KEY.into(), Value::Object(schemas));
        }
        Publication {
            channel: self.channel,
            message: self
                .message
                .unwrap_or_else(|| T::schema_name().into_owned()),
            summary: self.summary,
            payload,
        }
    }
}

/// `T`'s schema as it is written (serialized), JSON Schema draft 7 with its named schemas
/// referred to as `#/components/schemas/<Name>`, where the AsyncAPI document keeps them.
fn payload_schema<T: JsonSchema + ?Sized>() -> (Value, Map<String, Value>) {
    let settings = SchemaSettings::draft07().with(|settings| {
        settings.contract = Contract::Serialize;
        settings.definitions_path = "/components/schemas".into();
        settings.meta_schema = None;
    });
    let mut generator = settings.into_generator();
    let mut schema = generator.subschema_for::<T>();
    for transform in generator.transforms_mut() {
        transform.transform(&mut schema);
    }
    (schema.to_value(), generator.take_definitions(true))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Serialize, JsonSchema)]
    #[allow(dead_code)]
    struct Inner {
        value: f64,
    }

    /// An event.
    #[derive(serde::Serialize, JsonSchema)]
    #[allow(dead_code)]
    struct Event {
        inner: Inner,
        note: Option<String>,
    }

    #[test]
    fn a_declaration_carries_the_types_schemas() {
        let declaration = Publishes::amqp("brewcast", "me")
            .exchange_type(ExchangeType::Fanout)
            .summary("Every update")
            .declaration::<Event>();
        declaration.check().unwrap();
        assert_eq!(declaration.message, "Event");
        assert_eq!(declaration.payload["$ref"], "#/components/schemas/Event");
        let schemas = &declaration.payload["x-schemas"];
        assert_eq!(
            schemas["Event"]["properties"]["inner"]["$ref"],
            "#/components/schemas/Inner"
        );
        assert!(schemas["Inner"]["properties"]["value"].is_object());
        assert!(
            matches!(&declaration.channel, Channel::Amqp { exchange_type, .. } if exchange_type == "fanout")
        );
        let mqtt = Publishes::mqtt("a/b", QoS::AtLeastOnce, true)
            .message_name("Reading")
            .declaration::<f64>();
        assert_eq!(mqtt.message, "Reading");
        assert_eq!(mqtt.payload["type"], "number");
        assert_eq!(
            mqtt.channel,
            Channel::Mqtt {
                topic: "a/b".into(),
                qos: 1,
                retain: true
            }
        );
    }
}
