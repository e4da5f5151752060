//! MQTT names the broker would drop the connection for are refused before they are sent:
//! from a request (`_debug/subscribe`, `_debug/publish`) with a 400 naming the field, from
//! the command line at start, and the connection is never dropped by them.

use std::time::Duration;

use integration_tests::{
    mqtt::{rumqttc::QoS, Mosquitto, Peer},
    wait_until, Host, PluginDir,
};
use serde_json::{json, Value};

const SECS: Duration = Duration::from_secs(10);

#[test]
fn names_the_broker_refuses_are_a_400_and_the_connection_stays_up() {
    let rt = integration_tests::runtime();
    let broker = Mosquitto::start();
    let plugins = PluginDir::with(&["hello-plugin"]);
    let host = Host::builder(plugins.path())
        .without_amqp()
        .mqtt(broker.port)
        .start();
    assert!(wait_until(SECS, || host.get("/_service/health").status() == 200));
    let deep = vec!["a"; 202].join("/");
    for topic in [
        "x/\u{2}",
        "x/\u{1}",
        "x/\t",
        "x/\u{85}",
        "x/\u{ffff}",
        "x/\u{fdd0}",
        &deep,
    ] {
        let (status, text) = host.post_text("/_debug/subscribe", json!({ "topic": topic }));
        assert_eq!(status, 400, "{topic:?}: {text}");
        let error: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(error["field"], "topic", "{text}");
        let (status, text) =
            host.post_text("/_debug/publish", json!({ "topic": topic, "message": 1 }));
        assert_eq!(status, 400, "{topic:?}: {text}");
    }
    // The sentinel: a subscription made after them works, on the first connection.
    let (status, text) = host.post_text("/_debug/subscribe", json!({"topic": "ok/#"}));
    assert_eq!(status, 200, "{text}");
    let peer = rt.block_on(Peer::connect(broker.port, &[]));
    rt.block_on(async {
        peer.client
            .publish("ok/x", QoS::AtLeastOnce, false, "sentinel")
            .await
            .unwrap();
    });
    assert!(
        host.stderr.wait_for("topic=ok/x, message=sentinel", SECS),
        "{}",
        host.stderr.text()
    );
    drop(peer);
    let health: Value = host.get("/_service/health").json().unwrap();
    assert_eq!(health["mqtt"]["reconnects"], 0, "{health}");
    assert_eq!(host.stderr.count(&["Connected to MQTT broker"]), 1);
}

#[test]
fn a_filter_the_broker_refuses_stops_the_start_with_a_clear_error() {
    let broker = Mosquitto::start();
    let plugins = PluginDir::with(&["history-plugin"]);
    let exited = Host::builder(plugins.path())
        .without_amqp()
        .mqtt(broker.port)
        .args(&["--history-mqtt-filter", "brewcast/\u{1}"])
        .run_to_exit();
    assert_ne!(exited.code(), Some(0), "{}", exited.stderr);
    assert!(
        exited.stderr.contains("--history-mqtt-filter")
            && exited.stderr.contains("control character U+0001"),
        "{}",
        exited.stderr
    );
}
