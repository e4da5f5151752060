//! Eventbus against the real broker (127.0.0.1:5672): wire compatibility with
//! brewblox-service 0.20.0 in both directions, delivery behaviour, channel errors, shutdown.
//! Safe to run in parallel with other tests: every test uses its own exchange and connection
//! names and never stops the broker.

mod bus_support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use brewblox_host::bus::{BusState, EventBus, ExchangeKind, SubscriptionState};
use bus_support::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lazy_connections_health_and_clean_shutdown() {
    logs();
    let cfg = test_config("lazy");
    let name = cfg.connection_name.clone();
    let bus = EventBus::new(cfg, BusMetrics::detached());
    let ex = unique("lazy");

    let h = bus.health();
    assert_eq!(h.state, BusState::Disabled);
    assert!(h.subscriptions.is_empty());
    assert!(
        connections(&name).await.is_empty(),
        "nothing connects before use"
    );

    let (sink, mut rx) = ChanSink::new();
    let sub = bus
        .subscribe(&ex, "k", ExchangeKind::Topic, sink)
        .expect("subscribe");
    sub.wait_active(WAIT).await.expect("active");
    let conns = connections(&name).await;
    let names: Vec<_> = conns.iter().map(|c| c.1.clone()).collect();
    assert_eq!(names, vec![format!("{name}:listener")], "listener only");
    let h = bus.health();
    assert_eq!(h.state, BusState::Connected);
    assert_eq!(h.publisher.state, BusState::Disabled);
    assert_eq!(h.subscriptions.len(), 1);
    assert_eq!(h.subscriptions[0].state, "active");
    assert!(h.subscriptions[0]
        .queue
        .as_deref()
        .unwrap_or("")
        .starts_with("amq.gen-"));
    let j = serde_json::to_value(&h).expect("health json");
    assert_eq!(j["subscriptions"][0]["exchange_type"], "topic");

    bus.publish(&ex, "k", b"1".to_vec(), ExchangeKind::Topic, true)
        .await
        .expect("publish");
    assert_eq!(recv(&mut rx, WAIT, "own message").await.body, b"1");
    let mut names: Vec<_> = connections(&name).await.into_iter().map(|c| c.1).collect();
    names.sort();
    assert_eq!(
        names,
        vec![format!("{name}:listener"), format!("{name}:publisher")]
    );

    bus.shutdown(Duration::from_secs(2)).await;
    assert!(
        connections(&name).await.is_empty(),
        "shutdown leaves no connection"
    );
    assert_eq!(bus.health().state, BusState::Disabled);
    let err = bus
        .publish(&ex, "k", b"1".to_vec(), ExchangeKind::Topic, true)
        .await
        .expect_err("publish after shutdown");
    assert!(err.is_unavailable(), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wire_topology_matches_original() {
    logs();
    let bus = EventBus::new(test_config("topo"), BusMetrics::detached());
    let ex = unique("topo");
    let ex_pub = unique("topo-pub");
    let (sink, _rx) = ChanSink::new();
    let sub = bus
        .subscribe(&ex, "a.*", ExchangeKind::Topic, sink)
        .expect("subscribe");
    let queue = sub.wait_active(WAIT).await.expect("active");
    assert!(queue.starts_with("amq.gen-"), "server-named queue: {queue}");
    bus.publish(&ex_pub, "x", b"{}".to_vec(), ExchangeKind::Fanout, true)
        .await
        .expect("publish declares fanout");

    let exchanges = list(
        "exchanges",
        &["name", "type", "durable", "auto_delete", "arguments"],
    )
    .await;
    let row = |n: &str| {
        exchanges
            .iter()
            .find(|r| r[0] == n)
            .cloned()
            .unwrap_or_else(|| panic!("exchange {n} missing: {exchanges:?}"))
    };
    assert_eq!(row(&ex)[1..], ["topic", "false", "true", "[]"]);
    assert_eq!(row(&ex_pub)[1..], ["fanout", "false", "true", "[]"]);

    let queues = list(
        "queues",
        &["name", "exclusive", "durable", "auto_delete", "consumers"],
    )
    .await;
    let q = queues
        .iter()
        .find(|r| r[0] == queue)
        .unwrap_or_else(|| panic!("queue {queue} missing"));
    assert_eq!(q[1..], ["true", "false", "false", "1"]);

    let bindings = list(
        "bindings",
        &["source_name", "destination_name", "routing_key"],
    )
    .await;
    assert!(
        bindings
            .iter()
            .any(|b| b[0] == ex && b[1] == queue && b[2] == "a.*"),
        "binding missing: {bindings:?}"
    );

    bus.shutdown(Duration::from_secs(2)).await;
    let peer = Peer::connect().await;
    peer.delete_exchange(&ex_pub).await;
    peer.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topic_wildcards_follow_rabbitmq() {
    logs();
    let bus = EventBus::new(test_config("wild"), BusMetrics::detached());
    let ex = unique("wild");
    let (s1, mut star) = ChanSink::new();
    let (s2, mut hash) = ChanSink::new();
    let a1 = bus
        .subscribe(&ex, "a.*", ExchangeKind::Topic, s1)
        .expect("subscribe");
    let a2 = bus
        .subscribe(&ex, "a.#", ExchangeKind::Topic, s2)
        .expect("subscribe");
    a1.wait_active(WAIT).await.expect("a.* active");
    a2.wait_active(WAIT).await.expect("a.# active");

    let peer = Peer::connect().await;
    for key in ["a", "a.b", "a.b.c", "b.a", "a.end"] {
        peer.publish(&ex, key, key.as_bytes()).await;
    }
    let mut got_star = vec![];
    loop {
        let g = recv(&mut star, WAIT, "a.*").await;
        assert_eq!(g.sub, format!("<a.* @ {ex}>"));
        got_star.push(g.routing_key.clone());
        if g.routing_key == "a.end" {
            break;
        }
    }
    let mut got_hash = vec![];
    loop {
        let g = recv(&mut hash, WAIT, "a.#").await;
        got_hash.push(g.routing_key.clone());
        if g.routing_key == "a.end" {
            break;
        }
    }
    assert_eq!(got_star, ["a.b", "a.end"]);
    assert_eq!(got_hash, ["a", "a.b", "a.b.c", "a.end"]);
    peer.close().await;
    bus.shutdown(Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fanout_and_direct_exchanges() {
    logs();
    let bus = EventBus::new(test_config("fd"), BusMetrics::detached());
    let fan = unique("fan");
    let dir = unique("dir");
    let (fs, mut frx) = ChanSink::new();
    let (ds, mut drx) = ChanSink::new();
    let f = bus
        .subscribe(&fan, "ignored", ExchangeKind::Fanout, fs)
        .expect("subscribe");
    let d = bus
        .subscribe(&dir, "k1", ExchangeKind::Direct, ds)
        .expect("subscribe");
    f.wait_active(WAIT).await.expect("fanout active");
    d.wait_active(WAIT).await.expect("direct active");

    // Our own publisher must declare the same types without PRECONDITION_FAILED.
    bus.publish(&fan, "anything", b"1".to_vec(), ExchangeKind::Fanout, true)
        .await
        .expect("fanout publish");
    bus.publish(&dir, "k2", b"2".to_vec(), ExchangeKind::Direct, true)
        .await
        .expect("direct publish k2");
    bus.publish(&dir, "k1", b"3".to_vec(), ExchangeKind::Direct, true)
        .await
        .expect("direct publish k1");

    let g = recv(&mut frx, WAIT, "fanout").await;
    assert_eq!(
        (g.routing_key.as_str(), g.body.as_slice()),
        ("anything", &b"1"[..])
    );
    let g = recv(&mut drx, WAIT, "direct").await;
    assert_eq!(
        (g.routing_key.as_str(), g.body.as_slice()),
        ("k1", &b"3"[..])
    );
    assert_empty(&mut drx, "direct k2 must not match k1");
    bus.shutdown(Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_values_round_trip_both_directions() {
    logs();
    let bus = EventBus::new(test_config("json"), BusMetrics::detached());
    let ex = unique("json");
    let values = vec![
        json!({"b": true, "n": null, "f": 1.5, "u": "é", "nested": {"l": [1, 2, 3]}}),
        json!([1, "two", null]),
        json!("str"),
        json!(42),
        json!(-0.25),
        json!(true),
        json!(null),
    ];

    // Peer → bus: any JSON value arrives intact through the sink.
    let (sink, mut rx) = ChanSink::json();
    let sub = bus
        .subscribe(&ex, "in.#", ExchangeKind::Topic, sink)
        .expect("subscribe");
    sub.wait_active(WAIT).await.expect("active");
    let peer = Peer::connect().await;
    for (i, v) in values.iter().enumerate() {
        peer.publish(
            &ex,
            &format!("in.{i}"),
            &serde_json::to_vec(v).expect("json"),
        )
        .await;
    }
    for (i, v) in values.iter().enumerate() {
        let g = recv(&mut rx, WAIT, "peer → bus").await;
        assert_eq!(g.routing_key, format!("in.{i}"));
        let got: serde_json::Value = serde_json::from_slice(&g.body).expect("json");
        assert_eq!(&got, v);
    }

    // Bus → peer: identical bytes, no AMQP properties (as the original).
    let mut prx = peer.consume(&ex, "out.*").await;
    for v in &values {
        let bytes = serde_json::to_vec(v).expect("json");
        bus.publish(&ex, "out.x", bytes.clone(), ExchangeKind::Topic, true)
            .await
            .expect("publish");
        let d = recv(&mut prx, WAIT, "bus → peer").await;
        assert_eq!(d.data, bytes);
        assert_eq!(d.routing_key.as_str(), "out.x");
        assert_eq!(d.properties.content_type(), &None);
        assert_eq!(d.properties.delivery_mode(), &None);
        assert_eq!(d.properties.headers(), &None);
    }
    peer.close().await;
    bus.shutdown(Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_mib_message_round_trips() {
    logs();
    let bus = EventBus::new(test_config("big"), BusMetrics::detached());
    let ex = unique("big");
    let (sink, mut rx) = ChanSink::new();
    let sub = bus
        .subscribe(&ex, "big", ExchangeKind::Topic, sink)
        .expect("subscribe");
    sub.wait_active(WAIT).await.expect("active");
    let peer = Peer::connect().await;
    let mut prx = peer.consume(&ex, "big").await;

    // A JSON string of 1 MiB with a non-repeating pattern (checks ordering of frames too).
    let mut body = Vec::with_capacity(1 << 20);
    body.push(b'"');
    let mut x: u32 = 12345;
    while body.len() < (1 << 20) - 1 {
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
        body.push(b'a' + (x >> 16) as u8 % 26);
    }
    body.push(b'"');
    assert_eq!(body.len(), 1 << 20);

    bus.publish(&ex, "big", body.clone(), ExchangeKind::Topic, true)
        .await
        .expect("publish 1 MiB");
    let g = recv(&mut rx, WAIT, "bus sub").await;
    assert!(g.body == body, "bus subscriber got a different body");
    let d = recv(&mut prx, WAIT, "peer").await;
    assert!(d.data == body, "peer got a different body");

    // And from the peer to the bus.
    peer.publish(&ex, "big", &body).await;
    let g = recv(&mut rx, WAIT, "bus sub from peer").await;
    assert!(g.body == body);
    peer.close().await;
    bus.shutdown(Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_empty_messages_are_logged_and_dropped() {
    let logs = logs();
    let bus = EventBus::new(test_config("bad"), BusMetrics::detached());
    let ex = unique("bad");
    let (sink, mut rx) = ChanSink::json();
    let sub = bus
        .subscribe(&ex, "k", ExchangeKind::Topic, sink)
        .expect("subscribe");
    let queue = sub.wait_active(WAIT).await.expect("active");
    let peer = Peer::connect().await;
    peer.publish(&ex, "k", b"not json {").await;
    peer.publish(&ex, "k", b"").await;
    peer.publish(&ex, "k", &[0xff, 0xfe, 0x00]).await;
    peer.publish(&ex, "k", br#"{"ok": 1}"#).await;
    let g = recv(&mut rx, WAIT, "good message after bad ones").await;
    assert_eq!(g.body, br#"{"ok": 1}"#);
    let prefix = format!("Exception relaying message in <k @ {ex}>: ");
    let n = logs.count_all(&["ERROR", &prefix]);
    assert_eq!(n, 3, "one ERROR per bad message:\n{}", logs.text());
    assert!(logs.count_all(&[&prefix, "EOF while parsing"]) >= 1);

    // All acked: nothing left unacknowledged on the queue.
    let unacked = eventually(WAIT, "messages_unacknowledged = 0", || async {
        let rows = list("queues", &["name", "messages_unacknowledged"]).await;
        let row = rows.into_iter().find(|r| r[0] == queue)?;
        (row[1] == "0").then_some(())
    })
    .await;
    let _: () = unacked;
    peer.close().await;
    bus.shutdown(Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_handler_does_not_stall_other_subscriptions() {
    logs();
    let bus = EventBus::new(test_config("slow"), BusMetrics::detached());
    let ex = unique("slow");
    let (slow, mut slow_rx, mut slow_started) = ChanSink::slow(Duration::from_secs(3));
    let (fast, mut fast_rx) = ChanSink::new();
    let s = bus
        .subscribe(&ex, "slow", ExchangeKind::Topic, slow)
        .expect("subscribe");
    let f = bus
        .subscribe(&ex, "fast", ExchangeKind::Topic, fast)
        .expect("subscribe");
    s.wait_active(WAIT).await.expect("slow active");
    f.wait_active(WAIT).await.expect("fast active");

    let peer = Peer::connect().await;
    peer.publish(&ex, "slow", b"1").await;
    peer.publish(&ex, "slow", b"2").await;
    recv(&mut slow_started, WAIT, "slow handler started").await;
    let t0 = Instant::now();
    for i in 0..20u32 {
        peer.publish(&ex, "fast", i.to_string().as_bytes()).await;
    }
    for i in 0..20u32 {
        let g = recv(&mut fast_rx, Duration::from_secs(2), "fast while slow busy").await;
        assert_eq!(
            g.body,
            i.to_string().as_bytes(),
            "order kept per subscription"
        );
    }
    assert!(
        t0.elapsed() < Duration::from_secs(2),
        "fast subscription was stalled: {:?}",
        t0.elapsed()
    );
    assert_empty(&mut slow_rx, "slow handler still busy");
    // The slow one still gets both, in order.
    assert_eq!(recv(&mut slow_rx, WAIT, "slow 1").await.body, b"1");
    assert_eq!(recv(&mut slow_rx, WAIT, "slow 2").await.body, b"2");
    peer.close().await;
    bus.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefetch_bounds_unacked_messages() {
    logs();
    let mut cfg = test_config("qos");
    cfg.prefetch = 5;
    let bus = EventBus::new(cfg, BusMetrics::detached());
    let ex = unique("qos");
    let (slow, _rx, mut started) = ChanSink::slow(Duration::from_secs(30));
    let s = bus
        .subscribe(&ex, "k", ExchangeKind::Topic, slow)
        .expect("subscribe");
    let queue = s.wait_active(WAIT).await.expect("active");
    let peer = Peer::connect().await;
    for _ in 0..50 {
        peer.publish(&ex, "k", b"0").await;
    }
    recv(&mut started, WAIT, "handler started").await;
    let row = eventually(WAIT, "flood reached the queue", || async {
        let rows = list(
            "queues",
            &["name", "messages_ready", "messages_unacknowledged"],
        )
        .await;
        let row = rows.into_iter().find(|r| r[0] == queue)?;
        let ready: u32 = row[1].parse().ok()?;
        let unacked: u32 = row[2].parse().ok()?;
        (ready + unacked == 50).then_some((ready, unacked))
    })
    .await;
    assert_eq!(row, (45, 5), "unacked bounded by prefetch");
    peer.close().await;
    // The handler sleeps 30 s: shutdown must abandon it after the deadline, not hang.
    let t0 = Instant::now();
    bus.shutdown(Duration::from_millis(500)).await;
    assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_removes_queue_and_set_sink_swaps() {
    logs();
    let cfg = test_config("cancel");
    let name = cfg.connection_name.clone();
    let bus = EventBus::new(cfg, BusMetrics::detached());
    let ex = unique("cancel");
    let (s1, mut rx1) = ChanSink::new();
    let (s2, mut rx2) = ChanSink::new();
    let (keep, mut keep_rx) = ChanSink::new();
    let sub = bus
        .subscribe(&ex, "k", ExchangeKind::Topic, s1)
        .expect("subscribe");
    let other = bus
        .subscribe(&ex, "#", ExchangeKind::Topic, keep)
        .expect("subscribe");
    let queue = sub.wait_active(WAIT).await.expect("active");
    other.wait_active(WAIT).await.expect("other active");
    let peer = Peer::connect().await;

    peer.publish(&ex, "k", b"first").await;
    assert_eq!(recv(&mut rx1, WAIT, "sink 1").await.body, b"first");
    sub.set_sink(s2);
    peer.publish(&ex, "k", b"second").await;
    assert_eq!(recv(&mut rx2, WAIT, "sink 2").await.body, b"second");
    recv(&mut keep_rx, WAIT, "other first").await;
    recv(&mut keep_rx, WAIT, "other second").await;
    assert_empty(&mut rx1, "old sink after swap");

    assert!(peer.queue_exists(&queue).await);
    sub.cancel();
    assert!(sub.is_cancelled());
    sub.wait_state(WAIT, |s| *s == SubscriptionState::Cancelled)
        .await
        .expect("cancelled");
    assert!(!peer.queue_exists(&queue).await, "queue deleted on cancel");
    assert_eq!(bus.subscriptions().len(), 1);
    assert_eq!(bus.health().subscriptions.len(), 1);

    peer.publish(&ex, "k", b"third").await;
    recv(&mut keep_rx, WAIT, "other third").await;
    assert_empty(&mut rx2, "cancelled subscription");
    let conns = connections(&format!("{name}:listener")).await;
    assert_eq!(conns.len(), 1);
    assert_eq!(conns[0].2, 1, "one channel left (the other subscription)");
    peer.close().await;
    bus.shutdown(Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_channel_errors_are_returned_and_next_publish_works() {
    logs();
    let cfg = test_config("chanerr");
    let name = cfg.connection_name.clone();
    let bus = EventBus::new(cfg, BusMetrics::detached());
    let ex = unique("chanerr");
    let peer = Peer::connect().await;
    peer.declare_like_original(&ex, lapin::ExchangeKind::Fanout)
        .await;
    let mut prx = peer.consume(&ex, "").await;

    let err = bus
        .publish(&ex, "k", b"1".to_vec(), ExchangeKind::Topic, true)
        .await
        .expect_err("type mismatch");
    assert_eq!(err.channel_code(), Some(406), "{err}");
    assert!(!err.is_unavailable());
    assert!(err.to_string().contains("PRECONDITION_FAILED"), "{err}");

    // The original was stuck here (docs/brewblox-service-0.20.0.md, quirk 5); we reopen the
    // channel.
    bus.publish(&ex, "k", b"2".to_vec(), ExchangeKind::Fanout, true)
        .await
        .expect("next publish works");
    assert_eq!(recv(&mut prx, WAIT, "after 406").await.data, b"2");

    let missing = unique("missing");
    let err = bus
        .publish(&missing, "k", b"3".to_vec(), ExchangeKind::Topic, false)
        .await
        .expect_err("no such exchange");
    assert_eq!(err.channel_code(), Some(404), "{err}");
    bus.publish(&ex, "k", b"4".to_vec(), ExchangeKind::Fanout, true)
        .await
        .expect("works after 404");
    assert_eq!(recv(&mut prx, WAIT, "after 404").await.data, b"4");
    bus.publish(
        "amq.topic",
        "brewblox.test",
        b"5".to_vec(),
        ExchangeKind::Topic,
        false,
    )
    .await
    .expect("pre-declared exchange without declare");

    let conns = connections(&format!("{name}:publisher")).await;
    assert_eq!(conns.len(), 1, "channel errors keep the connection");
    peer.close().await;
    bus.shutdown(Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribe_type_mismatch_fails_alone_and_is_logged_once() {
    let logs = logs();
    let cfg = test_config("submis");
    let name = cfg.connection_name.clone();
    let bus = EventBus::new(cfg, BusMetrics::detached());
    let bad_ex = unique("submis-bad");
    let good_ex = unique("submis-good");
    let peer = Peer::connect().await;
    peer.declare_like_original(&bad_ex, lapin::ExchangeKind::Fanout)
        .await;

    let (bs, _brx) = ChanSink::new();
    let (gs, mut grx) = ChanSink::new();
    let bad = bus
        .subscribe(&bad_ex, "k", ExchangeKind::Topic, bs)
        .expect("subscribe");
    let good = bus
        .subscribe(&good_ex, "k", ExchangeKind::Topic, gs)
        .expect("subscribe");
    good.wait_active(WAIT).await.expect("good active");
    let state = bad
        .wait_state(WAIT, |s| matches!(s, SubscriptionState::Failed { .. }))
        .await
        .expect("bad failed");
    let SubscriptionState::Failed { error } = state else {
        unreachable!()
    };
    assert!(error.contains("406"), "{error}");
    let h = bus.health();
    let hb = h
        .subscriptions
        .iter()
        .find(|s| s.exchange == bad_ex)
        .expect("in health");
    assert_eq!(hb.state, "failed");
    assert!(hb
        .error
        .as_deref()
        .unwrap_or("")
        .contains("PRECONDITION_FAILED"));
    assert_eq!(
        h.state,
        BusState::Connected,
        "a refused subscription is not an outage"
    );

    // Retries happen (each a debug line: the sentinel), but the error is logged once.
    let again = format!("Declaring event bus subscription <k @ {bad_ex}> failed again");
    let deadline = Instant::now() + WAIT;
    while logs.count(&again) < 3 {
        assert!(Instant::now() < deadline, "no retries: {}", logs.text());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let needle = format!("Failed to declare event bus subscription <k @ {bad_ex}>");
    assert_eq!(logs.count(&needle), 1, "{}", logs.text());

    // Others unaffected, same connection.
    bus.publish(&good_ex, "k", b"ok".to_vec(), ExchangeKind::Topic, true)
        .await
        .expect("publish");
    assert_eq!(recv(&mut grx, WAIT, "good").await.body, b"ok");
    let conns = connections(&format!("{name}:listener")).await;
    assert_eq!(conns.len(), 1);
    assert_eq!(bus.health().reconnects, 0);

    // Once the conflicting exchange is gone, the retry succeeds.
    peer.delete_exchange(&bad_ex).await;
    bad.wait_active(Duration::from_secs(15))
        .await
        .expect("recovers after conflict removed");
    peer.close().await;
    bus.shutdown(Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_in_flight_handler_finish() {
    logs();
    let cfg = test_config("shut");
    let name = cfg.connection_name.clone();
    let bus = EventBus::new(cfg, BusMetrics::detached());
    let ex = unique("shut");
    let (slow, mut rx, mut started) = ChanSink::slow(Duration::from_millis(700));
    let sub = bus
        .subscribe(&ex, "k", ExchangeKind::Topic, slow)
        .expect("subscribe");
    sub.wait_active(WAIT).await.expect("active");
    bus.publish(&ex, "k", b"in-flight".to_vec(), ExchangeKind::Topic, true)
        .await
        .expect("publish");
    recv(&mut started, WAIT, "handler started").await;
    bus.shutdown(Duration::from_secs(5)).await;
    // The handler completed (it forwards only at its end) before shutdown returned.
    assert_eq!(
        rx.try_recv()
            .expect("finished before shutdown returned")
            .body,
        b"in-flight"
    );
    assert!(connections(&name).await.is_empty());
    // Subscribing after shutdown never fails, but the subscription is inert.
    let (s, _r) = ChanSink::new();
    let late = bus
        .subscribe(&ex, "k", ExchangeKind::Topic, s)
        .expect("subscribe");
    assert!(late.is_cancelled());
}

/// A sink that panics on "boom" and forwards everything else.
struct PanickySink(tokio::sync::mpsc::UnboundedSender<Vec<u8>>);

impl brewblox_host::bus::Sink for PanickySink {
    fn deliver(
        &self,
        _sub: &brewblox_host::bus::Subscription,
        _routing_key: &str,
        body: bytes::Bytes,
        _: brewblox_host::eventbus::Redelivery,
    ) -> brewblox_host::eventbus::Delivery {
        let tx = self.0.clone();
        let body = body.to_vec();
        brewblox_host::eventbus::Delivery::Boxed(Box::pin(async move {
            if body == b"boom" {
                panic!("handler exploded");
            }
            tx.send(body)
                .map_err(|e| brewblox_host::eventbus::DeliveryError::Failed(e.to_string()))
        }))
    }
}

/// Reports the panic [`PanickySink`] raises on purpose in one line, without a backtrace.
///
/// A panic hook runs on the panicking thread before the unwinding reaches the consumer's
/// `catch_unwind`, so the consumer waits for it. With `RUST_BACKTRACE` set (as in CI) the
/// default hook resolves a backtrace against the debug info of this 170 MB test binary: 0.4 s
/// on an idle machine, and many seconds on a loaded one. That is why the message after the
/// panicking one once missed the 10 s bound: the consumer was waiting on the test's own
/// panic hook. The host is not concerned: plugins report panics through their own hook,
/// which takes no backtrace.
fn quiet_expected_panic() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if info.payload().downcast_ref::<&str>() == Some(&"handler exploded") {
                eprintln!("expected panic: {info}");
            } else {
                default(info);
            }
        }));
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn panicking_handler_is_logged_and_consumer_goes_on() {
    let logs = logs();
    quiet_expected_panic();
    let bus = EventBus::new(test_config("panic"), BusMetrics::detached());
    let ex = unique("panic");
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let sub = bus
        .subscribe(&ex, "k", ExchangeKind::Topic, Arc::new(PanickySink(tx)))
        .expect("subscribe");
    sub.wait_active(WAIT).await.expect("active");
    let peer = Peer::connect().await;
    peer.publish(&ex, "k", b"boom").await;
    peer.publish(&ex, "k", b"fine").await;
    // On a miss, show what the bus logged.
    let got = tokio::time::timeout(WAIT, rx.recv()).await.ok().flatten();
    assert_eq!(
        got.as_deref(),
        Some(&b"fine"[..]),
        "nothing after the panic; the bus logged:\n{}",
        logs.text()
            .lines()
            .filter(|line| line.contains(ex.as_str()) || line.contains("onnection"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    let needle =
        format!("Exception relaying message in <k @ {ex}>: handler panicked: handler exploded");
    assert_eq!(logs.count(&needle), 1, "{}", logs.text());
    assert!(sub.queue().is_some(), "still active");
    peer.close().await;
    bus.shutdown(Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_waits_until_bound_and_reports_refusals_and_outages() {
    let bus = EventBus::new(test_config("ready"), BusMetrics::detached());
    let peer = Peer::connect().await;

    // Bound: what is published right after reaches the subscription.
    let ex = unique("ready");
    let (sink, mut rx) = ChanSink::new();
    let sub = bus
        .subscribe(&ex, "k", ExchangeKind::Topic, sink)
        .expect("subscribe");
    bus.ready(&sub).await.expect("bound");
    assert!(sub.queue().is_some());
    bus.publish(&ex, "k", b"first".to_vec(), ExchangeKind::Topic, true)
        .await
        .expect("publish");
    assert_eq!(recv(&mut rx, WAIT, "first").await.body, b"first");

    // Refused: the broker's 406 comes back at once, not after the bound.
    let fanout = unique("ready-fanout");
    peer.declare_like_original(&fanout, lapin::ExchangeKind::Fanout)
        .await;
    let _keep = peer.consume(&fanout, "").await;
    let (sink, _rx) = ChanSink::new();
    let refused = bus
        .subscribe(&fanout, "k", ExchangeKind::Topic, sink)
        .expect("subscribe");
    let started = Instant::now();
    let err = bus.ready(&refused).await.expect_err("refused");
    assert_eq!(err.channel_code(), Some(406), "{err}");
    assert!(started.elapsed() < Duration::from_secs(3));
    refused.cancel();
    assert!(matches!(
        bus.ready(&refused).await,
        Err(brewblox_host::bus::BusError::Cancelled)
    ));
    bus.shutdown(Duration::from_secs(2)).await;

    // Unreachable: unavailable as soon as an attempt failed.
    let dead = EventBus::new(
        brewblox_host::bus::BusConfig {
            port: 1,
            ..test_config("ready-dead")
        },
        BusMetrics::detached(),
    );
    let (sink, _rx) = ChanSink::new();
    let pending = dead
        .subscribe(&ex, "k", ExchangeKind::Topic, sink)
        .expect("subscribe");
    let started = Instant::now();
    let err = dead.ready(&pending).await.expect_err("down");
    assert!(err.is_unavailable(), "{err}");
    assert!(started.elapsed() < Duration::from_secs(3));
    dead.shutdown(Duration::from_secs(2)).await;
    peer.close().await;
}
