//! The bundled plugins on MQTT, against a private Mosquitto and an independent client
//! (rumqttc used directly): the device's history events and retained state, its will at a
//! clean stop and at SIGKILL, the history plugin keyed by topic, the `_debug` routes' MQTT
//! form, and a broker restart.

use std::time::Duration;

use integration_tests::{
    mqtt::{reaches_history, rumqttc::QoS, Mosquitto, Peer},
    runtime, wait_until, Host, PluginDir,
};
use serde_json::{json, Value};

const SECS: Duration = Duration::from_secs(10);

fn device_host(broker: &Mosquitto, name: &str) -> Host {
    let plugins = PluginDir::with(&["device-plugin"]);
    let host = Host::builder(plugins.path())
        .name(name)
        .without_amqp()
        .mqtt(broker.port)
        .args(&["--update-interval", "0.05"])
        .start();
    std::mem::forget(plugins); // the host keeps loading from it for its whole life
    host
}

fn json_of(p: &integration_tests::mqtt::rumqttc::Publish) -> Value {
    serde_json::from_slice(&p.payload).unwrap_or(Value::Null)
}

/// What brewblox-history keeps of a history event: fields `<key>/<path>` whose values convert
/// to a float (numbers, booleans, numeric strings). `None` when it would drop the event.
fn history_fields(event: &Value) -> Option<Vec<(String, f64)>> {
    fn flatten(prefix: String, value: &Value, out: &mut Vec<(String, f64)>) {
        match value {
            Value::Object(map) => {
                for (k, v) in map {
                    flatten(format!("{prefix}/{k}"), v, out)
                }
            }
            Value::Array(items) => {
                for (i, v) in items.iter().enumerate() {
                    flatten(format!("{prefix}/{i}"), v, out)
                }
            }
            Value::Number(n) => out.push((prefix, n.as_f64().unwrap_or(f64::NAN))),
            Value::Bool(b) => out.push((prefix, f64::from(u8::from(*b)))),
            Value::String(s) => {
                if let Ok(f) = s.parse::<f64>() {
                    out.push((prefix, f))
                }
            }
            Value::Null => {}
        }
    }
    let key = event["key"].as_str()?;
    let data = event["data"].as_object()?;
    let mut out = Vec::new();
    flatten(key.to_owned(), &Value::Object(data.clone()), &mut out);
    (!out.is_empty()).then_some(out)
}

#[test]
fn device_history_and_retained_state_reach_an_independent_client_and_the_stop_clears_it() {
    let rt = runtime();
    let broker = Mosquitto::start();
    let mut peer = rt.block_on(Peer::connect(broker.port, &["brewcast/#"]));
    let mut host = device_host(&broker, "mqtt_dev");

    let seen = rt.block_on(peer.until("brewcast/history/mqtt_dev", SECS));
    let history = seen.last().unwrap();
    assert!(!history.retain);
    let event = json_of(history);
    let fields = history_fields(&event).expect("brewblox-history keeps the event");
    assert!(
        fields
            .iter()
            .any(|(name, _)| name == "mqtt_dev/fermenter-1/temperature[degC]"),
        "{fields:?}"
    );
    assert!(fields
        .iter()
        .any(|(name, v)| name == "mqtt_dev/fermenter-1/heater" && (*v == 0.0 || *v == 1.0)));

    // A late subscriber (once a state was published) gets the retained state at once.
    rt.block_on(peer.until("brewcast/state/mqtt_dev", SECS));
    let mut late = rt.block_on(Peer::connect(broker.port, &["brewcast/state/mqtt_dev"]));
    // Live updates (every 50 ms) may come before it; the retained copy is flagged.
    let state = rt.block_on(late.next(SECS)).expect("the retained state");
    assert!(state.retain, "{state:?}");
    let state = json_of(&state);
    assert_eq!(state["key"], "mqtt_dev");
    assert_eq!(state["type"], "Device.state");
    assert_eq!(state["data"]["device_id"], "fermenter-1");

    // Clean stop: exit 0, the host publishes the will itself (retained), once.
    assert_eq!(host.stop().code(), Some(0), "{}", host.stderr.text());
    rt.block_on(async {
        peer.client
            .publish("brewcast/marker", QoS::AtLeastOnce, false, "end")
            .await
            .unwrap();
    });
    let after = rt.block_on(peer.until("brewcast/marker", SECS));
    let nulls = after
        .iter()
        .filter(|p| p.topic == "brewcast/state/mqtt_dev" && json_of(p)["data"].is_null())
        .count();
    assert_eq!(nulls, 1, "{after:?}");
    let mut later = rt.block_on(Peer::connect(broker.port, &["brewcast/state/mqtt_dev"]));
    let state = rt.block_on(later.next(SECS)).expect("retained state");
    assert_eq!(
        json_of(&state),
        json!({"key": "mqtt_dev", "type": "Device.state", "data": null})
    );
}

#[test]
fn sigkill_makes_the_broker_announce_the_will() {
    let rt = runtime();
    let broker = Mosquitto::start();
    let mut peer = rt.block_on(Peer::connect(broker.port, &["brewcast/state/#"]));
    let mut host = device_host(&broker, "mqtt_kill");
    rt.block_on(peer.until("brewcast/state/mqtt_kill", SECS));
    host.signal(libc::SIGKILL);
    host.wait_exit(SECS).expect("killed");
    let deadline = std::time::Instant::now() + SECS;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let p = rt.block_on(peer.next(left)).expect("the will within 10 s");
        if json_of(&p)["data"].is_null() {
            assert_eq!(p.topic, "brewcast/state/mqtt_kill");
            break;
        }
    }
    let mut late = rt.block_on(Peer::connect(broker.port, &["brewcast/state/mqtt_kill"]));
    let retained = rt.block_on(late.next(SECS)).expect("retained will");
    assert!(json_of(&retained)["data"].is_null());
}

#[test]
fn history_records_mqtt_messages_of_any_payload_keyed_by_topic() {
    let rt = runtime();
    let broker = Mosquitto::start();
    let plugins = PluginDir::with(&["history-plugin"]);
    let host = Host::builder(plugins.path())
        .without_amqp()
        .mqtt(broker.port)
        .start();
    assert!(wait_until(SECS, || host
        .get("/_service/health")
        .json::<Value>()
        .is_ok_and(
            |h| h["mqtt"]["subscriptions"][0]["state"] == "active"
        )));
    let peer = rt.block_on(Peer::connect(broker.port, &[]));
    let sends: [(&str, &[u8]); 5] = [
        ("brewcast/a/json", br#"{"x": 1}"#),
        ("brewcast/a/text", b"not json"),
        ("brewcast/a/empty", b""),
        ("brewcast/a/bytes", &[0x66, 0xff]),
        ("elsewhere/x", b"1"),
    ];
    rt.block_on(async {
        for (topic, payload) in sends {
            peer.client
                .publish(topic, QoS::AtLeastOnce, false, payload.to_vec())
                .await
                .unwrap();
        }
        peer.client
            .publish("brewcast/marker", QoS::AtLeastOnce, false, "1")
            .await
            .unwrap();
    });
    let mut last = Value::Null;
    assert!(wait_until(SECS, || {
        last = host.get("/history/last").json().unwrap();
        last.get("brewcast/marker").is_some()
    }));
    assert_eq!(last["brewcast/a/json"], json!({"x": 1}));
    assert_eq!(last["brewcast/a/text"], "not json");
    assert_eq!(last["brewcast/a/empty"], "");
    assert_eq!(last["brewcast/a/bytes"], "f\u{fffd}");
    assert!(last.get("elsewhere/x").is_none(), "{last}");
    let recent: Value = host
        .get("/history/recent/brewcast%2Fa%2Fjson")
        .json()
        .unwrap();
    assert_eq!(recent[0]["message"], json!({"x": 1}));
}

#[test]
fn debug_routes_speak_mqtt() {
    let rt = runtime();
    let broker = Mosquitto::start();
    let plugins = PluginDir::with(&["hello-plugin"]);
    let host = Host::builder(plugins.path())
        .without_amqp()
        .mqtt(broker.port)
        .start();
    assert!(wait_until(SECS, || host.get("/_service/health").status() == 200));
    let mut peer = rt.block_on(Peer::connect(broker.port, &["dbg/#"]));

    let (status, text) = host.post_text(
        "/_debug/publish",
        json!({"topic": "dbg/out", "message": {"a": 1}, "retain": true}),
    );
    assert_eq!(status, 200, "{text}");
    let got = rt.block_on(peer.next(SECS)).expect("published");
    assert_eq!(
        (got.topic.as_str(), json_of(&got)),
        ("dbg/out", json!({"a": 1}))
    );

    let (status, text) = host.post_text("/_debug/subscribe", json!({"topic": "dbg/in/#"}));
    assert_eq!(status, 200, "{text}");
    rt.block_on(async {
        peer.client
            .publish("dbg/in/x", QoS::AtLeastOnce, false, "hello")
            .await
            .unwrap()
    });
    assert!(host.stderr.wait_for(
        "Unhandled event: subscription=<dbg/in/#>, topic=dbg/in/x, message=hello",
        SECS
    ));

    for (body, field) in [
        (json!({"topic": "a/+", "message": 1}), "topic"),
        (json!({"topic": 1, "message": 1}), "topic"),
        (json!({"topic": "a"}), "message"),
        (
            json!({"topic": "a", "message": 1, "retain": "yes"}),
            "retain",
        ),
    ] {
        let (status, text) = host.post_text("/_debug/publish", body.clone());
        assert_eq!(status, 400, "{body}: {text}");
        let error: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(error["field"], field, "{body}");
    }
    let (status, text) = host.post_text(
        "/_debug/publish",
        json!({"exchange": "e", "routing": "r", "message": 1}),
    );
    assert_eq!(status, 503, "{text}");
    assert!(text.contains("AMQP eventbus is not in use"), "{text}");
}

#[test]
fn a_broker_restart_is_survived_and_the_state_published_again() {
    let rt = runtime();
    let mut broker = Mosquitto::start();
    let host = device_host(&broker, "mqtt_restart");
    assert!(wait_until(SECS, || host.get("/_service/health").status() == 200));
    broker.down();
    assert!(wait_until(SECS, || host.get("/_service/health").status() == 503));
    assert_eq!(host.get("/device/state").status(), 200);
    broker.up(); // no persistence: the retained state is gone until the device sends it
    assert!(
        wait_until(SECS, || host.get("/_service/health").status() == 200),
        "{}",
        host.stderr.text()
    );
    let mut late = rt.block_on(Peer::connect(broker.port, &["brewcast/state/mqtt_restart"]));
    let state = rt.block_on(late.next(SECS)).expect("state published again");
    assert_eq!(json_of(&state)["data"]["device_id"], "fermenter-1");
    let health: Value = host.get("/_service/health").json().unwrap();
    assert!(health["mqtt"]["reconnects"].as_u64() >= Some(1), "{health}");
}

fn health(host: &Host) -> Value {
    host.get("/_service/health").json().unwrap()
}

fn history_host(broker: &Mosquitto, extra: &[&str]) -> Host {
    let plugins = PluginDir::with(&["history-plugin"]);
    let host = Host::builder(plugins.path())
        .without_amqp()
        .mqtt(broker.port)
        .args(extra)
        .start();
    std::mem::forget(plugins);
    assert!(wait_until(SECS, || health(&host)["mqtt"]["subscriptions"]
        [0]["state"]
        == "active"));
    host
}

#[test]
fn a_connection_the_broker_kills_is_reconnected_and_resubscribed() {
    let rt = runtime();
    let broker = Mosquitto::start();
    let host = history_host(&broker, &["--mqtt-client-id", "taken-over"]);
    // Another client with the same id: the broker closes the host's connection.
    let intruder = rt.block_on(Peer::connect_as("taken-over", broker.port, &[]));
    assert!(wait_until(SECS, || health(&host)["mqtt"]["reconnects"]
        .as_u64()
        .is_some_and(|n| n >= 1)));
    drop(intruder);
    assert!(wait_until(SECS, || health(&host)["mqtt"]["state"] == "connected"));
    reaches_history(&rt, &broker, &host, "brewcast/after/takeover", SECS);
}

#[test]
fn a_silent_broker_is_dropped_within_the_keepalive() {
    let rt = runtime();
    let broker = Mosquitto::start();
    let host = history_host(&broker, &["--mqtt-keepalive", "2"]);
    broker.freeze();
    let frozen = std::time::Instant::now();
    assert!(
        wait_until(SECS, || health(&host)["mqtt"]["state"] != "connected"),
        "{}",
        host.stderr.text()
    );
    // rumqttc pings after one keepalive and gives up at the next: at most about two.
    assert!(
        frozen.elapsed() < Duration::from_millis(3500),
        "{:?}",
        frozen.elapsed()
    );
    broker.thaw();
    assert!(wait_until(SECS, || health(&host)["mqtt"]["state"] == "connected"));
    reaches_history(&rt, &broker, &host, "brewcast/after/freeze", SECS);
}

#[test]
fn a_reload_moves_mqtt_subscriptions_to_the_new_plugins() {
    let rt = runtime();
    let broker = Mosquitto::start();
    let host = history_host(&broker, &[]);
    reaches_history(&rt, &broker, &host, "brewcast/before/reload", SECS);
    host.signal(libc::SIGHUP);
    assert!(
        host.stderr.wait_for("Reloaded", SECS),
        "{}",
        host.stderr.text()
    );
    // The old generation's subscription is cancelled, the new one's is acknowledged.
    let subs = health(&host)["mqtt"]["subscriptions"].clone();
    assert_eq!(subs.as_array().map(Vec::len), Some(1), "{subs}");
    assert_eq!(subs[0]["state"], "active", "{subs}");
    // The new history plugin receives, and kept what the old one recorded (handed over).
    reaches_history(&rt, &broker, &host, "brewcast/after/reload", SECS);
    let last: Value = host.get("/history/last").json().unwrap();
    assert!(last.get("brewcast/before/reload").is_some(), "{last}");
}
