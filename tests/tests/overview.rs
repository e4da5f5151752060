//! `GET /{name}/_service/overview`, the operator page's data, read from a running host with
//! the bundled plugins and the testkit fixture, its values checked against what really
//! happened (the schema is checked in `openapi.rs`, the page in `ui.rs`):
//!
//! - each plugin's build id is its library's GNU build id; generation 1, then 2 after a real
//!   SIGHUP reload, which is listed with its outcome (ok, device-plugin's handover accepted);
//! - the running tasks and repeaters are listed; the testkit's failing tasks and repeater
//!   are counted, again after the reload;
//! - a subscription's delivered, failed and dropped counts and its handler time follow the
//!   messages sent to it, exactly;
//! - an unreachable AMQP broker makes the service unhealthy with the problem listed, as
//!   `/_service/health` lists it;
//! - with broker lists whose first entry nothing listens on, the broker in use is shown.

use std::time::Duration;

use integration_tests::{
    amqp::{unique, SyncPeer},
    free_port, gnu_build_id,
    mqtt::Mosquitto,
    plugin_lib, wait_until, DeadFirstLists, Host, PluginDir,
};
use serde_json::{json, Value};

const NAME: &str = "overview_svc";

fn overview(host: &Host) -> Value {
    let answer = host.get("/_service/overview");
    assert_eq!(answer.status(), 200);
    answer.json().expect("overview JSON")
}

fn plugin<'a>(overview: &'a Value, name: &str) -> &'a Value {
    overview["plugins"]
        .as_array()
        .and_then(|plugins| plugins.iter().find(|p| p["name"] == name))
        .unwrap_or_else(|| panic!("{name} is not listed: {overview:#}"))
}

/// The testkit's subscription to `exchange`: delivered, failed, dropped, handler seconds.
fn counts(overview: &Value, exchange: &str) -> [f64; 4] {
    let subscription = plugin(overview, "testkit-plugin")["subscriptions"]
        .as_array()
        .and_then(|subs| subs.iter().find(|s| s["exchange"] == exchange))
        .unwrap_or_else(|| panic!("no subscription to {exchange}: {overview:#}"));
    ["delivered", "failed", "dropped", "handler_seconds"].map(|key| {
        subscription[key]
            .as_f64()
            .unwrap_or_else(|| panic!("{key}: {subscription}"))
    })
}

/// Waits (≤ 20 s) until `check` holds for the overview; fails with the last one.
fn until(host: &Host, what: &str, check: impl Fn(&Value) -> bool) -> Value {
    let mut last = Value::Null;
    let reached = wait_until(Duration::from_secs(20), || {
        last = overview(host);
        check(&last)
    });
    assert!(reached, "{what}: {last:#}");
    last
}

const PLUGINS: [&str; 3] = ["device-plugin", "history-plugin", "testkit-plugin"];

fn generations_are(overview: &Value, generation: u64) -> bool {
    PLUGINS
        .iter()
        .all(|name| plugin(overview, name)["generation"] == generation)
}

/// The tasks and repeaters listed for `name`.
fn tasks(overview: &Value, name: &str) -> Vec<String> {
    plugin(overview, name)["tasks"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t.as_str().map(str::to_owned))
        .collect()
}

#[test]
fn the_overview_counts_what_really_happens() {
    let exchange = unique("overview");
    let dir = PluginDir::with(&PLUGINS);
    let host = Host::builder(dir.path())
        .name(NAME)
        .args(&["--testkit-exchange", &exchange, "--update-interval", "0.5"])
        .start();
    let first = until(&host, "healthy, generation 1", |o| {
        o["service"]["status"] == "ok" && generations_are(o, 1)
    });
    assert_eq!(first["service"]["problems"], json!([]));
    assert_eq!(first["reloads"], json!([]));
    for name in PLUGINS {
        let listed = plugin(&first, name);
        assert_eq!(listed["state"], "running", "{listed}");
        assert_eq!(
            listed["build"],
            gnu_build_id(&plugin_lib(name)),
            "{name}'s build"
        );
    }
    for (name, task) in [
        ("device-plugin", "device simulation"),
        ("device-plugin", "device publisher"),
        ("testkit-plugin", "kit-sleeper"),
        ("testkit-plugin", "kit-failing-repeater"),
    ] {
        assert!(
            tasks(&first, name).iter().any(|t| t == task),
            "{name}: {task} in {:?}",
            tasks(&first, name)
        );
    }
    // kit-failer ends with an error and kit-panicker panics; the failing repeater keeps
    // failing (its back-off grows from 100 ms).
    let failures = until(&host, "task and repeater failures", |o| {
        let kit = plugin(o, "testkit-plugin");
        kit["task_failures"] == 2.0 && kit["repeater_failures"].as_f64() >= Some(2.0)
    });
    assert_eq!(plugin(&failures, "device-plugin")["task_failures"], 0.0);

    // Messages on the testkit's private exchange: 3 plain ones, one its handler fails, one
    // that holds the handler 300 ms, one that is not JSON (dropped before the handler), and a
    // last plain one as the sentinel: delivered in order, so once it is counted every
    // earlier one is.
    assert_eq!(counts(&first, &exchange), [0.0; 4]);
    let peer = SyncPeer::connect();
    for n in 0..3 {
        peer.publish_json(&exchange, "kit.n", &json!({ "n": n }));
    }
    peer.publish_json(&exchange, "kit.fail", &json!("fail"));
    peer.publish_json(&exchange, "kit.wait", &json!("wait:300"));
    peer.publish(&exchange, "kit.bad", b"{ not json");
    peer.publish_json(&exchange, "kit.last", &json!({ "n": 99 }));
    let counted = until(&host, "6 delivered", |o| counts(o, &exchange)[0] >= 6.0);
    let [delivered, failed, dropped, handler_seconds] = counts(&counted, &exchange);
    assert_eq!((delivered, failed, dropped), (6.0, 1.0, 1.0), "{counted:#}");
    assert!(
        (0.3..30.0).contains(&handler_seconds),
        "handler time {handler_seconds} s for 6 messages, one of them 300 ms"
    );

    // A real reload: every plugin comes back as generation 2, the reload is listed ok, the
    // device's chamber was handed over, and the new testkit's tasks fail again.
    host.signal(libc::SIGHUP);
    host.wait_reloads((1, 0));
    let reloaded = until(&host, "generation 2", |o| generations_are(o, 2));
    let reloads = reloaded["reloads"].as_array().expect("reloads");
    assert_eq!(reloads.len(), 1, "{reloads:?}");
    assert_eq!(
        (&reloads[0]["ok"], &reloads[0]["error"]),
        (&json!(true), &Value::Null)
    );
    let device_handover = reloads[0]["handovers"]
        .as_array()
        .and_then(|h| h.iter().find(|h| h["plugin"] == "device-plugin"))
        .unwrap_or_else(|| panic!("device-plugin's handover: {reloads:?}"));
    assert_eq!(device_handover["outcome"], "accepted");
    for name in PLUGINS {
        assert_eq!(
            plugin(&reloaded, name)["build"],
            gnu_build_id(&plugin_lib(name))
        );
    }
    until(&host, "the new generation's task failures", |o| {
        plugin(o, "testkit-plugin")["task_failures"] == 4.0
    });
}

#[test]
fn an_unreachable_broker_makes_the_service_unhealthy_with_its_problem_listed() {
    let dead = free_port();
    let dir = PluginDir::with(&["testkit-plugin"]);
    let host = Host::builder(dir.path())
        .name(NAME)
        .without_amqp()
        .args(&[
            "--eventbus-host",
            &format!("127.0.0.1:{dead}"),
            "--testkit-exchange",
            &unique("unhealthy"),
            "--eventbus-reconnect-interval",
            "0.2",
        ])
        .start();
    let sick = until(&host, "unhealthy", |o| {
        o["service"]["status"] == "unhealthy"
    });
    let problems: Vec<&str> = sick["service"]["problems"]
        .as_array()
        .expect("problems")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        problems.iter().any(|p| p.starts_with("eventbus")),
        "{problems:?}"
    );
    let (status, health) = host.health();
    assert_eq!(status, 503);
    // The same problems as the health report (read just after: the broker stays dead).
    assert_eq!(sick["service"]["problems"], health["problems"]);
    let [amqp] = sick["service"]["brokers"].as_array().unwrap().as_slice() else {
        panic!("one broker: {sick:#}");
    };
    assert_eq!(amqp["url"], format!("amqp://127.0.0.1:{dead}/%2f"));
    assert_ne!(amqp["state"], "connected");
}

#[test]
fn the_broker_in_use_is_shown_not_the_first_of_the_list() {
    let broker = Mosquitto::start();
    let lists = DeadFirstLists::new(broker.port);
    let (dead_amqp, dead_mqtt) = (lists.dead_amqp, lists.dead_mqtt);
    let dir = PluginDir::with(&["device-plugin"]);
    let host = Host::builder(dir.path())
        .name(NAME)
        .without_amqp()
        .args(&lists.args())
        .args(&["--update-interval", "0.2"])
        .start();
    let connected = until(&host, "both buses connected", |o| {
        o["service"]["brokers"]
            .as_array()
            .is_some_and(|b| b.len() == 2 && b.iter().all(|b| b["state"] == "connected"))
    });
    let brokers = connected["service"]["brokers"].as_array().unwrap();
    let amqp = brokers.iter().find(|b| b["bus"] == "amqp").unwrap();
    assert_eq!(amqp["url"], "amqp://127.0.0.1:5672/%2f", "{amqp}");
    assert_eq!(
        amqp["list"],
        json!([
            format!("amqp://127.0.0.1:{dead_amqp}/%2f"),
            "amqp://127.0.0.1:5672/%2f"
        ])
    );
    let mqtt = brokers.iter().find(|b| b["bus"] == "mqtt").unwrap();
    let live = format!("mqtt://127.0.0.1:{}", broker.port);
    assert_eq!(mqtt["url"], live, "{mqtt}");
    assert_eq!(
        mqtt["list"],
        json!([format!("mqtt://127.0.0.1:{dead_mqtt}"), live])
    );
    // What health says is in use, without the user.
    let (_, health) = host.health();
    assert_eq!(health["mqtt"]["broker"], live);
    assert_eq!(
        health["eventbus"]["broker"],
        "amqp://guest@127.0.0.1:5672/%2f"
    );
}
