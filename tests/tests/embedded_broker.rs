//! `--embedded-broker`: an MQTT broker inside the host (rumqttd). With nothing else running,
//! the bundled plugins' messages flow: the device's retained state reaches a client that
//! subscribes later with the retain flag set, as MQTT says (the live copy without it),
//! the history plugin records the device's history events, the page's overview counts the
//! messages (exactly, for a host subscription) and shows the broker; another service can use
//! the broker, and its will is announced when it is killed. A taken port is a clear error.

use std::{net::TcpListener, time::Duration};

use integration_tests::{free_port, mqtt::Peer, runtime, wait_until, Host, PluginDir};
use serde_json::{json, Value};

const NAME: &str = "embedded_svc";

fn state_data(publish: &rumqttc::Publish) -> Value {
    let event: Value = serde_json::from_slice(&publish.payload).expect("JSON state event");
    event["data"].clone()
}

#[test]
fn the_bundled_plugins_work_with_only_the_embedded_broker() {
    let rt = runtime();
    let port = free_port();
    let address = format!("127.0.0.1:{port}");
    let dir = PluginDir::with(&["device-plugin", "history-plugin"]);
    let host = Host::builder(dir.path())
        .name(NAME)
        .without_amqp()
        .args(&["--embedded-broker", &address, "--update-interval", "0.2"])
        .start();
    assert!(
        wait_until(Duration::from_secs(20), || host.health().0 == 200),
        "healthy with the embedded broker: {:?}",
        host.health()
    );
    let (_, health) = host.health();
    assert_eq!(health["buses"], serde_json::json!(["mqtt"]));
    assert_eq!(health["mqtt"]["broker"], format!("mqtt://{address}"));

    // Retained messages: one published once, QoS 1, before anyone subscribed, reaches a
    // client that subscribes later.
    let mut publisher = rt.block_on(Peer::connect(port, &["embedded/retained"]));
    rt.block_on(publisher.client.publish(
        "embedded/retained",
        rumqttc::QoS::AtLeastOnce,
        true,
        b"kept".to_vec(),
    ))
    .unwrap();
    // Its own copy back: the broker has it before the late client subscribes. A live copy
    // to an existing subscription has the retain flag cleared (MQTT 3.1.1, 3.3.1.3).
    let own = rt.block_on(publisher.until("embedded/retained", Duration::from_secs(10)));
    assert!(
        !own.last().unwrap().retain,
        "the live copy is not marked retained"
    );
    let mut late = rt.block_on(Peer::connect(port, &["embedded/retained"]));
    let kept = rt
        .block_on(late.next(Duration::from_secs(10)))
        .expect("the retained message");
    assert_eq!(
        (kept.topic.as_str(), &kept.payload[..]),
        ("embedded/retained", &b"kept"[..])
    );
    // …with the retain flag set, as docs/operator-page.md says (an earlier version of those
    // docs said rumqttd left it unset: it does set it, rumqttd 0.20's router stores the
    // publish before clearing the flag for live copies).
    assert!(
        kept.retain,
        "the retained message reached the late subscriber without the retain flag"
    );
    // The device's state reaches a client through the broker.
    let state_topic = format!("brewcast/state/{NAME}");
    let mut peer = rt.block_on(Peer::connect(port, &[&state_topic]));
    let state = rt.block_on(peer.until(&state_topic, Duration::from_secs(10)));
    assert_eq!(
        state_data(state.last().unwrap())["device_id"],
        "fermenter-1"
    );

    // The history plugin recorded the device's history events through the broker.
    let history_key = format!("brewcast/history/{NAME}");
    assert!(
        wait_until(Duration::from_secs(10), || {
            let keys: Value = host.get("/history/keys").json().unwrap_or_default();
            keys.as_array()
                .is_some_and(|k| k.iter().any(|k| k == history_key.as_str()))
        }),
        "history keys: {}",
        host.get("/history/keys").text().unwrap_or_default()
    );

    overview_counts(&host, &rt, port, &address);

    // Another service on the same broker; killed, its will is announced.
    let other_dir = PluginDir::with(&["device-plugin"]);
    let mut other = Host::builder(other_dir.path())
        .name("other_svc")
        .without_amqp()
        .args(&["--mqtt-host", "127.0.0.1", "--mqtt-port", &port.to_string()])
        .start();
    let other_state = "brewcast/state/other_svc";
    let mut watcher = rt.block_on(Peer::connect(port, &[other_state]));
    let alive = rt.block_on(watcher.until(other_state, Duration::from_secs(10)));
    assert!(!state_data(alive.last().unwrap()).is_null(), "alive first");
    other.signal(libc::SIGKILL);
    let _ = other.wait_exit(Duration::from_secs(10));
    let mut will = None;
    for _ in 0..100 {
        let Some(message) = rt.block_on(watcher.next(Duration::from_secs(15))) else {
            break;
        };
        if message.topic == other_state && state_data(&message).is_null() {
            will = Some(message);
            break;
        }
    }
    assert!(
        will.is_some(),
        "the will of the killed service was announced"
    );
}

/// The operator page's data on the embedded broker: the broker shown connected, the history
/// plugin's MQTT subscription counting the device's events, and a host subscription counting
/// exactly the 3 messages sent to it.
fn overview_counts(host: &Host, rt: &tokio::runtime::Runtime, port: u16, address: &str) {
    let subscribed = host.post_json("/_debug/subscribe", json!({"topic": "embedded/count/#"}));
    assert_eq!(subscribed.status(), 200);
    let peer = rt.block_on(Peer::connect(port, &[]));
    for n in 0..3 {
        rt.block_on(peer.client.publish(
            format!("embedded/count/{n}"),
            rumqttc::QoS::AtLeastOnce,
            false,
            b"{}".to_vec(),
        ))
        .expect("publish");
    }
    let mut overview = Value::Null;
    let counted = wait_until(Duration::from_secs(10), || {
        overview = host.get("/_service/overview").json().unwrap_or_default();
        mqtt_delivered(&overview["host_subscriptions"], "embedded/count/#") >= 3.0
    });
    assert!(counted, "3 messages counted: {overview:#}");
    assert_eq!(
        mqtt_delivered(&overview["host_subscriptions"], "embedded/count/#"),
        3.0
    );
    let history = overview["plugins"]
        .as_array()
        .and_then(|p| p.iter().find(|p| p["name"] == "history-plugin"))
        .expect("history-plugin");
    assert!(
        mqtt_delivered(&history["subscriptions"], "brewcast/#") >= 1.0,
        "the device's events counted: {history}"
    );
    assert_eq!(
        overview["service"]["brokers"],
        json!([{"bus": "mqtt", "url": format!("mqtt://{address}"), "state": "connected",
                "list": [format!("mqtt://{address}")]}])
    );
}

/// Delivered to the MQTT subscription with `filter` among `subscriptions`.
fn mqtt_delivered(subscriptions: &Value, filter: &str) -> f64 {
    integration_tests::delivered(subscriptions, "mqtt", filter)
}

#[test]
fn a_taken_port_is_a_clear_error() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap().to_string();
    let dir = PluginDir::new();
    let exited = Host::builder(dir.path())
        .without_amqp()
        .args(&["--embedded-broker", &address])
        .run_to_exit();
    assert_eq!(exited.code(), Some(1));
    let stderr = exited.stderr.clone();
    assert!(
        stderr.contains(&format!("cannot run the embedded MQTT broker on {address}"))
            && stderr.contains("--mqtt-host"),
        "{stderr}"
    );
}
