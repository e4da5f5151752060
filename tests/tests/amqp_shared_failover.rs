//! A shared subscription through the loss of a cluster node, against a throw-away 3-node
//! RabbitMQ cluster (`scripts/rabbitmq-cluster`, loopback only). Two instances of one service
//! in one group, each given the three nodes (in different orders: one starts on node 1, the
//! other on node 2), consume the group's quorum queue; a publisher on node 3 (node 2 if need
//! be) sends a steady stream of confirmed messages. The node the first instance is on is
//! killed (node 1, unless a refused first connection already moved it on): the queue keeps a
//! majority, the instance that was on it moves to another node, both are healthy again and
//! both consume again, and every message the broker confirmed is handled — at least once: a
//! message handled twice (its ack lost with the node) must be flagged as a redelivery.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{Arc, Mutex},
    time::Duration,
};

use integration_tests::{
    amqp::{self, unique},
    cluster::RabbitCluster,
    runtime, testkit_received, wait_until, Host, PluginDir,
};
use lapin::{
    options::{BasicPublishOptions, ConfirmSelectOptions},
    publisher_confirm::Confirmation,
    BasicProperties, Channel, Connection, ConnectionProperties,
};
use serde_json::{json, Value};
use tokio::sync::watch;

const SECS: Duration = Duration::from_secs(30);
/// The stream's pace, and its bound (at most this many messages).
const PACE: Duration = Duration::from_millis(5);
const MAX_MESSAGES: u64 = 20_000;

/// A confirm channel on `url`, with `exchange` declared as the host declares it.
async fn confirm_channel(url: &str, exchange: &str) -> (Connection, Channel) {
    let props = ConnectionProperties::default()
        .with_executor(tokio_executor_trait::Tokio::current())
        .with_reactor(tokio_reactor_trait::Tokio);
    let conn = tokio::time::timeout(SECS, Connection::connect(url, props))
        .await
        .expect("publisher connect in time")
        .expect("publisher connect");
    let ch = conn.create_channel().await.expect("channel");
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirm mode");
    amqp::declare_like_original_on(&ch, exchange, lapin::ExchangeKind::Topic).await;
    (conn, ch)
}

/// Publishes `message` and waits for the broker's answer (≤ 30 s): true when it confirmed.
async fn publish_confirmed(ch: &Channel, exchange: &str, message: &Value) -> bool {
    let body = serde_json::to_vec(message).expect("JSON");
    let sent = async {
        let confirm = ch
            .basic_publish(
                exchange,
                "job",
                BasicPublishOptions::default(),
                &body,
                BasicProperties::default(),
            )
            .await
            .ok()?;
        matches!(confirm.await, Ok(Confirmation::Ack(_))).then_some(())
    };
    matches!(tokio::time::timeout(SECS, sent).await, Ok(Some(())))
}

/// The steady stream: `{"n": …}` every [`PACE`] until stopped; the `n` the broker confirmed.
struct Stream {
    confirmed: Arc<Mutex<BTreeSet<u64>>>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<Channel>,
}

impl Stream {
    fn start(rt: &tokio::runtime::Runtime, ch: Channel, exchange: &str) -> Stream {
        let confirmed: Arc<Mutex<BTreeSet<u64>>> = Arc::default();
        let stop = watch::channel(false).0;
        let (mut stopped, exchange, record) =
            (stop.subscribe(), exchange.to_owned(), confirmed.clone());
        let task = rt.spawn(async move {
            let mut tick = tokio::time::interval(PACE);
            for n in 0..MAX_MESSAGES {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = stopped.changed() => break,
                }
                if publish_confirmed(&ch, &exchange, &json!({ "n": n })).await {
                    record.lock().unwrap().insert(n);
                }
            }
            ch
        });
        Stream {
            confirmed,
            stop,
            task,
        }
    }

    fn confirmed(&self) -> usize {
        self.confirmed.lock().unwrap().len()
    }

    /// Stops the stream; its channel and what the broker confirmed.
    fn stop(self, rt: &tokio::runtime::Runtime) -> (Channel, BTreeSet<u64>) {
        self.stop.send_replace(true);
        let ch = rt.block_on(self.task).expect("publisher task");
        let confirmed = self.confirmed.lock().unwrap().clone();
        (ch, confirmed)
    }
}

/// An instance of `service` in `group`, subscribed to `exchange` with `#`, given `nodes`.
fn instance(
    plugins: &PluginDir,
    service: &str,
    exchange: &str,
    group: &str,
    nodes: &[String],
) -> Host {
    Host::builder(plugins.path())
        .name(service)
        .without_amqp()
        .args(&[
            "--testkit-exchange",
            exchange,
            "--testkit-group",
            group,
            "--testkit-prefetch",
            "10",
            "--eventbus-reconnect-interval",
            "0.2",
            "--eventbus-url",
            &nodes.join(","),
        ])
        .start()
}

/// The node (1..3) `host` is on while it answers 200 with its subscription active; `shown`
/// is each node's URL as health shows it.
fn healthy_on(host: &Host, shown: &[String; 3]) -> Option<usize> {
    let (status, health) = host.health();
    let active = health["eventbus"]["subscriptions"][0]["state"] == "active";
    let broker = health["eventbus"]["broker"].as_str()?;
    let node = shown.iter().position(|url| url == broker)? + 1;
    (status == 200 && active).then_some(node)
}

/// What `host`'s handler got: `(n, redelivered)` of each stream message; sentinels apart.
fn handled(host: &Host) -> (Vec<(u64, bool)>, usize) {
    let entries = testkit_received(host);
    let stream = entries
        .iter()
        .filter_map(|e| Some((e["message"]["n"].as_u64()?, e["redelivered"] == true)))
        .collect();
    let sentinels = entries
        .iter()
        .filter(|e| e["message"]["sentinel"].is_u64())
        .count();
    (stream, sentinels)
}

#[test]
fn a_shared_queue_survives_the_node_one_instance_uses_and_every_confirmed_message_is_handled() {
    let rt = runtime();
    let cluster = RabbitCluster::start();
    let (service, exchange, group) = (unique("svc"), unique("jobs"), unique("workers"));
    let url = |n: usize| cluster.url(n);
    let shown = cluster
        .ports
        .map(|port| format!("amqp://guest:***@127.0.0.1:{port}/%2f"));
    let plugins = PluginDir::with(&["testkit-plugin"]);
    let a = instance(
        &plugins,
        &service,
        &exchange,
        &group,
        &[url(1), url(2), url(3)],
    );
    let b = instance(
        &plugins,
        &service,
        &exchange,
        &group,
        &[url(2), url(3), url(1)],
    );
    // Each on the first node of its list, unless that node refused a first connection.
    let mut a_on = None;
    assert!(
        wait_until(SECS, || {
            a_on = healthy_on(&a, &shown);
            a_on.is_some() && healthy_on(&b, &shown).is_some()
        }),
        "{:?}\n{:?}\n{}",
        a.health(),
        b.health(),
        a.stderr.text()
    );
    let killed = a_on.expect("a is on a node");
    let publisher_on = if killed == 3 { 2 } else { 3 };
    let (_publisher, ch) = rt.block_on(confirm_channel(&url(publisher_on), &exchange));
    let stream = Stream::start(&rt, ch, &exchange);
    // The stream flows, and both take part, before the kill.
    let both = wait_until(SECS, || {
        stream.confirmed() >= 100 && !handled(&a).0.is_empty() && !handled(&b).0.is_empty()
    });
    assert!(
        both,
        "{} confirmed, {} / {} handled",
        stream.confirmed(),
        handled(&a).0.len(),
        handled(&b).0.len()
    );

    cluster.kill(killed);
    let survives = |host: &Host| healthy_on(host, &shown).is_some_and(|node| node != killed);
    let moved = wait_until(SECS, || survives(&a) && survives(&b));
    assert!(
        moved,
        "{:?}\n{:?}\n{}",
        a.health(),
        b.health(),
        a.stderr.text()
    );
    // The stream goes on for a while after the move, then stops.
    let before = stream.confirmed();
    assert!(
        wait_until(SECS, || stream.confirmed() >= before + 200),
        "the stream stalled after the kill at {before} confirmed"
    );
    let (ch, confirmed) = stream.stop(&rt);

    // Sentinels until each instance handled one: both consume again, on surviving nodes.
    let mut sentinels = 0u64;
    let both_back = wait_until(SECS, || {
        if handled(&a).1 > 0 && handled(&b).1 > 0 {
            return true;
        }
        if sentinels < 100 {
            assert!(rt.block_on(publish_confirmed(
                &ch,
                &exchange,
                &json!({ "sentinel": sentinels })
            )));
            sentinels += 1;
        }
        false
    });
    assert!(
        both_back,
        "after {sentinels} sentinels: {:?} / {:?}",
        handled(&a).1,
        handled(&b).1
    );

    // Every confirmed message handled, at least once; each one handled again is a redelivery.
    let all_in = wait_until(SECS, || {
        let (x, y) = (handled(&a).0, handled(&b).0);
        let seen: BTreeSet<u64> = x.iter().chain(&y).map(|(n, _)| *n).collect();
        confirmed.is_subset(&seen)
    });
    let (x, y) = (handled(&a).0, handled(&b).0);
    let mut copies: BTreeMap<u64, (u32, u32)> = BTreeMap::new();
    for (n, redelivered) in x.iter().chain(&y) {
        let entry = copies.entry(*n).or_default();
        entry.0 += 1;
        entry.1 += u32::from(*redelivered);
    }
    let lost: Vec<&u64> = confirmed
        .iter()
        .filter(|n| !copies.contains_key(n))
        .collect();
    assert!(
        all_in && lost.is_empty(),
        "confirmed, never handled: {lost:?}"
    );
    let unflagged: Vec<(&u64, &(u32, u32))> = copies
        .iter()
        .filter(|(_, (handled, flagged))| *flagged < handled - 1)
        .collect();
    assert!(
        unflagged.is_empty(),
        "handled again without the redelivered flag: {unflagged:?}"
    );
    let doubles: u32 = copies.values().map(|(handled, _)| handled - 1).sum();
    eprintln!(
        "{} confirmed, {} handled by a and {} by b, {doubles} handled twice (redelivered)",
        confirmed.len(),
        x.len(),
        y.len()
    );
    assert_eq!(a.health().0, 200);
    assert_eq!(b.health().0, 200);
}
