//! The plugin SDK's MQTT calls, through the testkit fixture plugin, against a private
//! Mosquitto and an independent client: payloads read as JSON, text or bytes, QoS 1 publish,
//! refused topics, a handler swapped, and MQTT calls on a service that does not use MQTT.

use std::time::Duration;

use integration_tests::{
    mqtt::{rumqttc::QoS, Mosquitto, Peer},
    wait_until, Host, PluginDir,
};
use serde_json::{json, Value};

const SECS: Duration = Duration::from_secs(10);

fn post(host: &Host, path: &str, body: Value) -> Value {
    host.client
        .post(host.url(path))
        .body(body.to_string())
        .send()
        .unwrap()
        .json()
        .unwrap()
}

fn received(host: &Host, count: usize) -> Vec<Value> {
    let mut list = Vec::new();
    assert!(wait_until(SECS, || {
        list = host.get("/kit/mqtt/received").json::<Vec<Value>>().unwrap();
        list.len() >= count
    }));
    list
}

#[test]
fn plugins_publish_and_subscribe_through_the_sdk() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let broker = Mosquitto::start();
    let plugins = PluginDir::with(&["testkit-plugin"]);
    let host = Host::builder(plugins.path())
        .without_amqp()
        .mqtt(broker.port)
        .start();
    assert!(wait_until(SECS, || host.get("/_service/health").status() == 200));
    let answer = post(
        &host,
        "/kit/mqtt/subscribe",
        json!({"filter": "sdk/#", "tag": "a", "from_plugin_runtime": true}),
    );
    assert_eq!(answer["index"], 0, "{answer}");

    let mut peer = rt.block_on(Peer::connect(broker.port, &["out/#"]));
    rt.block_on(async {
        for (topic, payload) in [
            ("sdk/json", br#"{"a": 1}"#.to_vec()),
            ("sdk/text", b"plain".to_vec()),
            ("sdk/bytes", vec![0xff, 0x00]),
        ] {
            peer.client
                .publish(topic, QoS::AtLeastOnce, false, payload)
                .await
                .unwrap();
        }
    });
    let list = received(&host, 3);
    assert_eq!(list[0]["json"], json!({"a": 1}));
    assert_eq!(list[0]["sub"], "<sdk/#>");
    assert_eq!(
        (list[1]["text"].clone(), list[1]["json"].clone()),
        (json!("plain"), Value::Null)
    );
    assert_eq!(
        (list[2]["text"].clone(), list[2]["len"].clone()),
        (Value::Null, json!(2))
    );

    // Publish QoS 1, retained: the peer gets it; a wildcard topic is refused as invalid.
    let answer = post(
        &host,
        "/kit/mqtt/publish",
        json!({"topic": "out/x", "payload": "hi", "qos": 1, "retain": true}),
    );
    assert_eq!(answer["ok"], true, "{answer}");
    let got = rt.block_on(peer.next(SECS)).expect("published");
    assert_eq!(
        (got.topic.as_str(), &got.payload[..]),
        ("out/x", &b"hi"[..])
    );
    let answer = post(
        &host,
        "/kit/mqtt/publish",
        json!({"topic": "out/#", "payload": "x"}),
    );
    assert_eq!(
        (answer["ok"].clone(), answer["kind"].clone()),
        (json!(false), json!("Invalid"))
    );

    // A swapped handler gets the next message.
    post(&host, "/kit/mqtt/swap", json!({}));
    rt.block_on(async {
        peer.client
            .publish("sdk/after", QoS::AtLeastOnce, false, "1")
            .await
            .unwrap()
    });
    let list = received(&host, 4);
    assert_eq!(
        (list[3]["tag"].clone(), list[3]["topic"].clone()),
        (json!("swapped"), json!("sdk/after"))
    );
}

#[test]
fn mqtt_calls_on_a_service_without_mqtt_are_unavailable() {
    let plugins = PluginDir::with(&["testkit-plugin"]);
    let host = Host::builder(plugins.path()).start();
    let answer = post(
        &host,
        "/kit/mqtt/publish",
        json!({"topic": "t", "payload": "x"}),
    );
    assert_eq!(answer["unavailable"], true, "{answer}");
    assert!(answer["error"]
        .as_str()
        .unwrap()
        .contains("MQTT eventbus is not in use"));
    let answer = post(&host, "/kit/mqtt/subscribe", json!({"filter": "t/#"}));
    assert_eq!(answer["kind"], "Unavailable", "{answer}");
}
