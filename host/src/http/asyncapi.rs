//! `GET /{name}/api/asyncapi.json`: the eventbus side of the service as an AsyncAPI 3.0
//! document, generated from the code as the OpenAPI document is.
//!
//! - `servers`: every broker of the lists the options give (AMQP and/or MQTT), without
//!   credentials, named `amqp`, `amqp-2`, … and `mqtt`, `mqtt-2`, … in the order given (the
//!   service uses one at a time: see `docs/brokers.md`); with MQTT, the service's will when
//!   it has one. Each channel names every server of its bus.
//! - `channels` and `operations`: a `send` operation for every channel a plugin declared it
//!   publishes on ([`plugin_abi::asyncapi`]; the SDK's `Context::publisher`, which also sends
//!   the declared type, and `Context::declare_publish`), its
//!   message's payload the JSON Schema of the declared Rust type; a `receive` operation for
//!   every subscription alive now (a plugin's or one made with `/_debug/subscribe`), its
//!   payload any JSON (AMQP) or any bytes (MQTT), since a handler reads what it likes.
//!   Operations name their plugin in `x-plugin`.
//! - bindings: AMQP exchange name, type, durability and auto-delete as the host declares
//!   exchanges (non-durable, auto-delete, as brewblox-service did); MQTT QoS and retain of a
//!   `send`, and the QoS a subscription asked for on a `receive`.
//! - `components/schemas`: every payload's named schemas, merged by the rule of the OpenAPI
//!   document ([`super::openapi::schemas`]).
//!
//! Built at each request: subscriptions come and go at run time, and a reload brings the new
//! plugins' declarations.

use std::{collections::BTreeMap, sync::Arc};

use crate::sync::Unpoisoned;

use axum::{
    http::{header, HeaderValue},
    response::{IntoResponse, Response},
    Json,
};
use plugin_abi::{
    asyncapi::{Channel, Publication},
    openapi::sanitize,
};
use serde_json::{json, Map, Value};

use super::{
    health::{self, BusKind, HealthReport, HealthSources},
    openapi::schemas::{self, Owner, SCHEMAS_KEY},
    ui::overview::without_credentials,
};

/// The AsyncAPI version the document follows.
pub const ASYNCAPI_VERSION: &str = "3.0.0";
/// Versions of the binding objects written.
const AMQP_BINDING: &str = "0.3.0";
const MQTT_BINDING: &str = "0.2.0";

/// What the document is built from.
pub struct AsyncApiSources {
    pub health: Arc<HealthSources>,
    /// Every broker of the lists the options give, as URLs, in order (credentials are
    /// dropped here).
    pub servers: Vec<(BusKind, String)>,
    /// The AMQP virtual host.
    pub vhost: String,
}

/// A channel being built: its key fields, the messages on it and who sends or receives.
struct ChannelDraft {
    bus: BusKind,
    /// AMQP exchange and its type; empty for MQTT.
    exchange: String,
    exchange_type: String,
    address: String,
    messages: Map<String, Value>,
    operations: Vec<(String, &'static str, Map<String, Value>)>,
}

fn server_name(bus: BusKind) -> &'static str {
    match bus {
        BusKind::Amqp => "amqp",
        BusKind::Mqtt => "mqtt",
    }
}

/// The server names of the brokers, in order: per bus the first is `amqp` (`mqtt`), the
/// next `amqp-2`, `amqp-3`, ….
fn server_names(servers: &[(BusKind, String)]) -> Vec<(BusKind, String)> {
    let mut seen = [0usize; 2];
    servers
        .iter()
        .map(|(bus, _)| {
            let count = &mut seen[usize::from(*bus == BusKind::Mqtt)];
            *count += 1;
            let base = server_name(*bus);
            let name = match *count {
                1 => base.to_owned(),
                n => format!("{base}-{n}"),
            };
            (*bus, name)
        })
        .collect()
}

/// The `servers` object.
fn servers(sources: &AsyncApiSources, report: &HealthReport) -> Map<String, Value> {
    let mut servers = Map::new();
    let names = server_names(&sources.servers);
    for ((bus, url), (_, name)) in sources.servers.iter().zip(names) {
        let listed = sources.servers.iter().filter(|(b, _)| b == bus).count();
        let mut server = server(*bus, url);
        if listed > 1 {
            server["description"] = json!(format!(
                "One of a list of {listed} brokers: the service uses one at a time, the first \
                 that answers, and moves to the next when it is lost"
            ));
        }
        // MQTT's server binding holds one will: given when the service has exactly one
        // (each plugin's will has its own connection; several are on their channels).
        let wills = report
            .mqtt
            .as_ref()
            .map(|m| m.wills.as_slice())
            .unwrap_or(&[]);
        if let (BusKind::Mqtt, [will]) = (bus, wills) {
            let will = &will.topic;
            server["bindings"] = json!({ "mqtt": {
                "lastWill": { "topic": will, "qos": 1 },
                "bindingVersion": MQTT_BINDING,
            }});
        }
        servers.insert(name, server);
    }
    servers
}

/// One broker as a server object: host, protocol and path, without credentials.
fn server(bus: BusKind, url: &str) -> Value {
    let url = without_credentials(url);
    let (protocol, rest) = url.split_once("://").unwrap_or(("", &url));
    let (host, path) = match rest.find('/') {
        Some(slash) => (&rest[..slash], &rest[slash..]),
        None => (rest, ""),
    };
    let mut server = json!({
        "host": host,
        "protocol": protocol,
        "title": match bus { BusKind::Amqp => "AMQP broker", BusKind::Mqtt => "MQTT broker" },
    });
    if !path.is_empty() && path != "/" {
        server["pathname"] = json!(path);
    }
    server
}

/// Finds or adds the channel with these key fields.
fn channel<'a>(
    channels: &'a mut Vec<ChannelDraft>,
    bus: BusKind,
    exchange: &str,
    exchange_type: &str,
    address: &str,
) -> &'a mut ChannelDraft {
    let index = channels.iter().position(|c| {
        c.bus == bus
            && c.exchange == exchange
            && c.exchange_type == exchange_type
            && c.address == address
    });
    let index = index.unwrap_or_else(|| {
        channels.push(ChannelDraft {
            bus,
            exchange: exchange.to_owned(),
            exchange_type: exchange_type.to_owned(),
            address: address.to_owned(),
            messages: Map::new(),
            operations: Vec::new(),
        });
        channels.len() - 1
    });
    &mut channels[index]
}

/// Adds a message under a name not used on the channel yet; returns the name.
fn add_message(draft: &mut ChannelDraft, name: &str, message: Value) -> String {
    if let Some((existing, _)) = draft.messages.iter().find(|(_, m)| **m == message) {
        return existing.clone();
    }
    let base = sanitize(name);
    let mut key = base.clone();
    let mut n = 2;
    while draft.messages.contains_key(&key) {
        key = format!("{base}_{n}");
        n += 1;
    }
    draft.messages.insert(key.clone(), message);
    key
}

/// Every plugin's declarations, with their payload schemas' references renamed to the
/// document's `components/schemas`.
fn publications(sources: &AsyncApiSources) -> (Vec<(String, Publication)>, Map<String, Value>) {
    let mut declared: Vec<(String, Publication)> = Vec::new();
    for plugin in &sources.health.plugins {
        let list = plugin.publications.locked().clone();
        declared.extend(list.into_iter().map(|p| (plugin.name.clone(), p)));
    }
    let owned: Vec<(Owner, Map<String, Value>)> = declared
        .iter_mut()
        .map(|(plugin, publication)| {
            let schemas = match publication
                .payload
                .as_object_mut()
                .and_then(|p| p.remove(SCHEMAS_KEY))
            {
                Some(Value::Object(schemas)) => schemas,
                _ => Map::new(),
            };
            (Owner::Plugin(plugin.clone()), schemas)
        })
        .collect();
    let named = schemas::name_schemas(&owned);
    for (index, (_, publication)) in declared.iter_mut().enumerate() {
        schemas::rewrite_refs(&mut publication.payload, &|reference| {
            named.new_ref(index, reference)
        });
    }
    (declared, named.components)
}

/// The channels of the declarations (`send`) and of the live subscriptions (`receive`).
fn drafts(report: &HealthReport, declared: &[(String, Publication)]) -> Vec<ChannelDraft> {
    let mut channels = Vec::new();
    for (plugin, publication) in declared {
        let message = json!({
            "name": publication.message,
            "summary": publication.summary,
            "contentType": "application/json",
            "payload": publication.payload,
        });
        let (draft, bindings) = match &publication.channel {
            Channel::Amqp {
                exchange,
                exchange_type,
                routing,
            } => (
                channel(
                    &mut channels,
                    BusKind::Amqp,
                    exchange,
                    exchange_type,
                    routing,
                ),
                Map::new(),
            ),
            Channel::Mqtt { topic, qos, retain } => {
                let mut bindings = Map::new();
                bindings.insert(
                    "mqtt".into(),
                    json!({
                        "qos": qos, "retain": retain, "bindingVersion": MQTT_BINDING,
                    }),
                );
                (
                    channel(&mut channels, BusKind::Mqtt, "", "", topic),
                    bindings,
                )
            }
        };
        let name = add_message(draft, &publication.message, message);
        let mut operation = Map::new();
        operation.insert("bindings".into(), Value::Object(bindings));
        operation.insert("summary".into(), json!(publication.summary));
        draft
            .operations
            .push((plugin.clone(), "send", with_message(operation, &name)));
    }
    let any_json = json!({ "name": "AnyJson", "summary": "Any JSON value: the handler reads what it needs",
                           "contentType": "application/json", "payload": {} });
    for s in &report.eventbus.subscriptions {
        let kind = serde_json::to_value(s.exchange_type).unwrap_or_default();
        let draft = channel(
            &mut channels,
            BusKind::Amqp,
            &s.exchange,
            kind.as_str().unwrap_or("topic"),
            &s.routing,
        );
        let name = add_message(draft, "AnyJson", any_json.clone());
        let owner = s.plugin.clone().unwrap_or_else(|| "host".into());
        draft
            .operations
            .push((owner, "receive", with_message(Map::new(), &name)));
    }
    let any_bytes = json!({ "name": "AnyPayload", "summary": "Any payload: raw bytes, often JSON",
                            "payload": {} });
    for s in report.mqtt.iter().flat_map(|m| m.all_subscriptions()) {
        let draft = channel(&mut channels, BusKind::Mqtt, "", "", &s.filter);
        let name = add_message(draft, "AnyPayload", any_bytes.clone());
        // `/_debug/subscribe`'s subscriptions have no plugin: they are the host's.
        let owner = s.plugin.clone().unwrap_or_else(|| "host".to_owned());
        // The QoS the subscription asked for (what the broker delivers at most).
        let mut operation = Map::new();
        operation.insert(
            "bindings".into(),
            json!({ "mqtt": { "qos": s.qos, "bindingVersion": MQTT_BINDING } }),
        );
        draft
            .operations
            .push((owner, "receive", with_message(operation, &name)));
    }
    channels
}

/// `operation` with its message's name, for the channel reference filled in later.
fn with_message(mut operation: Map<String, Value>, message: &str) -> Map<String, Value> {
    operation.insert("x-message".into(), json!(message));
    operation
}

/// A channel's address: `None` (unknown) when it has `{` or `}`, which AsyncAPI reads as
/// parameters; the real one is then in the description.
fn address(draft: &ChannelDraft) -> (Value, String) {
    let described = match draft.bus {
        BusKind::Amqp => format!(
            "Exchange {} ({}), routing key {}",
            draft.exchange, draft.exchange_type, draft.address
        ),
        BusKind::Mqtt => format!("MQTT topic {}", draft.address),
    };
    if draft.address.contains(['{', '}']) {
        (Value::Null, described)
    } else {
        (json!(draft.address), described)
    }
}

/// References to every server of `bus` (its base name when the options gave none).
fn server_refs(names: &[(BusKind, String)], bus: BusKind) -> Value {
    let mut refs: Vec<Value> = names
        .iter()
        .filter(|(b, _)| *b == bus)
        .map(|(_, name)| json!({ "$ref": format!("#/servers/{name}") }))
        .collect();
    if refs.is_empty() {
        refs.push(json!({ "$ref": format!("#/servers/{}", server_name(bus)) }));
    }
    Value::Array(refs)
}

/// Lays out the drafts as `channels` and `operations`, with unique keys; each channel names
/// the servers (`names`) of its bus.
fn layout(
    drafts: Vec<ChannelDraft>,
    vhost: &str,
    names: &[(BusKind, String)],
) -> (Map<String, Value>, Map<String, Value>) {
    let (mut channels, mut operations) = (Map::new(), Map::new());
    let mut used: BTreeMap<String, usize> = BTreeMap::new();
    for draft in drafts {
        let readable = draft.address.replace('#', "all").replace(['*', '+'], "any");
        let base = sanitize(&match draft.bus {
            BusKind::Amqp => format!("amqp.{}.{readable}", draft.exchange),
            BusKind::Mqtt => format!("mqtt.{readable}"),
        });
        let count = used.entry(base.clone()).or_insert(0);
        *count += 1;
        let id = if *count == 1 {
            base
        } else {
            format!("{base}_{count}")
        };
        let (address, description) = address(&draft);
        let mut channel = json!({
            "address": address,
            "description": description,
            "messages": draft.messages,
            "servers": server_refs(names, draft.bus),
        });
        if draft.bus == BusKind::Amqp {
            channel["bindings"] = json!({ "amqp": {
                "is": "routingKey",
                "exchange": {
                    "name": draft.exchange, "type": draft.exchange_type,
                    "durable": false, "autoDelete": true, "vhost": vhost,
                },
                "bindingVersion": AMQP_BINDING,
            }});
        }
        for (owner, action, mut operation) in draft.operations {
            let message = operation
                .remove("x-message")
                .and_then(|m| m.as_str().map(str::to_owned))
                .unwrap_or_default();
            operation.insert("action".into(), json!(action));
            operation.insert(
                "channel".into(),
                json!({ "$ref": format!("#/channels/{id}") }),
            );
            operation.insert(
                "messages".into(),
                json!([{ "$ref": format!("#/channels/{id}/messages/{message}") }]),
            );
            operation.insert("x-plugin".into(), json!(owner));
            if operation
                .get("bindings")
                .is_some_and(|b| b.as_object().is_some_and(Map::is_empty))
            {
                operation.remove("bindings");
            }
            if operation
                .get("summary")
                .is_some_and(|s| s.as_str() == Some(""))
            {
                operation.remove("summary");
            }
            let mut key = sanitize(&format!("{owner}.{action}.{id}"));
            let mut n = 2;
            while operations.contains_key(&key) {
                key = sanitize(&format!("{owner}.{action}.{id}_{n}"));
                n += 1;
            }
            operations.insert(key, Value::Object(operation));
        }
        channels.insert(id, channel);
    }
    (channels, operations)
}

/// Builds the document as things are now.
pub fn document(sources: &AsyncApiSources) -> Value {
    let report = health::report(&sources.health);
    let (declared, schemas) = publications(sources);
    let names = server_names(&sources.servers);
    let (channels, operations) = layout(drafts(&report, &declared), &sources.vhost, &names);
    let plugins: Vec<String> = report
        .plugins
        .iter()
        .map(|p| format!("{} {}", p.name, p.version))
        .collect();
    let mut messages_without_summary = channels;
    for channel in messages_without_summary.values_mut() {
        if let Some(Value::Object(messages)) = channel.get_mut("messages") {
            for message in messages.values_mut() {
                if message
                    .get("summary")
                    .is_some_and(|s| s.as_str() == Some(""))
                {
                    message.as_object_mut().map(|m| m.remove("summary"));
                }
            }
        }
    }
    json!({
        "asyncapi": ASYNCAPI_VERSION,
        "info": {
            "title": format!("Brewblox Service \"{}\" eventbus", report.service),
            "version": env!("CARGO_PKG_VERSION"),
            "description": format!(
                "What the service \"{}\" (brewblox-host {}, {}) publishes and receives: the \
                 channels its plugins declared they publish on (send), and its live \
                 subscriptions (receive).",
                report.service,
                env!("CARGO_PKG_VERSION"),
                if plugins.is_empty() { "no plugins".to_owned() } else { plugins.join(", ") },
            ),
        },
        "defaultContentType": "application/json",
        "servers": servers(sources, &report),
        "channels": messages_without_summary,
        "operations": operations,
        "components": { "schemas": schemas },
    })
}

/// The handler.
pub async fn serve(sources: Arc<AsyncApiSources>) -> Response {
    let mut response = Json(document(&sources)).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use plugin_abi::{asyncapi::declare, features::FeatureRegistry};

    use super::*;
    use crate::{
        bus::{BusConfig, EventBus},
        plugins::{
            bridge::BusBridge,
            context::{HostServices, PluginState},
            routes::RouteTable,
        },
        reloads::ReloadLog,
    };

    /// A plugin `name` that declared `declarations` (JSON).
    fn plugin(name: &str, declarations: &[Value]) -> Arc<PluginState> {
        let plugin = Arc::new(PluginState::new(name, "1.0.0"));
        for declaration in declarations {
            declare(&mut plugin.publications.locked(), &declaration.to_string()).unwrap();
        }
        plugin
    }

    fn sources(plugins: Vec<Arc<PluginState>>) -> AsyncApiSources {
        let metrics = Arc::new(crate::metrics::Metrics::new());
        AsyncApiSources {
            health: Arc::new(HealthSources {
                name: "svc".into(),
                host: Arc::new(HostServices {
                    runtime: tokio::runtime::Handle::current(),
                    config_json: "{}".into(),
                    routes: Mutex::new(RouteTable::default()),
                    features: FeatureRegistry::default(),
                    bus: BusBridge::new(EventBus::new(
                        BusConfig::default(),
                        crate::metrics::bus::BusMetrics::detached(),
                    ))
                    .enabled(false),
                    mqtt: None,
                    life: Default::default(),
                    metrics: Arc::clone(&metrics),
                }),
                plugins,
                builds: Vec::new(),
                reloads: Arc::new(ReloadLog::new(metrics)),
            }),
            servers: vec![
                (BusKind::Amqp, "amqp://user:pw@broker:5672/%2f".into()),
                (BusKind::Mqtt, "mqtts://user@broker:8883".into()),
            ],
            vhost: "/".into(),
        }
    }

    fn state(name: &str) -> Value {
        json!({"$ref": "#/components/schemas/State",
               "x-schemas": {"State": {"type": "object", "properties": {"n": {"type": name}}}}})
    }

    #[tokio::test]
    async fn declarations_become_channels_operations_and_schemas() {
        let a = plugin(
            "a",
            &[
                json!({"bus": "mqtt", "topic": "t/{x}", "qos": 1, "retain": true,
                       "message": "State", "payload": state("number")}),
                json!({"bus": "amqp", "exchange": "ex", "exchange_type": "fanout", "routing": "k",
                       "message": "State", "summary": "s", "payload": state("number")}),
            ],
        );
        // Another plugin's `State` is another schema: both are kept, qualified.
        let b = plugin(
            "b",
            &[
                json!({"bus": "mqtt", "topic": "t/{x}", "qos": 0, "retain": false,
                     "message": "State", "payload": state("string")}),
            ],
        );
        let doc = document(&sources(vec![a, b]));
        assert_eq!(doc["asyncapi"], "3.0.0");
        let text = doc.to_string();
        assert!(
            !text.contains("pw") && !text.contains("user"),
            "credentials: {text}"
        );
        assert_eq!(
            doc["servers"]["mqtt"],
            json!({"host": "broker:8883", "protocol": "mqtts", "title": "MQTT broker"})
        );
        assert_eq!(doc["servers"]["amqp"]["pathname"], "/%2f");

        // One MQTT channel for both plugins: its address has braces, so it is null and the
        // description names it; two messages, two send operations.
        let channels = doc["channels"].as_object().unwrap();
        assert_eq!(channels.len(), 2, "{channels:?}");
        let mqtt = channels.values().find(|c| c["address"].is_null()).unwrap();
        assert_eq!(mqtt["description"], "MQTT topic t/{x}");
        assert_eq!(mqtt["messages"].as_object().unwrap().len(), 2);
        let schemas = doc["components"]["schemas"].as_object().unwrap();
        assert!(
            schemas.contains_key("a.State") && schemas.contains_key("b.State"),
            "{schemas:?}"
        );
        let amqp = channels.values().find(|c| c["address"] == "k").unwrap();
        assert_eq!(amqp["bindings"]["amqp"]["exchange"]["type"], "fanout");
        let operations = doc["operations"].as_object().unwrap();
        assert_eq!(operations.len(), 3);
        for operation in operations.values() {
            assert_eq!(operation["action"], "send");
            let channel = operation["channel"]["$ref"].as_str().unwrap();
            let message = operation["messages"][0]["$ref"].as_str().unwrap();
            assert!(
                message.starts_with(&format!("{channel}/messages/")),
                "{operation}"
            );
            let id = channel.trim_start_matches("#/channels/");
            let name = message.rsplit('/').next().unwrap();
            assert!(
                doc["channels"][id]["messages"][name].is_object(),
                "{message}"
            );
        }
        let b_send = operations
            .values()
            .find(|op| op["x-plugin"] == "b")
            .unwrap();
        assert_eq!(b_send["bindings"]["mqtt"]["qos"], 0);
    }

    #[tokio::test]
    async fn every_broker_of_a_list_is_a_server_of_its_channels() {
        let a = plugin(
            "a",
            &[
                json!({"bus": "mqtt", "topic": "t", "qos": 0, "retain": false,
                     "message": "State", "payload": state("number")}),
            ],
        );
        let mut sources = sources(vec![a]);
        sources.servers = vec![
            (BusKind::Amqp, "amqp://user@down:5672/%2f".into()),
            (BusKind::Mqtt, "mqtt://u:secret@down:1883".into()),
            (BusKind::Amqp, "amqp://user@up:5672/%2f".into()),
            (BusKind::Mqtt, "mqtt://u:secret@up:1883".into()),
        ];
        let doc = document(&sources);
        let servers = doc["servers"].as_object().unwrap();
        let hosts: Vec<(&str, &str)> = servers
            .iter()
            .map(|(name, s)| (name.as_str(), s["host"].as_str().unwrap()))
            .collect();
        assert_eq!(
            hosts,
            [
                ("amqp", "down:5672"),
                ("mqtt", "down:1883"),
                ("amqp-2", "up:5672"),
                ("mqtt-2", "up:1883"),
            ]
        );
        assert!(!doc.to_string().contains("secret") && !doc.to_string().contains("user"));
        assert!(servers["mqtt-2"]["description"]
            .as_str()
            .unwrap()
            .contains("list of 2"));
        let channel = doc["channels"]
            .as_object()
            .unwrap()
            .values()
            .next()
            .unwrap();
        assert_eq!(
            channel["servers"],
            json!([{"$ref": "#/servers/mqtt"}, {"$ref": "#/servers/mqtt-2"}])
        );
    }
}
