//! A publish the broker refuses for now (a nack) is an error the plugin sees, of the kind
//! the SDK's `Retry` tries again; once the broker takes messages again, the retried publish
//! gets through. The broker refuses because the only queue bound to the exchange is full and
//! set to reject publishes (`x-overflow: reject-publish`), as a queue without its quorum
//! would.

use std::time::Duration;

use integration_tests::{amqp, runtime, testkit_host as kit};
use lapin::{
    options::{QueueBindOptions, QueueDeclareOptions, QueuePurgeOptions},
    types::{AMQPValue, FieldTable},
    ExchangeKind,
};
use serde_json::{json, Value};

/// A topic exchange with one queue that holds a single message and nacks the rest.
async fn full_queue(peer: &amqp::Peer, exchange: &str, queue: &str) {
    peer.declare_like_original(exchange, ExchangeKind::Topic)
        .await;
    let ch = &peer.ch;
    let mut args = FieldTable::default();
    args.insert("x-max-length".into(), AMQPValue::LongInt(1));
    args.insert(
        "x-overflow".into(),
        AMQPValue::LongString("reject-publish".into()),
    );
    let options = QueueDeclareOptions {
        auto_delete: true,
        ..Default::default()
    };
    ch.queue_declare(queue, options, args).await.expect("queue");
    ch.queue_bind(
        queue,
        exchange,
        "#",
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .expect("bind");
}

fn publish(host: &integration_tests::Host, exchange: &str, retry: Option<u32>) -> Value {
    let mut body = json!({"exchange": exchange, "routing": "r", "message": {"n": 1}});
    if let Some(attempts) = retry {
        body["retry"] = json!(attempts);
    }
    host.post_json("/kit/bus/publish", body).json().unwrap()
}

#[test]
fn a_nacked_publish_is_an_unavailable_error_and_a_retry_gets_it_through() {
    let rt = runtime();
    let peer = rt.block_on(amqp::Peer::connect());
    let exchange = amqp::unique("ex-nack");
    let queue = amqp::unique("q-nack");
    rt.block_on(full_queue(&peer, &exchange, &queue));
    let (host, _dir) = kit("", &[]);

    assert_eq!(
        publish(&host, &exchange, None)["ok"],
        true,
        "the first fits"
    );
    // Full: the broker nacks, and the plugin sees it as an error that can pass later.
    let refused = publish(&host, &exchange, None);
    assert_eq!(refused["ok"], false, "{refused}");
    assert_eq!(refused["kind"], "Unavailable", "{refused}");
    assert_eq!(refused["unavailable"], true, "{refused}");
    assert!(
        refused["error"].as_str().unwrap_or("").contains("nacked"),
        "{refused}"
    );
    // Bounded retries that all meet the full queue: the error says how many were made.
    let gave_up = publish(&host, &exchange, Some(2));
    assert_eq!(gave_up["kind"], "Unavailable", "{gave_up}");
    assert!(
        gave_up["error"]
            .as_str()
            .unwrap_or("")
            .contains("after 2 attempts"),
        "{gave_up}"
    );

    // A retried publish started while the queue is full gets through once it is emptied.
    let retried = std::thread::scope(|scope| {
        let publishing = scope.spawn(|| publish(&host, &exchange, Some(30)));
        std::thread::sleep(Duration::from_millis(300));
        rt.block_on(peer.ch.queue_purge(&queue, QueuePurgeOptions::default()))
            .expect("purge");
        publishing.join().expect("publishing thread")
    });
    assert_eq!(retried["ok"], true, "{retried}");
    let count = rt
        .block_on(peer.ch.queue_declare(
            &queue,
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        ))
        .expect("queue")
        .message_count();
    assert_eq!(count, 1, "the retried message is in the queue");
}
