//! A shared subscription's delivery limit and dead-letter exchange against the machine's
//! RabbitMQ (unique names): a poison message whose handler never returns goes back to the
//! group's quorum queue each time the instance holding it dies, flagged as a redelivery with
//! the broker's count, until it went back more often than the delivery limit; then the
//! broker dead-letters it, and the test's own consumer of a queue bound to the dead-letter
//! exchange receives it with the broker's `x-death` header. A good message published after
//! it is handled by the next instance.

use std::time::Duration;

use integration_tests::{
    amqp::{self, QueueGuard},
    testkit_received, wait_until, Host, PluginDir,
};
use lapin::types::{AMQPValue, FieldTable};
use serde_json::{json, Value};

const SECS: Duration = Duration::from_secs(20);
/// The subscription's `delivery_limit`: the broker dead-letters a message once it went
/// back to the queue more often than this, so the poison kills `LIMIT + 1` instances.
const LIMIT: u32 = 2;
const POISON: &str = "stall:60000";

/// An instance of `service` subscribed, through the testkit's route, in `group` to
/// `exchange` with `#`: prefetch 1, the delivery limit and `dead_letters` as its
/// dead-letter exchange; returns once the subscription is consuming.
fn instance(plugins: &PluginDir, service: &str, subscription: &Value) -> Host {
    let host = Host::builder(plugins.path())
        .name(service)
        .args(&["--eventbus-reconnect-interval", "0.2"])
        .start();
    let answer: Value = host
        .post_json("/kit/bus/subscribe", subscription.clone())
        .json()
        .expect("subscribe answer");
    assert_eq!(answer["ready"], true, "{answer}\n{}", host.stderr.text());
    host
}

/// The messages `host`'s handler started on and is still holding.
fn holding(host: &Host) -> Vec<Value> {
    host.get("/kit/bus/holding").json().expect("holding list")
}

/// A header of `delivery`, if it has it.
fn header<'a>(delivery: &'a lapin::message::Delivery, name: &str) -> Option<&'a AMQPValue> {
    delivery.properties.headers().as_ref()?.inner().get(name)
}

/// The first table of an `x-death` header.
fn first_death(value: &AMQPValue) -> Option<&FieldTable> {
    match value {
        AMQPValue::FieldArray(deaths) => match deaths.as_slice().first()? {
            AMQPValue::FieldTable(table) => Some(table),
            _ => None,
        },
        _ => None,
    }
}

/// A string field of an AMQP table.
fn text(table: &FieldTable, key: &str) -> Option<String> {
    match table.inner().get(key)? {
        AMQPValue::LongString(s) => Some(s.to_string()),
        AMQPValue::ShortString(s) => Some(s.as_str().to_owned()),
        _ => None,
    }
}

#[test]
fn a_poison_message_goes_round_until_the_delivery_limit_then_to_the_dead_letter_exchange() {
    let plugins = PluginDir::with(&["testkit-plugin"]);
    let (service, exchange, group, dead_letters) = (
        amqp::unique("svc"),
        amqp::unique("jobs"),
        amqp::unique("workers"),
        amqp::unique("dead"),
    );
    let queue = format!("{group}:{exchange}:#");
    let _guard = QueueGuard(queue.clone());
    let peer = amqp::SyncPeer::connect();
    // The dead-letter exchange is declared by whoever reads it: here the test.
    peer.declare_like_original(&dead_letters, lapin::ExchangeKind::Fanout);
    let mut dead = peer.consume(&dead_letters, "");
    let subscription = json!({
        "exchange": exchange,
        "routing": "#",
        "group": group,
        "prefetch": 1,
        "delivery_limit": LIMIT,
        "dead_letter_exchange": dead_letters,
        "ready": true,
    });

    // Each instance in turn gets the poison, holds it, and is killed.
    for death in 0..=LIMIT {
        let mut host = instance(&plugins, &service, &subscription);
        if death == 0 {
            peer.publish_json(&exchange, "job.poison", &json!(POISON));
        }
        assert!(
            wait_until(SECS, || !holding(&host).is_empty()),
            "instance {death} never started on the poison: {:?}",
            testkit_received(&host)
        );
        let entry = holding(&host).remove(0);
        assert_eq!(entry["message"], POISON, "{entry}");
        assert_eq!(entry["redelivered"], death > 0, "{entry}");
        if death > 0 {
            // A quorum queue counts the deliveries that died.
            assert_eq!(entry["delivery_count"], death, "{entry}");
        }
        host.signal(libc::SIGKILL);
        assert!(
            host.wait_exit(SECS).is_some(),
            "instance {death} did not die"
        );
    }

    // Over the limit: dead-lettered, with the broker's account of why.
    let delivery = dead.recv(SECS, "the poison, dead-lettered");
    let body: Value = serde_json::from_slice(&delivery.data).expect("JSON body");
    assert_eq!(body, POISON);
    let death = header(&delivery, "x-death")
        .and_then(first_death)
        .unwrap_or_else(|| panic!("no x-death header: {:?}", delivery.properties.headers()));
    assert_eq!(text(death, "reason").as_deref(), Some("delivery_limit"));
    assert_eq!(text(death, "queue").as_deref(), Some(queue.as_str()));
    assert_eq!(text(death, "exchange").as_deref(), Some(exchange.as_str()));
    let first = delivery.properties.headers().clone().unwrap_or_default();
    assert_eq!(
        text(&first, "x-first-death-reason").as_deref(),
        Some("delivery_limit")
    );

    // The queue goes on: the next instance handles a good message published after the
    // poison (with prefetch 1 it would be stuck on the poison if that were still queued).
    let host = instance(&plugins, &service, &subscription);
    peer.publish_json(&exchange, "job.good", &json!({ "good": 1 }));
    let handled = wait_until(SECS, || {
        testkit_received(&host)
            .iter()
            .any(|entry| entry["message"]["good"] == 1)
    });
    assert!(handled, "{:?}", testkit_received(&host));
    assert!(holding(&host).is_empty(), "the poison came back");
}
