//! Broker down at boot, through the real host. This stops the broker app, so it is one test
//! in its own binary: cargo runs test binaries one at a time, so no other test sees the
//! outage. A guard restarts the app even if an assertion fails.

use std::{process::Command, time::Duration};

use integration_tests::{
    amqp::{self, SyncPeer},
    testkit_host, wait_until,
};
use serde_json::{json, Value};

fn rabbitmqctl(args: &[&str]) {
    let out = Command::new("rabbitmqctl")
        .args(args)
        .output()
        .expect("rabbitmqctl");
    assert!(
        out.status.success(),
        "rabbitmqctl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

struct StartAppOnDrop;

impl Drop for StartAppOnDrop {
    fn drop(&mut self) {
        let _ = Command::new("rabbitmqctl").arg("start_app").output();
    }
}

#[test]
fn broker_down_at_boot_then_up() {
    let _guard = StartAppOnDrop;
    let exchange = amqp::unique("ex-outage");
    rabbitmqctl(&["stop_app"]);

    let (host, _dir) = testkit_host(&exchange, &["--eventbus-publish-timeout", "3", "--debug"]);
    // HTTP serves; the bus is reported down; publishing fails fast as unavailable.
    assert_eq!(host.get("/_service/status").status(), 200);
    let (status, body) = host.health();
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["eventbus"]["state"], "connecting");
    let res: Value = host
        .client
        .post(host.url("/kit/bus/publish"))
        .json(&json!({"exchange": exchange, "routing": "k", "message": 1}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(res["unavailable"], true, "{res}");
    // A subscription made during the outage is kept pending too.
    host.client
        .post(host.url("/kit/bus/subscribe"))
        .json(&json!({"exchange": exchange, "routing": "late.#", "tag": "late"}))
        .send()
        .unwrap();
    // The retries show as debug lines (the sentinel); the warning comes once.
    let retried = wait_until(Duration::from_secs(10), || {
        let retries = ["DEBUG", "Connection error in event bus listener"];
        host.stderr.count(&retries) >= 3
    });
    assert!(retried, "{}", host.stderr.text());
    let warnings = host.stderr.count(&["WARNING", "listener"]);
    assert_eq!(warnings, 1, "warned once:\n{}", host.stderr.text());

    rabbitmqctl(&["start_app"]);
    let up = wait_until(Duration::from_secs(30), || {
        let (status, body) = host.health();
        status == 200
            && body["eventbus"]["subscriptions"]
                .as_array()
                .is_some_and(|subs| subs.len() == 2 && subs.iter().all(|s| s["state"] == "active"))
    });
    assert!(up, "recovered: {}", host.health().1);

    let peer = SyncPeer::connect();
    peer.publish_json(&exchange, "late.one", &json!("hello"));
    let ok = wait_until(Duration::from_secs(15), || {
        host.get("/kit/bus/received")
            .json::<Vec<Value>>()
            .unwrap()
            .len()
            >= 2
    });
    assert!(
        ok,
        "both subscriptions got the message: {}",
        host.get("/kit/bus/received").text().unwrap()
    );
    // Exactly one consumer per subscription.
    let (_, body) = host.health();
    let rows = peer.block_on(amqp::list("queues", &["name", "consumers"]));
    for sub in body["eventbus"]["subscriptions"].as_array().unwrap() {
        let queue = sub["queue"].as_str().unwrap();
        let row = rows.iter().find(|r| r[0] == queue).expect("queue exists");
        assert_eq!(row[1], "1", "{row:?}");
    }
}
