//! AMQP broker lists against a throw-away 3-node RabbitMQ cluster (`scripts/rabbitmq-cluster`,
//! loopback only): the host is given nodes 1 and 2, connects to node 1, and when node 1 is
//! killed moves to node 2: health is back to 200 showing node 2, the plugin's subscription
//! is restored there, and every publish the broker confirmed through the plugin's route
//! reaches a consumer on node 3, which survives.

use std::{collections::HashSet, time::Duration};

use futures::StreamExt;
use integration_tests::{
    amqp::{self, unique},
    cluster::RabbitCluster,
    runtime, testkit_received, wait_until, Host, PluginDir,
};
use lapin::{
    options::{BasicConsumeOptions, QueueBindOptions, QueueDeclareOptions},
    types::FieldTable,
    Connection, ConnectionProperties,
};
use serde_json::{json, Value};
use tokio::sync::mpsc;

const SECS: Duration = Duration::from_secs(30);

/// A consumer on `url` of everything on `exchange` (declared like the host does), its
/// messages' bodies in the channel. The connection lives as long as the runtime.
async fn consume(url: &str, exchange: &str) -> mpsc::UnboundedReceiver<Value> {
    let props = ConnectionProperties::default()
        .with_executor(tokio_executor_trait::Tokio::current())
        .with_reactor(tokio_reactor_trait::Tokio);
    let conn = tokio::time::timeout(SECS, Connection::connect(url, props))
        .await
        .expect("consumer connect in time")
        .expect("consumer connect");
    let ch = conn.create_channel().await.expect("channel");
    amqp::declare_like_original_on(&ch, exchange, lapin::ExchangeKind::Topic).await;
    let queue = ch
        .queue_declare(
            "",
            QueueDeclareOptions {
                exclusive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("queue");
    ch.queue_bind(
        queue.name().as_str(),
        exchange,
        "#",
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .expect("bind");
    let mut consumer = ch
        .basic_consume(
            queue.name().as_str(),
            "",
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("consume");
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let _conn = conn; // kept open while the consumer runs
        while let Some(Ok(delivery)) = consumer.next().await {
            let body = serde_json::from_slice(&delivery.data).unwrap_or(Value::Null);
            if tx.send(body).is_err() {
                break;
            }
        }
    });
    rx
}

fn health(host: &Host) -> (u16, Value) {
    host.health()
}

/// Publishes `message` through the testkit plugin's route; true when the broker confirmed it.
fn publish(host: &Host, exchange: &str, message: Value) -> bool {
    let answer: Value = host
        .post_json(
            "/kit/bus/publish",
            json!({"exchange": exchange, "routing": "n", "message": message}),
        )
        .json()
        .expect("publish answer");
    answer["ok"] == true
}

#[test]
fn killing_the_node_in_use_moves_the_host_to_the_next_one_and_loses_no_confirmed_publish() {
    let rt = runtime();
    let cluster = RabbitCluster::start();
    let exchange = unique("failover");
    let mut consumer = rt.block_on(consume(&cluster.url(3), &exchange));
    let plugins = PluginDir::with(&["testkit-plugin"]);
    let host = Host::builder(plugins.path())
        .without_amqp()
        .args(&[
            "--testkit-exchange",
            &exchange,
            "--eventbus-reconnect-interval",
            "0.2",
        ])
        .args(&[
            "--eventbus-url",
            &format!("{},{}", cluster.url(1), cluster.url(2)),
        ])
        .start();
    let shown = |n: usize| format!("amqp://guest:***@127.0.0.1:{}/%2f", cluster.ports[n - 1]);
    let on_node = |n: usize| {
        let want = shown(n);
        wait_until(SECS, || {
            let (status, health) = health(&host);
            status == 200
                && health["eventbus"]["broker"] == want.as_str()
                && health["eventbus"]["listener"]["broker"] == want.as_str()
                && health["eventbus"]["subscriptions"][0]["state"] == "active"
        })
    };
    assert!(on_node(1), "{:?}\n{}", health(&host), host.stderr.text());
    let metrics = host.get("/_service/metrics").text().unwrap();
    let series = |n: usize| {
        format!(
            "eventbus_broker_info{{bus=\"amqp\",connection=\"listener\",broker=\"{}\"}} 1",
            shown(n)
        )
    };
    assert!(metrics.contains(&series(1)), "{metrics}");

    // Publishes before, during and after the loss of node 1; those the broker confirmed
    // must all reach the consumer on node 3.
    let mut confirmed = HashSet::new();
    for n in 0..20 {
        if publish(&host, &exchange, json!(n)) {
            confirmed.insert(n);
        }
    }
    assert_eq!(confirmed.len(), 20, "all confirmed while node 1 is up");
    cluster.kill(1);
    let mut n = 20;
    let moved = wait_until(SECS, || {
        if publish(&host, &exchange, json!(n)) {
            confirmed.insert(n);
        }
        n += 1;
        let (status, health) = health(&host);
        status == 200 && health["eventbus"]["broker"] == shown(2).as_str()
    });
    assert!(moved, "{:?}\n{}", health(&host), host.stderr.text());
    assert!(on_node(2), "{:?}", health(&host));
    for _ in 0..20 {
        if publish(&host, &exchange, json!(n)) {
            confirmed.insert(n);
        }
        n += 1;
    }
    let mut seen = HashSet::new();
    rt.block_on(async {
        while !confirmed.is_subset(&seen) {
            match tokio::time::timeout(SECS, consumer.recv()).await {
                Ok(Some(body)) => {
                    seen.insert(body.as_i64().unwrap_or(-1) as i32);
                }
                _ => break,
            }
        }
    });
    let lost: Vec<_> = confirmed.difference(&seen).collect();
    assert!(lost.is_empty(), "confirmed but never delivered: {lost:?}");

    // The subscription is restored on node 2: a marker published now reaches the handler.
    assert!(publish(&host, &exchange, json!("marker")));
    assert!(
        wait_until(SECS, || testkit_received(&host)
            .iter()
            .any(|m| m["message"] == "marker")),
        "{}",
        host.stderr.text()
    );
    let health_text = host.get("/_service/health").text().unwrap();
    assert!(!health_text.contains("guest:guest"), "{health_text}");
    let metrics = host.get("/_service/metrics").text().unwrap();
    assert!(metrics.contains(&series(2)), "{metrics}");
    assert!(
        !metrics.contains(&series(1)),
        "node 1 no longer in use: {metrics}"
    );
    std::mem::forget(plugins);
}
