//! Choosing the eventbus: `--mqtt-*` options select MQTT, `--eventbus-*` options or none
//! select AMQP, both select both; an MQTT-only service never reaches for AMQP. Each test runs
//! its own Mosquitto on a free loopback port.

use std::time::Duration;

use integration_tests::{mqtt::Mosquitto, wait_until, Host, PluginDir};
use serde_json::Value;

#[test]
fn mqtt_options_alone_select_mqtt_and_never_touch_amqp() {
    let broker = Mosquitto::start();
    let plugins = PluginDir::with(&["device-plugin", "hello-plugin"]);
    let mut host = Host::builder(plugins.path())
        .without_amqp()
        .mqtt(broker.port)
        .args(&["--update-interval", "0.05"])
        .start();
    let endpoint = format!("MQTT (mqtt://127.0.0.1:{})", broker.port);
    assert!(
        host.stderr
            .wait_for(&format!("Eventbus: {endpoint}"), Duration::from_secs(5)),
        "{}",
        host.stderr.text()
    );
    let connected = wait_until(Duration::from_secs(10), || {
        host.health().1["mqtt"]["state"] == "connected"
    });
    assert!(connected, "{}", host.stderr.text());
    // Let the device publish a few updates (each an AMQP publish that must not connect).
    assert!(host
        .stderr
        .wait_for("Connected to MQTT broker", Duration::from_secs(5)));
    std::thread::sleep(Duration::from_millis(300));
    let (status, body) = host.health();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["buses"], serde_json::json!(["mqtt"]));
    assert_eq!(body["eventbus"]["state"], "disabled", "{body}");
    assert_eq!(body["eventbus"]["publisher"]["reconnects"], 0);
    let text = host.stderr.text();
    assert!(!text.contains("AMQP ("), "{text}");
    assert!(host.stop().success());
}

#[test]
fn no_eventbus_option_selects_amqp_and_both_select_both() {
    let broker = Mosquitto::start();
    let plugins = PluginDir::with(&["hello-plugin"]);
    let mut amqp = Host::builder(plugins.path()).without_amqp().start();
    assert!(
        amqp.stderr
            .wait_for("Eventbus: AMQP (amqp://", Duration::from_secs(5)),
        "{}",
        amqp.stderr.text()
    );
    assert!(!amqp.stderr.text().contains("MQTT ("));
    let body = amqp.health().1;
    assert_eq!(body["buses"], serde_json::json!(["amqp"]));
    assert_eq!(body["mqtt"], Value::Null);
    assert!(amqp.stop().success());

    let mut both = Host::builder(plugins.path()).mqtt(broker.port).start();
    assert!(both
        .stderr
        .wait_for(" and MQTT (mqtt://127.0.0.1:", Duration::from_secs(5)));
    let body = both.health().1;
    assert_eq!(body["buses"], serde_json::json!(["amqp", "mqtt"]));
    assert!(both.stop().success());
}

#[test]
fn help_says_how_the_eventbus_is_chosen() {
    let plugins = PluginDir::new();
    let exited = Host::builder(plugins.path())
        .without_amqp()
        .env("BREWBLOX_MQTT_HOST", "broker")
        .arg("--help")
        .run_to_exit();
    assert_eq!(exited.code(), Some(0));
    for needle in [
        "--mqtt-protocol",
        "--mqtt-tls-verify",
        "--history-topic",
        "--mqtt-* options select the MQTT eventbus",
        "no such option on the command line: MQTT.",
    ] {
        assert!(
            exited.stdout.contains(needle),
            "{needle}:\n{}",
            exited.stdout
        );
    }
}

#[test]
fn a_broker_down_at_boot_is_waited_for_while_the_service_serves() {
    let mut broker = Mosquitto::later();
    let plugins = PluginDir::with(&["hello-plugin"]);
    let mut host = Host::builder(plugins.path())
        .without_amqp()
        .mqtt(broker.port)
        .start();
    assert_eq!(host.get("/hello").status(), 200);
    let (status, body) = host.health();
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["mqtt"]["state"], "connecting");
    assert!(body["problems"][0]
        .as_str()
        .unwrap()
        .starts_with("mqtt: connecting"));
    broker.up();
    assert!(
        wait_until(Duration::from_secs(10), || host.health().0 == 200),
        "{}",
        host.stderr.text()
    );
    assert!(host.stop().success());
}
