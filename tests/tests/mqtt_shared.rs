//! Two instances of one service on an MQTT shared subscription (`$share/<group>/<filter>`),
//! against a private Mosquitto: every message is handled by exactly one of them, and both
//! take part. The broker delivers a shared subscription's messages on their plain topics;
//! the host hands them to the subscription whose inner filter matches.

use std::time::Duration;

use integration_tests::{
    mqtt::{rumqttc::QoS, Mosquitto, Peer},
    runtime, wait_until, Host, PluginDir,
};
use serde_json::{json, Value};

const SECS: Duration = Duration::from_secs(10);
const MESSAGES: usize = 200;

/// An instance subscribed to `jobs/#` in group `workers`: through the raw `$share` filter,
/// or (`sdk`) through `Context::mqtt_subscribe_shared`.
fn instance(broker: &Mosquitto, plugins: &PluginDir, sdk: bool) -> Host {
    let host = Host::builder(plugins.path())
        .name("shared_svc")
        .without_amqp()
        .mqtt(broker.port)
        .start();
    assert!(wait_until(SECS, || host.get("/_service/health").status() == 200));
    let body = match sdk {
        true => json!({"filter": "jobs/#", "group": "workers", "tag": "shared"}),
        false => json!({"filter": "$share/workers/jobs/#", "tag": "shared"}),
    };
    let answer: Value = host.post_json("/kit/mqtt/subscribe", body).json().unwrap();
    assert_eq!(answer["index"], 0, "{answer}");
    host
}

/// The `n` fields of the JSON messages `host` handled.
fn handled(host: &Host) -> Vec<u64> {
    let list: Vec<Value> = host.get("/kit/mqtt/received").json().unwrap();
    list.iter()
        .filter_map(|m| m["json"]["n"].as_u64())
        .collect()
}

#[test]
fn two_instances_on_a_shared_subscription_handle_each_message_once_between_them() {
    split_between_two(false);
}

#[test]
fn two_instances_in_an_sdk_group_handle_each_message_once_between_them() {
    split_between_two(true);
}

fn split_between_two(sdk: bool) {
    let rt = runtime();
    let broker = Mosquitto::start();
    let plugins = PluginDir::with(&["testkit-plugin"]);
    let (a, b) = (
        instance(&broker, &plugins, sdk),
        instance(&broker, &plugins, sdk),
    );
    let peer = rt.block_on(Peer::connect(broker.port, &[]));
    rt.block_on(async {
        for n in 0..MESSAGES {
            let topic = format!("jobs/{}", n % 7);
            let body = json!({ "n": n }).to_string();
            peer.client
                .publish(topic, QoS::AtLeastOnce, false, body)
                .await
                .unwrap();
        }
        // The sentinel: sent last, so once it is handled every job before it was too.
        peer.client
            .publish("jobs/end", QoS::AtLeastOnce, false, r#"{"n": 1000000}"#)
            .await
            .unwrap();
    });
    let all_in = wait_until(SECS, || {
        let (x, y) = (handled(&a), handled(&b));
        x.len() + y.len() > MESSAGES
    });
    let (x, y) = (handled(&a), handled(&b));
    assert!(all_in, "only {} + {} handled", x.len(), y.len());
    let mut both: Vec<u64> = x.iter().chain(&y).copied().collect();
    both.sort_unstable();
    let expected: Vec<u64> = (0..MESSAGES as u64).chain([1_000_000]).collect();
    assert_eq!(both, expected, "each message exactly once between the two");
    assert!(
        !x.is_empty() && !y.is_empty(),
        "both instances take part: {} and {}",
        x.len(),
        y.len()
    );
}
