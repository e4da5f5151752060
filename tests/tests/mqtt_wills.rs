//! One service, many plugins, one will each: every plugin that declares a will gets its own
//! (on its own topic, held by the broker on a connection of its own), a second will on a
//! topic another plugin's will has is refused, and a will added by a reload is held by the
//! broker before the new plugins serve. Against a private Mosquitto and an independent
//! client: the two-plugin service (device-plugin on `brewcast/state/<service>`,
//! testkit-plugin on `brewcast/state/<service>/testkit-plugin`) at a clean stop and at
//! SIGKILL, and a reload that adds the device plugin, then SIGKILL.

use std::time::{Duration, Instant};

use integration_tests::{
    mqtt::{rumqttc::QoS, Mosquitto, Peer},
    runtime, wait_until, Host, PluginDir,
};
use serde_json::{json, Value};

const SECS: Duration = Duration::from_secs(10);

fn json_of(p: &integration_tests::mqtt::rumqttc::Publish) -> Value {
    serde_json::from_slice(&p.payload).unwrap_or(Value::Null)
}

fn health(host: &Host) -> Value {
    host.get("/_service/health").json().unwrap()
}

fn kit_topic(service: &str) -> String {
    format!("brewcast/state/{service}/testkit-plugin")
}

/// device-plugin and testkit-plugin, both with a will and a retained state.
fn two_plugin_host(broker: &Mosquitto, service: &str) -> (Host, PluginDir) {
    let plugins = PluginDir::with(&["device-plugin", "testkit-plugin"]);
    let host = Host::builder(plugins.path())
        .name(service)
        .without_amqp()
        .mqtt(broker.port)
        .args(&["--update-interval", "0.05"])
        .args(&["--testkit-mqtt-state", &kit_topic(service)])
        .start();
    (host, plugins)
}

/// Waits until both plugins' wills are held, and checks health names each.
fn wait_wills_held(host: &Host, want: &[(&str, &str)]) {
    let held = wait_until(SECS, || {
        let wills = health(host)["mqtt"]["wills"].clone();
        wills
            .as_array()
            .is_some_and(|w| w.len() == want.len() && w.iter().all(|will| will["held"] == true))
    });
    let wills = health(host)["mqtt"]["wills"].clone();
    assert!(held, "{wills}\n{}", host.stderr.text());
    for (plugin, topic) in want {
        assert!(
            wills
                .as_array()
                .unwrap()
                .iter()
                .any(|w| w["plugin"] == *plugin && w["topic"] == *topic),
            "{plugin} on {topic}: {wills}"
        );
    }
}

/// Waits until the two-plugin host's wills are both held, each on its own topic.
fn both_wills_held(host: &Host, service: &str) {
    let device_topic = format!("brewcast/state/{service}");
    wait_wills_held(
        host,
        &[
            ("device-plugin", &device_topic),
            ("testkit-plugin", &kit_topic(service)),
        ],
    );
}

/// Collects messages until both `topics` carried `data: null`, at most 10 s; the messages.
fn until_nulls(
    rt: &tokio::runtime::Runtime,
    peer: &mut Peer,
    topics: &[&str],
) -> Vec<(String, Value)> {
    let deadline = Instant::now() + SECS;
    let mut seen = Vec::new();
    while !topics.iter().all(|t| {
        seen.iter()
            .any(|(topic, v): &(String, Value)| topic == t && v["data"].is_null())
    }) {
        let left = deadline.saturating_duration_since(Instant::now());
        let Some(p) = rt.block_on(peer.next(left)) else {
            panic!("not every will within 10 s: {seen:?}");
        };
        seen.push((p.topic.clone(), json_of(&p)));
    }
    seen
}

/// A late subscriber's retained message on `topic`.
fn retained(rt: &tokio::runtime::Runtime, broker: &Mosquitto, topic: &str) -> Value {
    let mut late = rt.block_on(Peer::connect(broker.port, &[topic]));
    let p = rt.block_on(late.next(SECS)).expect("a retained message");
    assert!(p.retain);
    json_of(&p)
}

#[test]
fn two_plugins_keep_their_own_state_and_will_and_a_clean_stop_publishes_both_once() {
    let rt = runtime();
    let broker = Mosquitto::start();
    let service = "wills_stop";
    let mut peer = rt.block_on(Peer::connect(broker.port, &["brewcast/state/#"]));
    let (mut host, _plugins) = two_plugin_host(&broker, service);
    let device_topic = format!("brewcast/state/{service}");
    let kit = kit_topic(service);
    both_wills_held(&host, service);
    // MQTT only: the device says where it publishes, and no AMQP exchange.
    let log = host.stderr.text();
    let line = log
        .lines()
        .find(|l| l.contains("simulating, updating every"))
        .unwrap_or_default();
    assert!(
        line.contains("publishing to MQTT topics") && !line.contains("exchange"),
        "{line}"
    );
    // Both retained states stand side by side: neither overwrites the other.
    rt.block_on(peer.until(&kit, SECS));
    rt.block_on(peer.until(&device_topic, SECS));
    assert_eq!(retained(&rt, &broker, &kit)["data"], json!({"alive": true}));
    assert_eq!(
        retained(&rt, &broker, &device_topic)["type"],
        "Device.state"
    );

    assert_eq!(host.stop().code(), Some(0), "{}", host.stderr.text());
    rt.block_on(async {
        peer.client
            .publish("brewcast/state/marker", QoS::AtLeastOnce, false, "{}")
            .await
            .unwrap();
    });
    let after = rt.block_on(peer.until("brewcast/state/marker", SECS));
    for topic in [&device_topic, &kit] {
        let nulls = after
            .iter()
            .filter(|p| &p.topic == topic && json_of(p)["data"].is_null())
            .count();
        assert_eq!(nulls, 1, "{topic}: {after:?}");
        assert!(retained(&rt, &broker, topic)["data"].is_null(), "{topic}");
    }
}

#[test]
fn sigkill_makes_the_broker_announce_every_plugins_will() {
    let rt = runtime();
    let broker = Mosquitto::start();
    let service = "wills_kill";
    let mut peer = rt.block_on(Peer::connect(broker.port, &["brewcast/state/#"]));
    let (mut host, _plugins) = two_plugin_host(&broker, service);
    let device_topic = format!("brewcast/state/{service}");
    let kit = kit_topic(service);
    both_wills_held(&host, service);
    rt.block_on(peer.until(&kit, SECS));
    host.signal(libc::SIGKILL);
    host.wait_exit(SECS).expect("killed");
    until_nulls(&rt, &mut peer, &[&device_topic, &kit]);
    assert!(retained(&rt, &broker, &device_topic)["data"].is_null());
    assert!(retained(&rt, &broker, &kit)["data"].is_null());
}

/// The device's state updates sent while the broker was not reading them (frozen), then
/// SIGKILL, then the broker reads everything: whichever socket it reads first, the will
/// comes after the last state update, because both travel on the will's connection.
#[test]
fn a_state_update_sent_just_before_a_sigkill_never_lands_after_the_will() {
    let rt = runtime();
    let broker = Mosquitto::start();
    let service = "wills_order";
    let mut peer = rt.block_on(Peer::connect(broker.port, &["brewcast/state/#"]));
    let (mut host, _plugins) = two_plugin_host(&broker, service);
    let device_topic = format!("brewcast/state/{service}");
    both_wills_held(&host, service);
    rt.block_on(peer.until(&device_topic, SECS));
    broker.freeze();
    // The device publishes every 50 ms: a few periods leave an update in the broker's socket.
    std::thread::sleep(Duration::from_millis(200));
    host.signal(libc::SIGKILL);
    host.wait_exit(SECS).expect("killed");
    broker.thaw();
    until_nulls(&rt, &mut peer, &[&device_topic]);
    assert!(retained(&rt, &broker, &device_topic)["data"].is_null());
}

#[test]
fn a_will_on_another_plugins_topic_is_refused_with_a_clear_error() {
    let broker = Mosquitto::start();
    let service = "wills_clash";
    let plugins = PluginDir::with(&["device-plugin", "testkit-plugin"]);
    let exited = Host::builder(plugins.path())
        .name(service)
        .without_amqp()
        .mqtt(broker.port)
        .args(&["--testkit-mqtt-state", &format!("brewcast/state/{service}")])
        .run_to_exit();
    assert_ne!(exited.code(), Some(0));
    let expected = format!(
        "the MQTT will on 'brewcast/state/{service}' is plugin device-plugin's; each plugin \
         declares its own will on its own topic"
    );
    assert!(exited.stderr.contains(&expected), "{}", exited.stderr);
}

#[test]
fn a_retained_message_on_another_plugins_state_topic_is_refused() {
    let rt = runtime();
    let broker = Mosquitto::start();
    let service = "wills_overwrite";
    let (mut host, _plugins) = two_plugin_host(&broker, service);
    let device_topic = format!("brewcast/state/{service}");
    both_wills_held(&host, service);
    let publish = |retain: bool| -> Value {
        host.client
            .post(host.url("/kit/mqtt/publish"))
            .json(&json!({"topic": device_topic, "payload": "{}", "qos": 1, "retain": retain}))
            .send()
            .unwrap()
            .json()
            .unwrap()
    };
    let refused = publish(true);
    assert_eq!(refused["ok"], false, "{refused}");
    assert_eq!(refused["kind"], "Invalid", "{refused}");
    assert!(
        refused["error"]
            .as_str()
            .unwrap()
            .contains("is plugin device-plugin's state topic"),
        "{refused}"
    );
    // Not retained, it replaces nothing: allowed.
    assert_eq!(publish(false)["ok"], true);
    let _ = rt;
    assert_eq!(host.stop().code(), Some(0));
}

#[test]
fn a_will_added_by_a_reload_is_held_by_the_broker_and_announced_at_sigkill() {
    let rt = runtime();
    let broker = Mosquitto::start();
    let service = "wills_reload";
    let device_topic = format!("brewcast/state/{service}");
    let mut peer = rt.block_on(Peer::connect(broker.port, &["brewcast/state/#"]));
    let plugins = PluginDir::with(&["history-plugin"]);
    // The device plugin's arguments come with it, in an `@file` read again at the reload.
    let args_dir = tempfile::tempdir().unwrap();
    let args = args_dir.path().join("args");
    std::fs::write(&args, "").unwrap();
    let mut host = Host::builder(plugins.path())
        .name(service)
        .without_amqp()
        .mqtt(broker.port)
        .arg(&format!("@{}", args.display()))
        .start();
    assert_eq!(health(&host)["mqtt"]["wills"], json!([]));
    plugins.add("device-plugin");
    std::fs::write(&args, "--update-interval=0.05\n").unwrap();
    host.signal(libc::SIGHUP);
    assert!(
        host.stderr.wait_for("Reloaded", SECS),
        "{}",
        host.stderr.text()
    );
    // Held before the swap: health says so as soon as the reload is done.
    let wills = health(&host)["mqtt"]["wills"].clone();
    assert_eq!(
        wills,
        json!([{"plugin": "device-plugin", "topic": device_topic, "held": true}])
    );
    rt.block_on(peer.until(&device_topic, SECS));
    host.signal(libc::SIGKILL);
    host.wait_exit(SECS).expect("killed");
    until_nulls(&rt, &mut peer, &[&device_topic]);
    assert!(retained(&rt, &broker, &device_topic)["data"].is_null());
}

#[test]
fn a_plugin_removed_by_a_reload_has_its_will_published_and_released() {
    let rt = runtime();
    let broker = Mosquitto::start();
    let service = "wills_removed";
    let device_topic = format!("brewcast/state/{service}");
    let mut peer = rt.block_on(Peer::connect(broker.port, &["brewcast/state/#"]));
    let plugins = PluginDir::with(&["device-plugin", "history-plugin"]);
    let mut host = Host::builder(plugins.path())
        .name(service)
        .without_amqp()
        .mqtt(broker.port)
        .start();
    wait_wills_held(&host, &[("device-plugin", &device_topic)]);
    std::fs::remove_file(plugins.path().join("libdevice_plugin.so")).unwrap();
    host.signal(libc::SIGHUP);
    assert!(
        host.stderr.wait_for("Reloaded", SECS),
        "{}",
        host.stderr.text()
    );
    // The device is gone: its will says so, and no will is held for it any more.
    until_nulls(&rt, &mut peer, &[&device_topic]);
    assert!(wait_until(SECS, || health(&host)["mqtt"]["wills"] == json!([])));
    // Its connection was closed cleanly: a SIGKILL now announces nothing more for it.
    host.signal(libc::SIGKILL);
    host.wait_exit(SECS).expect("killed");
    rt.block_on(async {
        peer.client
            .publish("brewcast/state/marker", QoS::AtLeastOnce, false, "{}")
            .await
            .unwrap();
    });
    let after = rt.block_on(peer.until("brewcast/state/marker", SECS));
    assert!(after.iter().all(|p| p.topic != device_topic), "{after:?}");
}
