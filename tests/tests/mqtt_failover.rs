//! MQTT broker lists against private Mosquittos: the host connects to the first broker that
//! answers, moves to the next when the one in use dies, subscribes again there (a message
//! published on the new broker reaches the history plugin), and shows the broker in use in
//! health and metrics. A plugin's will moves with its own connection.

use std::time::Duration;

use integration_tests::{
    mqtt::{reaches_history, Mosquitto, Peer},
    runtime, wait_until, Host, PluginDir,
};
use serde_json::Value;

const SECS: Duration = Duration::from_secs(15);

fn health(host: &Host) -> Value {
    host.get("/_service/health").json().unwrap()
}

fn endpoint(broker: &Mosquitto) -> String {
    format!("mqtt://127.0.0.1:{}", broker.port)
}

/// A history host on the brokers `list` (`--mqtt-host`), set through `how`.
fn history_host(how: (&str, &str)) -> Host {
    let plugins = PluginDir::with(&["history-plugin"]);
    let builder = Host::builder(plugins.path()).without_amqp();
    let builder = match how {
        ("env", list) => builder.env("BREWBLOX_MQTT_HOST", list),
        (_, list) => builder.args(&["--mqtt-host", list]),
    };
    let host = builder.start();
    std::mem::forget(plugins); // the host keeps loading from it for its whole life
    host
}

/// Waits until health shows `broker` in use, connected, with the history's subscription
/// active there.
fn uses(host: &Host, broker: &Mosquitto) {
    let want = endpoint(broker);
    assert!(
        wait_until(SECS, || {
            let health = health(host);
            health["mqtt"]["state"] == "connected"
                && health["mqtt"]["broker"] == want.as_str()
                && health["mqtt"]["subscriptions"][0]["state"] == "active"
        }),
        "never connected to {want}: {}\n{}",
        health(host),
        host.stderr.text()
    );
}

/// The value of `eventbus_broker_info` for `broker` on the MQTT connection, if present.
fn broker_info(host: &Host, broker: &Mosquitto) -> Option<String> {
    let text = host.get("/_service/metrics").text().unwrap();
    let series = format!(
        "eventbus_broker_info{{bus=\"mqtt\",connection=\"mqtt\",broker=\"{}\"}} ",
        endpoint(broker)
    );
    text.lines()
        .find_map(|line| line.strip_prefix(series.as_str()))
        .map(str::to_owned)
}

#[test]
fn the_host_moves_to_the_next_broker_when_the_one_in_use_dies_and_back() {
    let rt = runtime();
    let mut first = Mosquitto::start();
    let mut second = Mosquitto::start();
    let list = format!("127.0.0.1:{},127.0.0.1:{}", first.port, second.port);
    let host = history_host(("arg", &list));
    uses(&host, &first);
    reaches_history(&rt, &first, &host, "brewcast/on/first", SECS);
    assert_eq!(broker_info(&host, &first).as_deref(), Some("1"));
    assert_eq!(broker_info(&host, &second), None, "never used yet");

    first.down();
    uses(&host, &second);
    reaches_history(&rt, &second, &host, "brewcast/on/second", SECS);
    assert_eq!(broker_info(&host, &second).as_deref(), Some("1"));
    assert_eq!(broker_info(&host, &first).as_deref(), Some("0"));
    assert!(health(&host)["mqtt"]["reconnects"].as_u64() >= Some(1));

    // Round robin: past the end of the list, the first broker again.
    first.up();
    second.down();
    uses(&host, &first);
    reaches_history(&rt, &first, &host, "brewcast/on/first/again", SECS);
    assert_eq!(broker_info(&host, &first).as_deref(), Some("1"));
    assert_eq!(broker_info(&host, &second).as_deref(), Some("0"));
}

#[test]
fn a_broker_that_refuses_at_start_is_skipped_and_the_list_may_come_from_the_environment() {
    let rt = runtime();
    let dead = Mosquitto::later(); // a free port nothing listens on
    let live = Mosquitto::start();
    let list = format!("127.0.0.1:{}, 127.0.0.1:{}", dead.port, live.port);
    let host = history_host(("env", &list));
    uses(&host, &live);
    reaches_history(&rt, &live, &host, "brewcast/on/live", SECS);
    assert_eq!(broker_info(&host, &live).as_deref(), Some("1"));
    assert_eq!(broker_info(&host, &dead), None, "never in use");
}

#[test]
fn a_plugins_will_follows_the_list_and_the_new_broker_announces_it() {
    let rt = runtime();
    let mut first = Mosquitto::start();
    let second = Mosquitto::start();
    let list = format!("127.0.0.1:{},127.0.0.1:{}", first.port, second.port);
    let plugins = PluginDir::with(&["device-plugin"]);
    let mut host = Host::builder(plugins.path())
        .name("mqtt_will_moves")
        .without_amqp()
        .args(&["--mqtt-host", &list, "--update-interval", "0.05"])
        .start();
    std::mem::forget(plugins);
    let will_held_on = |broker: &Mosquitto| {
        let want = endpoint(broker);
        wait_until(SECS, || {
            let health = health(&host);
            health["mqtt"]["broker"] == want.as_str() && health["mqtt"]["wills"][0]["held"] == true
        })
    };
    assert!(will_held_on(&first), "{}", health(&host));
    first.down();
    // The will's own connection moved too: only the second broker can hold it now.
    assert!(will_held_on(&second), "{}", health(&host));
    let topic = "brewcast/state/mqtt_will_moves";
    let mut peer = rt.block_on(Peer::connect(second.port, &[topic]));
    rt.block_on(peer.until(topic, SECS));
    host.signal(libc::SIGKILL);
    host.wait_exit(SECS).expect("killed");
    let deadline = std::time::Instant::now() + SECS;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let message = rt
            .block_on(peer.next(left))
            .expect("the second broker announces the will");
        let body: Option<Value> = serde_json::from_slice(&message.payload).ok();
        let is_will = body.is_some_and(|b| b.get("data").is_some_and(Value::is_null));
        if message.topic == topic && is_will {
            break;
        }
    }
}
