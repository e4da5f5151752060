//! Shared and durable AMQP subscriptions against the machine's RabbitMQ, through the testkit
//! plugin: two instances of one service in a group split the messages; a killed instance's
//! unacknowledged message goes to the other, flagged as a redelivery; what is published while
//! a durable subscriber is stopped waits for its restart; a reload under a steady stream of
//! messages loses and doubles none. The named queues these tests make are durable: each is
//! deleted by a guard when its test ends.

use std::{collections::BTreeMap, thread, time::Duration};

use integration_tests::{
    amqp::{self, QueueGuard},
    testkit_numbers, testkit_received, wait_until, Host, PluginDir,
};
use serde_json::{json, Value};

const SECS: Duration = Duration::from_secs(20);

/// A testkit host named `name`, subscribed at startup to `exchange` with `#` and `sharing`
/// arguments (`--testkit-group`, `--testkit-durable`, …).
fn instance(plugins: &PluginDir, name: &str, exchange: &str, sharing: &[&str]) -> Host {
    Host::builder(plugins.path())
        .name(name)
        .args(&[
            "--testkit-exchange",
            exchange,
            "--eventbus-reconnect-interval",
            "0.2",
        ])
        .args(sharing)
        .start()
}

/// The number of consumers of `queue` (0 when it does not exist).
fn consumers(peer: &amqp::SyncPeer, queue: &str) -> u32 {
    peer.block_on(amqp::list("queues", &["name", "consumers"]))
        .into_iter()
        .find(|row| row.first().map(String::as_str) == Some(queue))
        .and_then(|row| row.get(1)?.trim().parse().ok())
        .unwrap_or(0)
}

/// Waits until `queue` has `n` consumers.
fn wait_consumers(peer: &amqp::SyncPeer, queue: &str, n: u32) {
    let reached = wait_until(SECS, || consumers(peer, queue) == n);
    assert!(
        reached,
        "{queue} has {} consumers, not {n}",
        consumers(peer, queue)
    );
}

#[test]
fn two_instances_in_a_group_handle_each_message_once_between_them() {
    const MESSAGES: u64 = 100;
    let plugins = PluginDir::with(&["testkit-plugin"]);
    let (service, exchange, group) = (
        amqp::unique("svc"),
        amqp::unique("jobs"),
        amqp::unique("workers"),
    );
    let queue = format!("{group}:{exchange}:#");
    let _guard = QueueGuard(queue.clone());
    let sharing = ["--testkit-group", &group, "--testkit-prefetch", "1"];
    let a = instance(&plugins, &service, &exchange, &sharing);
    let b = instance(&plugins, &service, &exchange, &sharing);
    let peer = amqp::SyncPeer::connect();
    wait_consumers(&peer, &queue, 2);
    for n in 0..MESSAGES {
        peer.publish_json(&exchange, &format!("job.{}", n % 5), &json!({ "n": n }));
    }
    let all_in = wait_until(SECS, || {
        testkit_numbers(&testkit_received(&a)).len() + testkit_numbers(&testkit_received(&b)).len()
            >= MESSAGES as usize
    });
    // Sentinels until each instance handled one: whatever either handled of the jobs
    // published before is recorded by then.
    let mut sentinels = 0;
    let both_flushed = wait_until(SECS, || {
        let seen = |host: &Host| {
            testkit_received(host)
                .iter()
                .any(|entry| entry["message"]["sentinel"].is_u64())
        };
        if seen(&a) && seen(&b) {
            return true;
        }
        if sentinels < 50 {
            peer.publish_json(&exchange, "end", &json!({ "sentinel": sentinels }));
            sentinels += 1;
        }
        false
    });
    let (x, y) = (
        testkit_numbers(&testkit_received(&a)),
        testkit_numbers(&testkit_received(&b)),
    );
    assert!(all_in && both_flushed, "{} + {} handled", x.len(), y.len());
    let mut both: Vec<u64> = x.iter().chain(&y).copied().collect();
    both.sort_unstable();
    assert_eq!(
        both,
        (0..MESSAGES).collect::<Vec<_>>(),
        "each message exactly once between the two"
    );
    assert!(
        !x.is_empty() && !y.is_empty(),
        "both take part: {x:?} {y:?}"
    );
    let (_, health) = a.health();
    let text = health.to_string();
    assert!(
        text.contains(&queue),
        "health names the shared queue: {text}"
    );
}

#[test]
fn a_killed_instances_unacknowledged_message_goes_to_the_other_as_a_redelivery() {
    let plugins = PluginDir::with(&["testkit-plugin"]);
    let (service, exchange, group) = (
        amqp::unique("svc"),
        amqp::unique("jobs"),
        amqp::unique("workers"),
    );
    let queue = format!("{group}:{exchange}:#");
    let _guard = QueueGuard(queue.clone());
    let sharing = ["--testkit-group", &group, "--testkit-prefetch", "1"];
    let mut a = instance(&plugins, &service, &exchange, &sharing);
    let peer = amqp::SyncPeer::connect();
    wait_consumers(&peer, &queue, 1);
    // Only `a` consumes: the job is its, and its handler holds it.
    peer.publish_json(&exchange, "job.1", &json!("hold:60000"));
    let holding = wait_until(SECS, || {
        let list: Vec<Value> = a.get("/kit/bus/holding").json().unwrap();
        !list.is_empty()
    });
    assert!(holding, "a never started on the job");
    let b = instance(&plugins, &service, &exchange, &sharing);
    wait_consumers(&peer, &queue, 2);
    a.signal(libc::SIGKILL);
    assert!(a.wait_exit(SECS).is_some(), "a did not die");
    let redelivered = wait_until(SECS, || {
        testkit_received(&b)
            .iter()
            .any(|entry| entry["message"] == "hold:60000")
    });
    assert!(
        redelivered,
        "b never got the job: {:?}",
        testkit_received(&b)
    );
    let entries = testkit_received(&b);
    let entry = entries
        .iter()
        .find(|entry| entry["message"] == "hold:60000")
        .unwrap();
    assert_eq!(entry["redelivered"], true, "{entry}");
    // A quorum queue counts the delivery that died with `a`.
    assert!(entry["delivery_count"].as_u64() >= Some(1), "{entry}");
}

#[test]
fn what_is_published_while_a_durable_subscriber_is_stopped_reaches_it_at_restart() {
    const MESSAGES: u64 = 20;
    let plugins = PluginDir::with(&["testkit-plugin"]);
    let (service, exchange) = (amqp::unique("svc"), amqp::unique("ex"));
    let queue = format!("{service}:{exchange}:#");
    let _guard = QueueGuard(queue.clone());
    let durable = ["--testkit-durable"];
    let mut first = instance(&plugins, &service, &exchange, &durable);
    let peer = amqp::SyncPeer::connect();
    wait_consumers(&peer, &queue, 1);
    assert!(first.stop().success());
    assert!(peer.queue_exists(&queue), "the queue outlives its consumer");
    for n in 0..MESSAGES {
        peer.publish_json(&exchange, &format!("k.{n}"), &json!({ "n": n }));
    }
    let second = instance(&plugins, &service, &exchange, &durable);
    let all_in = wait_until(SECS, || {
        testkit_numbers(&testkit_received(&second)).len() >= MESSAGES as usize
    });
    let got = testkit_numbers(&testkit_received(&second));
    assert!(all_in, "only {got:?} reached the restarted service");
    assert_eq!(
        got,
        (0..MESSAGES).collect::<Vec<_>>(),
        "all, in order, once"
    );
}

#[test]
fn a_reload_under_a_steady_stream_on_a_durable_subscription_loses_and_doubles_none() {
    const MESSAGES: u64 = 300;
    let plugins = PluginDir::with(&["testkit-plugin"]);
    let (service, exchange, echo) = (
        amqp::unique("svc"),
        amqp::unique("ex"),
        amqp::unique("echo"),
    );
    let queue = format!("{service}:{exchange}:#");
    let _guard = QueueGuard(queue.clone());
    let peer = amqp::SyncPeer::connect();
    // Every handled message is published again to `echo` by the handler, whichever
    // generation handled it: the test counts there.
    peer.declare_like_original(&echo, lapin::ExchangeKind::Topic);
    let mut echoes = peer.consume(&echo, "#");
    let host = instance(
        &plugins,
        &service,
        &exchange,
        &["--testkit-durable", "--testkit-echo", &echo],
    );
    wait_consumers(&peer, &queue, 1);
    let publisher = {
        let exchange = exchange.clone();
        thread::spawn(move || {
            let peer = amqp::SyncPeer::connect();
            for n in 0..MESSAGES {
                peer.publish_json(&exchange, "steady", &json!({ "n": n }));
                thread::sleep(Duration::from_millis(5));
            }
        })
    };
    let mut counts: BTreeMap<u64, u32> = BTreeMap::new();
    let mut note = |delivery: lapin::message::Delivery| -> Value {
        let entry: Value = serde_json::from_slice(&delivery.data).expect("echo JSON");
        if let Some(n) = entry["message"]["n"].as_u64() {
            *counts.entry(n).or_default() += 1;
        }
        entry
    };
    // The reload starts once the stream is well under way.
    for _ in 0..20 {
        note(echoes.recv(SECS, "an echo before the reload"));
    }
    host.signal(libc::SIGHUP);
    host.wait_reloads((1, 0));
    publisher.join().expect("publisher");
    // The sentinel comes after every message and after the reload: the old generation is
    // gone, so the new one handles it after all the others.
    peer.publish_json(&exchange, "steady", &json!({ "sentinel": true }));
    for _ in 0..(2 * MESSAGES) {
        let entry = note(echoes.recv(SECS, "the echoes up to the sentinel"));
        if entry["message"]["sentinel"] == true {
            break;
        }
    }
    let missing: Vec<u64> = (0..MESSAGES).filter(|n| !counts.contains_key(n)).collect();
    let doubled: Vec<(&u64, &u32)> = counts.iter().filter(|(_, c)| **c > 1).collect();
    assert!(missing.is_empty(), "lost: {missing:?}");
    assert!(doubled.is_empty(), "handled twice: {doubled:?}");
    assert_eq!(counts.len() as u64, MESSAGES);
}
