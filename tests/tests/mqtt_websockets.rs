//! `--mqtt-protocol ws`: the host reaches a private Mosquitto over its websocket listener,
//! and messages go both ways between a plugin and an independent client on the broker's plain
//! MQTT listener.

use std::time::Duration;

use integration_tests::{
    mqtt::{rumqttc::QoS, Mosquitto, Peer},
    wait_until, Host, PluginDir,
};
use serde_json::{json, Value};

const SECS: Duration = Duration::from_secs(10);

#[test]
fn the_host_publishes_and_subscribes_over_websockets() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let broker = Mosquitto::websockets();
    let ws_port = broker.ws_port.expect("a websocket listener");
    let plugins = PluginDir::with(&["testkit-plugin"]);
    let host = Host::builder(plugins.path())
        .without_amqp()
        .args(&[
            "--mqtt-protocol",
            "ws",
            "--mqtt-host",
            "127.0.0.1",
            "--mqtt-port",
            &ws_port.to_string(),
        ])
        .start();
    let mut health = Value::Null;
    assert!(
        wait_until(SECS, || {
            health = host.health().1;
            health["mqtt"]["state"] == "connected"
        }),
        "not connected over websockets: {health}"
    );
    assert_eq!(
        health["mqtt"]["broker"],
        format!("ws://127.0.0.1:{ws_port}/eventbus")
    );

    // Broker → plugin: the subscription answers once the broker acknowledged it.
    let answer: Value = host
        .post_json(
            "/kit/mqtt/subscribe",
            json!({"filter": "ws/in/#", "tag": "ws"}),
        )
        .json()
        .unwrap();
    assert_eq!(answer["index"], 0, "{answer}");
    let mut peer = rt.block_on(Peer::connect(broker.port, &["ws/out/#"]));
    rt.block_on(async {
        peer.client
            .publish("ws/in/x", QoS::AtLeastOnce, false, r#"{"a": 1}"#)
            .await
            .unwrap()
    });
    let mut list = Vec::new();
    assert!(wait_until(SECS, || {
        list = host.get("/kit/mqtt/received").json::<Vec<Value>>().unwrap();
        !list.is_empty()
    }));
    assert_eq!(
        (list[0]["topic"].clone(), list[0]["json"].clone()),
        (json!("ws/in/x"), json!({"a": 1}))
    );

    // Plugin → broker: a QoS 1 publish is acknowledged over the websocket and reaches the peer.
    let answer: Value = host
        .post_json(
            "/kit/mqtt/publish",
            json!({"topic": "ws/out/y", "payload": "over ws", "qos": 1}),
        )
        .json()
        .unwrap();
    assert_eq!(answer["ok"], true, "{answer}");
    let got = rt.block_on(peer.next(SECS)).expect("published over ws");
    assert_eq!(
        (got.topic.as_str(), &got.payload[..]),
        ("ws/out/y", &b"over ws"[..])
    );
}
