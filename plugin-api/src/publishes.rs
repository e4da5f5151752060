//! Typed publishing: a [`Publisher<T>`] sends messages of one Rust type on one channel, and
//! making it declares that channel with `T`'s JSON Schema in the service's AsyncAPI document
//! (`GET /{name}/api/asyncapi.json`). The message schema comes from the type, as a route's
//! comes from its handler, and the compiler keeps what is sent and what is documented the
//! same: `publish` takes a `&T` and nothing else.
//!
//! ```no_run
//! use plugin_api::prelude::*;
//!
//! /// What the chamber publishes.
//! #[derive(serde::Serialize, JsonSchema)]
//! struct ChamberState {
//!     temperature: f64,
//! }
//!
//! # async fn demo(ctx: &Context) -> plugin_api::Result<()> {
//! // In `startup`: one publisher per channel, kept for the tasks that publish.
//! let retained: Publisher<ChamberState> = ctx.publisher(
//!     Publishes::mqtt("brewcast/state/me", QoS::AtLeastOnce, true)
//!         .summary("The chamber's state, retained"),
//! )?;
//! let broadcast = ctx.publisher::<ChamberState>(Publishes::amqp("brewcast", "me"))?;
//! // Later, as often as needed:
//! let state = ChamberState { temperature: 19.5 };
//! retained.publish(&state).await?;
//! broadcast.publish(&state).await?;
//! # Ok(()) }
//! ```
//!
//! [`Context::declare_publish`](crate::Context::declare_publish) declares without a
//! publisher, for a plugin that publishes with the untyped calls
//! ([`Context::publish`](crate::Context::publish),
//! [`Context::mqtt_publish`](crate::Context::mqtt_publish)); both go through the same
//! declaration. Make publishers during `startup`, once per channel and type; the document is
//! rebuilt with every reload. The test kit shows both sides:
//! [`TestHost::declared_publications`](crate::testing::TestHost::declared_publications) and
//! [`TestHost::published`](crate::testing::TestHost::published) /
//! [`mqtt_published`](crate::testing::TestHost::mqtt_published).

use std::{fmt, marker::PhantomData};

use schemars::{
    generate::{Contract, SchemaSettings},
    JsonSchema,
};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::{
    abi::asyncapi::{Channel, Publication},
    Context, Error, ExchangeType, Publish, QoS, Result,
};

/// Where a channel's messages go.
#[derive(Debug, Clone)]
enum Target {
    Amqp {
        exchange: String,
        routing: String,
        kind: ExchangeType,
    },
    Mqtt {
        topic: String,
        qos: QoS,
        retain: bool,
    },
}

impl Target {
    /// The channel as a declaration names it.
    fn channel(&self) -> Channel {
        match self {
            Target::Amqp {
                exchange,
                routing,
                kind,
            } => Channel::Amqp {
                exchange: exchange.clone(),
                exchange_type: kind.as_str().to_owned(),
                routing: routing.clone(),
            },
            Target::Mqtt { topic, qos, retain } => Channel::Mqtt {
                topic: topic.clone(),
                qos: qos.level(),
                retain: *retain,
            },
        }
    }
}

/// A channel a plugin publishes on, for [`Context::publisher`](crate::Context::publisher) and
/// [`Context::declare_publish`](crate::Context::declare_publish).
#[derive(Debug, Clone)]
pub struct Publishes {
    target: Target,
    message: Option<String>,
    summary: String,
}

impl Publishes {
    /// AMQP: exchange `exchange` (a topic exchange unless
    /// [`exchange_type`](Publishes::exchange_type) says otherwise) with routing key `routing`.
    pub fn amqp(exchange: &str, routing: &str) -> Self {
        Publishes {
            target: Target::Amqp {
                exchange: exchange.to_owned(),
                routing: routing.to_owned(),
                kind: ExchangeType::Topic,
            },
            message: None,
            summary: String::new(),
        }
    }

    /// MQTT: topic `topic` (no wildcards) with this QoS, retained or not.
    pub fn mqtt(topic: &str, qos: QoS, retain: bool) -> Self {
        Publishes {
            target: Target::Mqtt {
                topic: topic.to_owned(),
                qos,
                retain,
            },
            message: None,
            summary: String::new(),
        }
    }

    /// The AMQP exchange's type (no effect on an MQTT channel).
    pub fn exchange_type(mut self, exchange_type: ExchangeType) -> Self {
        if let Target::Amqp { kind, .. } = &mut self.target {
            *kind = exchange_type;
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
            channel: self.target.channel(),
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

/// Sends messages of type `T` on one channel, as JSON: made by
/// [`Context::publisher`](crate::Context::publisher), which declares the channel with `T`'s
/// schema for the AsyncAPI document, so that the document describes what this sends.
/// Cheap to clone; move clones into the tasks that publish.
///
/// ```no_run
/// use plugin_api::prelude::*;
///
/// #[derive(serde::Serialize, JsonSchema)]
/// struct Reading {
///     celsius: f64,
/// }
///
/// # async fn demo(ctx: &Context) -> plugin_api::Result<()> {
/// let readings: Publisher<Reading> =
///     ctx.publisher(Publishes::mqtt("brewcast/history/me", QoS::AtMostOnce, false))?;
/// readings.publish(&Reading { celsius: 19.5 }).await?;
/// # Ok(()) }
/// ```
pub struct Publisher<T: ?Sized> {
    ctx: Context,
    target: Target,
    payload: PhantomData<fn(&T)>,
}

impl<T: ?Sized> Clone for Publisher<T> {
    fn clone(&self) -> Self {
        Publisher {
            ctx: self.ctx.clone(),
            target: self.target.clone(),
            payload: PhantomData,
        }
    }
}

impl<T: ?Sized> fmt::Debug for Publisher<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Publisher")
            .field("channel", &self.target.channel())
            .field("payload", &std::any::type_name::<T>())
            .finish()
    }
}

impl<T: Serialize + ?Sized> Publisher<T> {
    /// A publisher for `publishes`' channel (declared by the caller).
    pub(crate) fn new(ctx: Context, publishes: Publishes) -> Self {
        Publisher {
            ctx,
            target: publishes.target,
            payload: PhantomData,
        }
    }

    /// Publishes `message` as JSON on the channel: to the AMQP exchange as
    /// [`Context::publish_with`](crate::Context::publish_with) does (the exchange declared
    /// with its type first), or to the MQTT topic with the channel's QoS and retain flag as
    /// [`Context::mqtt_publish`](crate::Context::mqtt_publish) does; the same errors.
    pub async fn publish(&self, message: &T) -> Result<()> {
        match &self.target {
            Target::Amqp {
                exchange,
                routing,
                kind,
            } => {
                let publish = Publish::new(exchange, routing, message)?.exchange_type(*kind);
                self.ctx.publish_with(publish).await
            }
            Target::Mqtt { topic, qos, retain } => {
                self.ctx
                    .mqtt_publish_json(topic, message, *qos, *retain)
                    .await
            }
        }
    }

    /// Makes `message` this plugin's MQTT will on the channel's topic, with its retain flag
    /// ([`Context::mqtt_set_will`](crate::Context::mqtt_set_will)): what the broker
    /// announces if the service dies, typed like every other message there. An AMQP
    /// channel has no will: an [`Invalid`](crate::ErrorKind::Invalid) error.
    pub fn set_will(&self, message: &T) -> Result<()> {
        match &self.target {
            Target::Mqtt { topic, retain, .. } => {
                let payload = crate::mqtt::json_payload(message)?;
                self.ctx.mqtt_set_will(topic, payload, *retain)
            }
            Target::Amqp { .. } => Err(Error::invalid("an AMQP channel has no will")),
        }
    }

    /// The channel, as declared.
    pub fn channel(&self) -> Channel {
        self.target.channel()
    }
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
