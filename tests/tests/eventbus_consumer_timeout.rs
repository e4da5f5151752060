//! A slow consumer, its `consumer_timeout` part: a handler slower than the broker's consumer
//! timeout makes the broker close the consumer's channel; the host opens a fresh one and
//! consumption resumes. This lowers broker-wide settings, so it is one test in its own
//! binary (cargo runs test binaries one at a time); a guard restores them even if an
//! assertion fails.

use std::time::Duration;

use integration_tests::{
    amqp::{self, SyncPeer},
    testkit_host, testkit_received as received, wait_until, Host,
};
use serde_json::{json, Value};

fn subscription(host: &Host) -> Value {
    let body: Value = host.get("/_service/health").json().unwrap();
    body["eventbus"]["subscriptions"][0].clone()
}

/// The queue of the first subscription once it is active and `accept` likes its name.
fn active_queue(host: &Host, accept: impl Fn(&str) -> bool) -> String {
    let mut queue = None;
    let ok = wait_until(Duration::from_secs(20), || {
        let sub = subscription(host);
        queue = sub["queue"].as_str().map(str::to_owned);
        sub["state"] == "active" && queue.as_deref().is_some_and(&accept)
    });
    assert!(
        ok,
        "subscription: {}\n{}",
        subscription(host),
        host.stderr.text()
    );
    queue.unwrap_or_default()
}

#[test]
fn a_handler_past_the_consumer_timeout_gets_a_fresh_queue_and_consumption_resumes() {
    // The broker checks unacked deliveries on each channel tick: 1 s timeout, 0.2 s ticks.
    let settings =
        amqp::BrokerSettings::set(&[("consumer_timeout", 1000), ("channel_tick_interval", 200)]);
    let exchange = amqp::unique("ex-ctimeout");
    let (host, _dir) = testkit_host(&exchange, &[]);
    let first = active_queue(&host, |_| true);
    let peer = SyncPeer::connect();

    // The handler holds this delivery 2.5 s; the broker gives up on its ack after 1 s.
    peer.publish_json(&exchange, "slow", &json!("sleep:2500"));
    let stopped = format!("Consumer of event bus subscription <# @ {exchange}> stopped (");
    assert!(
        host.stderr.wait_for(&stopped, Duration::from_secs(15)),
        "{}",
        host.stderr.text()
    );
    assert!(
        host.stderr.text().contains("PRECONDITION_FAILED"),
        "{}",
        host.stderr.text()
    );
    let second = active_queue(&host, |queue| queue != first);
    // The old queue went: it held the requeued delivery and would have kept collecting.
    assert!(!peer.queue_exists(&first), "{first} still exists");
    assert!(peer.queue_exists(&second));

    peer.publish_json(&exchange, "after", &json!("after"));
    let ok = wait_until(Duration::from_secs(15), || {
        received(&host).iter().any(|m| m["message"] == "after")
    });
    assert!(ok, "{:?}\n{}", received(&host), host.stderr.text());
    // The slow message reached the handler once: it is not handed over again.
    let slow = received(&host)
        .iter()
        .filter(|m| m["message"] == "sleep:2500")
        .count();
    assert_eq!(slow, 1, "{:?}", received(&host));
    let status = host.get("/_service/health").status().as_u16();
    assert_eq!(status, 200, "{}", subscription(&host));
    drop(settings);
}
