//! The AsyncAPI document at `/{name}/api/asyncapi.json`, with the real host and the bundled
//! plugins on both eventbuses:
//!
//! - valid for the official parser (`@asyncapi/parser`, run by node from
//!   `tests/asyncapi-validate/`; `.ci/run` installs it with `npm ci`);
//! - the device's declared channels with their payload schemas (from its Rust types) and
//!   bindings; the history plugin's subscriptions as `receive`, on MQTT with their QoS;
//!   servers without credentials, every broker of a list;
//! - a hostile routing key keeps the document valid;
//! - the document changes with a reload (device-plugin removed: its channels go);
//! - what device-plugin really sends, captured on both buses (RabbitMQ and a private
//!   Mosquitto), matches the payload schema the document gives its channel.

use std::{path::PathBuf, process::Command, time::Duration};

use integration_tests::{
    amqp::{unique, SyncPeer},
    mqtt::{Mosquitto, Peer},
    runtime, wait_until, workspace_root, Host, PluginDir,
};
use serde_json::{json, Value};

const NAME: &str = "async_svc";

/// The validator's folder, its parser installed (a clear failure otherwise).
fn validator() -> PathBuf {
    let dir = workspace_root().join("tests/asyncapi-validate");
    assert!(
        dir.join("node_modules/@asyncapi/parser").is_dir(),
        "the AsyncAPI parser is not installed: run `npm ci` in {} (.ci/run does)",
        dir.display()
    );
    dir
}

/// Runs the official parser on `doc`; panics with its diagnostics when it finds an error or
/// a warning.
fn assert_valid(doc: &Value) {
    let dir = validator();
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), serde_json::to_vec_pretty(doc).unwrap()).unwrap();
    let output = Command::new("node")
        .arg("validate.js")
        .arg(file.path())
        .current_dir(&dir)
        .output()
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "invalid AsyncAPI:\n{stdout}\n{stderr}\n{doc:#}"
    );
    // Severity 0 is an error, 1 a warning; 2 and 3 are hints (e.g. "3.1.0 exists").
    for line in stdout.lines() {
        let diagnostic: Value = serde_json::from_str(line).expect("a JSON line");
        assert!(
            diagnostic["severity"].as_u64() >= Some(2),
            "{line}\n{doc:#}"
        );
    }
    assert!(stderr.contains("valid AsyncAPI 3.0.0"), "{stderr}");
}

fn document(host: &Host) -> Value {
    let answer = host.get("/api/asyncapi.json");
    assert_eq!(answer.status(), 200);
    answer.json().unwrap()
}

/// The operation of `plugin` with `action` on the channel whose address is `address`, and
/// that channel.
fn operation<'a>(
    doc: &'a Value,
    plugin: &str,
    action: &str,
    address: &str,
) -> Option<(&'a Value, &'a Value)> {
    doc["operations"].as_object()?.values().find_map(|op| {
        let id = op["channel"]["$ref"]
            .as_str()?
            .strip_prefix("#/channels/")?;
        let channel = &doc["channels"][id];
        (op["x-plugin"] == plugin && op["action"] == action && channel["address"] == address)
            .then_some((op, channel))
    })
}

/// The schema a `$ref` in the document points to.
fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    match schema["$ref"]
        .as_str()
        .and_then(|r| r.strip_prefix("#/components/schemas/"))
    {
        Some(name) => &doc["components"]["schemas"][name],
        None => schema,
    }
}

#[test]
fn the_document_is_valid_complete_and_follows_reloads() {
    let broker = Mosquitto::start();
    let dir = PluginDir::with(&["device-plugin", "history-plugin"]);
    let host = Host::builder(dir.path())
        .name(NAME)
        .mqtt(broker.port)
        .args(&["--mqtt-user", "operator", "--mqtt-password", "s3cret-pw"])
        .start();
    assert!(
        wait_until(Duration::from_secs(20), || host.health().0 == 200),
        "healthy"
    );
    let doc = document(&host);
    assert_valid(&doc);
    assert_eq!(doc["asyncapi"], "3.0.0");

    // Servers from the command line, no credentials anywhere.
    assert_eq!(doc["servers"]["mqtt"]["protocol"], "mqtt");
    assert_eq!(
        doc["servers"]["mqtt"]["host"],
        format!("127.0.0.1:{}", broker.port)
    );
    assert_eq!(doc["servers"]["amqp"]["protocol"], "amqp");
    assert_eq!(
        doc["servers"]["mqtt"]["bindings"]["mqtt"]["lastWill"]["topic"],
        format!("brewcast/state/{NAME}")
    );
    let text = doc.to_string();
    for secret in ["operator", "s3cret-pw", "guest"] {
        assert!(!text.contains(secret), "{secret} in the document");
    }

    // The device's channels: MQTT state (retained, QoS 1) and history, AMQP state.
    let (op, channel) = operation(
        &doc,
        "device-plugin",
        "send",
        &format!("brewcast/state/{NAME}"),
    )
    .expect("the device's state channel");
    assert_eq!(
        op["bindings"]["mqtt"],
        json!({"qos": 1, "retain": true, "bindingVersion": "0.2.0"})
    );
    let message = channel["messages"]
        .as_object()
        .unwrap()
        .values()
        .next()
        .unwrap();
    let payload = resolve(&doc, &message["payload"]);
    assert_eq!(payload["properties"]["type"]["type"], "string", "{payload}");
    assert!(payload["properties"]["data"].is_object());
    let (op, _) = operation(
        &doc,
        "device-plugin",
        "send",
        &format!("brewcast/history/{NAME}"),
    )
    .expect("the device's history channel");
    assert_eq!(op["bindings"]["mqtt"]["retain"], false);
    let history = resolve(&doc, &doc["components"]["schemas"]["HistoryFields"]);
    assert!(
        history["properties"]["temperature[degC]"].is_object(),
        "{history}"
    );
    let (_, channel) = operation(&doc, "device-plugin", "send", NAME).expect("the AMQP state");
    let exchange = &channel["bindings"]["amqp"]["exchange"];
    assert_eq!(exchange["name"], "brewcast");
    assert_eq!(exchange["type"], "topic");
    assert_eq!(exchange["durable"], false);
    let device_state = &doc["components"]["schemas"]["DeviceState"];
    for field in ["device_id", "temperature", "setpoint", "heater", "updated"] {
        assert!(
            device_state["properties"][field].is_object(),
            "{field}: {device_state}"
        );
    }
    // The history plugin's subscriptions, on both buses; on MQTT with the QoS it asked for
    // (the SDK's default, 0).
    assert!(
        operation(&doc, "history-plugin", "receive", "#").is_some(),
        "{doc:#}"
    );
    let (op, _) = operation(&doc, "history-plugin", "receive", "brewcast/#").expect("MQTT");
    assert_eq!(
        op["bindings"]["mqtt"],
        json!({"qos": 0, "bindingVersion": "0.2.0"})
    );

    // Hostile names stay text, and the document valid.
    for routing in ["<img src=x onerror=alert(1)>", "{x}", "a.*.#"] {
        let answer = host.post_json(
            "/_debug/subscribe",
            json!({"exchange": "brewcast", "routing": routing}),
        );
        assert_eq!(answer.status(), 200, "{routing}");
    }
    // `/_debug/subscribe` subscribes to MQTT filters at QoS 1.
    let answer = host.post_json("/_debug/subscribe", json!({"topic": "async/qos/#"}));
    assert_eq!(answer.status(), 200);
    let doc = document(&host);
    assert_valid(&doc);
    assert!(operation(&doc, "host", "receive", "<img src=x onerror=alert(1)>").is_some());
    let (op, _) = operation(&doc, "host", "receive", "async/qos/#").expect("the host's MQTT");
    assert_eq!(op["bindings"]["mqtt"]["qos"], 1);

    // A reload without the device: its channels go, the history plugin's stay.
    std::fs::remove_file(dir.path().join("libdevice_plugin.so")).unwrap();
    host.signal(libc::SIGHUP);
    assert!(
        wait_until(Duration::from_secs(30), || {
            host.health().1["reload"]["succeeded"] == 1
        }),
        "reloaded: {}",
        host.stderr.text()
    );
    let doc = document(&host);
    assert_valid(&doc);
    assert!(operation(
        &doc,
        "device-plugin",
        "send",
        &format!("brewcast/state/{NAME}")
    )
    .is_none());
    assert!(operation(&doc, "history-plugin", "receive", "brewcast/#").is_some());
    assert!(doc["components"]["schemas"].get("DeviceState").is_none());
}

/// The payload schema of the message `plugin`'s `send` operation names on the channel at
/// `address`, as a draft 7 JSON Schema that carries the document's named schemas.
fn sent_schema(doc: &Value, plugin: &str, address: &str) -> Value {
    let (op, _) = operation(doc, plugin, "send", address)
        .unwrap_or_else(|| panic!("no send operation on {address}: {doc:#}"));
    let reference = op["messages"][0]["$ref"]
        .as_str()
        .expect("a message reference");
    let message = doc
        .pointer(reference.trim_start_matches('#'))
        .unwrap_or_else(|| panic!("{reference} resolves"));
    json!({
        "$schema": "http://json-schema.org/draft-07/schema#",
        "allOf": [message["payload"]],
        "components": { "schemas": doc["components"]["schemas"] },
    })
}

/// Checks `body` (JSON bytes) against `schema`; the errors otherwise.
fn violations(schema: &Value, body: &[u8]) -> Vec<String> {
    let body: Value = serde_json::from_slice(body).expect("a JSON payload");
    let validator = jsonschema::draft7::new(schema).expect("the payload schema compiles");
    validator
        .iter_errors(&body)
        .map(|err| format!("{}: {err} in {body}", err.instance_path()))
        .collect()
}

#[test]
fn what_device_plugin_sends_matches_the_documented_schemas() {
    const SERVICE: &str = "typed_svc";
    let broker = Mosquitto::start();
    let rt = runtime();
    let history = format!("brewcast/history/{SERVICE}");
    let state = format!("brewcast/state/{SERVICE}");
    let mut mqtt = rt.block_on(Peer::connect(broker.port, &[&history, &state]));
    // A private exchange, declared as the host declares it, so the capture binds before the
    // first message.
    let exchange = unique("typed");
    let amqp = SyncPeer::connect();
    amqp.declare_like_original(&exchange, lapin::ExchangeKind::Topic);
    let mut states = amqp.consume(&exchange, SERVICE);
    let dir = PluginDir::with(&["device-plugin"]);
    let host = Host::builder(dir.path())
        .name(SERVICE)
        .mqtt(broker.port)
        .args(&["--update-interval", "0.2", "--device-exchange", &exchange])
        .start();
    let doc = document(&host);
    let amqp_schema = sent_schema(&doc, "device-plugin", SERVICE);
    let history_schema = sent_schema(&doc, "device-plugin", &history);
    let state_schema = sent_schema(&doc, "device-plugin", &state);

    // AMQP: the device state, three updates.
    for n in 0..3 {
        let delivery = states.recv(Duration::from_secs(10), &format!("device state {n}"));
        let errors = violations(&amqp_schema, &delivery.data);
        assert!(errors.is_empty(), "AMQP state: {errors:#?}");
        // The schemas are not vacuous: the AMQP state is not a state event.
        assert!(!violations(&state_schema, &delivery.data).is_empty());
    }
    // MQTT: three history events and three state events (at most 100 messages in all).
    let mut checked = [0usize; 2];
    for _ in 0..100 {
        if checked.iter().all(|&n| n >= 3) {
            break;
        }
        let message = rt
            .block_on(mqtt.next(Duration::from_secs(10)))
            .expect("an MQTT message from the device");
        let (slot, schema) = if message.topic == history {
            (0, &history_schema)
        } else {
            (1, &state_schema)
        };
        let errors = violations(schema, &message.payload);
        assert!(errors.is_empty(), "{}: {errors:#?}", message.topic);
        checked[slot] += 1;
    }
    assert!(checked.iter().all(|&n| n >= 3), "checked {checked:?}");
    assert!(!violations(&history_schema, br#"{"key": "x", "data": {"d": {}}}"#).is_empty());
}

#[test]
fn every_broker_of_a_list_is_a_server() {
    const SERVICE: &str = "listed_svc";
    let broker = Mosquitto::start();
    let lists = integration_tests::DeadFirstLists::new(broker.port);
    let (dead_amqp, dead_mqtt) = (lists.dead_amqp, lists.dead_mqtt);
    let dir = PluginDir::with(&["device-plugin"]);
    let host = Host::builder(dir.path())
        .name(SERVICE)
        .without_amqp()
        .args(&lists.args())
        .args(&["--mqtt-user", "operator", "--mqtt-password", "s3cret-pw"])
        .start();
    let doc = document(&host);
    assert_valid(&doc);
    let hosts: Vec<(&str, &str)> = doc["servers"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(name, server)| (name.as_str(), server["host"].as_str().unwrap()))
        .collect();
    let (dead_amqp, dead_mqtt) = (
        format!("127.0.0.1:{dead_amqp}"),
        format!("127.0.0.1:{dead_mqtt}"),
    );
    let live_mqtt = format!("127.0.0.1:{}", broker.port);
    assert_eq!(
        hosts,
        [
            ("amqp", dead_amqp.as_str()),
            ("amqp-2", "127.0.0.1:5672"),
            ("mqtt", dead_mqtt.as_str()),
            ("mqtt-2", live_mqtt.as_str()),
        ]
    );
    let text = doc.to_string();
    for secret in ["operator", "s3cret-pw", "guest"] {
        assert!(!text.contains(secret), "{secret} in the document");
    }
    // Each channel names every server of its bus.
    let (_, state) = operation(
        &doc,
        "device-plugin",
        "send",
        &format!("brewcast/state/{SERVICE}"),
    )
    .expect("the MQTT state");
    assert_eq!(
        state["servers"],
        json!([{"$ref": "#/servers/mqtt"}, {"$ref": "#/servers/mqtt-2"}])
    );
    let (_, amqp) = operation(&doc, "device-plugin", "send", SERVICE).expect("the AMQP state");
    assert_eq!(
        amqp["servers"],
        json!([{"$ref": "#/servers/amqp"}, {"$ref": "#/servers/amqp-2"}])
    );
}
