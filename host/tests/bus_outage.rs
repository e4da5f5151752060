//! Eventbus against a broker that goes away: `rabbitmqctl stop_app` / `start_app`.
//!
//! MUST RUN ALONE: stopping the broker app breaks every other test using the broker at that
//! moment. That is why all broker-stopping scenarios are in this one file, in one `#[test]`,
//! run sequentially. Run it in its own cargo invocation, never alongside other tests:
//!
//!     cargo test -p brewblox-host --test bus_outage -- --test-threads=1
//!
//! A guard restarts the broker app (`start_app`) even if an assertion fails.

mod bus_support;

use std::process::Command;
use std::time::{Duration, Instant};

use brewblox_host::bus::{BusState, EventBus, ExchangeKind, SubscriptionState};
use bus_support::*;

/// Starts the broker app again when dropped (also on panic).
struct BrokerGuard;

impl Drop for BrokerGuard {
    fn drop(&mut self) {
        let _ = Command::new("rabbitmqctl")
            .args(["-q", "start_app"])
            .status();
    }
}

async fn stop_app() -> BrokerGuard {
    ctl(&["stop_app"]).await;
    BrokerGuard
}

/// Clears the memory alarm when dropped (also on panic).
struct AlarmGuard;

impl Drop for AlarmGuard {
    fn drop(&mut self) {
        let _ = Command::new("rabbitmqctl")
            .args([
                "-q",
                "eval",
                "rabbit_alarm:clear_alarm({resource_limit, memory, node()}).",
            ])
            .status();
    }
}

async fn start_app() {
    ctl(&["start_app"]).await;
    ctl(&["await_startup"]).await;
}

#[test]
fn broker_outages() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let t0 = Instant::now();
        broker_down_at_boot().await;
        eprintln!("broker_down_at_boot: {:?}", t0.elapsed());
        let t1 = Instant::now();
        broker_restart_while_connected().await;
        eprintln!("broker_restart_while_connected: {:?}", t1.elapsed());
        let t2 = Instant::now();
        blocked_broker_times_out_publish().await;
        eprintln!("blocked_broker_times_out_publish: {:?}", t2.elapsed());
    });
}

/// The host boots while the broker is down; subscriptions made meanwhile are
/// declared when it comes up; publish fails fast as unavailable; warned once per outage.
async fn broker_down_at_boot() {
    let logs = logs();
    let guard = stop_app().await;
    let cfg = test_config("boot");
    let name = cfg.connection_name.clone();
    let bus = EventBus::new(cfg, BusMetrics::detached());
    let ex = unique("boot");
    let (s1, mut rx1) = ChanSink::new();
    let (s2, mut rx2) = ChanSink::new();
    let a = bus
        .subscribe(&ex, "a", ExchangeKind::Topic, s1)
        .expect("subscribe");
    let b = bus
        .subscribe(&ex, "#", ExchangeKind::Topic, s2)
        .expect("subscribe");

    let t = Instant::now();
    let err = bus
        .publish(&ex, "a", b"lost".to_vec(), ExchangeKind::Topic, true)
        .await
        .expect_err("publish while down");
    assert!(err.is_unavailable(), "{err}");
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "fails fast: {:?}",
        t.elapsed()
    );

    // Retries keep going (debug), but only one warning for the outage.
    let retry_line = format!("Connection error in event bus listener {name}:listener");
    eventually(WAIT, "listener retried several times", || {
        let n = logs.count(&retry_line);
        async move { (n >= 5).then_some(()) }
    })
    .await;
    assert_eq!(logs.count_all(&["WARN", &retry_line]), 1, "{}", logs.text());
    let h = bus.health();
    assert_eq!(h.state, BusState::Connecting);
    assert_eq!(h.listener.state, BusState::Connecting);
    assert!(h.last_error.is_some());
    assert!(h.subscriptions.iter().all(|s| s.state == "pending"));
    assert_eq!(a.state(), SubscriptionState::Pending);

    start_app().await;
    drop(guard);
    a.wait_active(Duration::from_secs(15))
        .await
        .expect("a declared once up");
    b.wait_active(WAIT).await.expect("b declared once up");
    let peer = Peer::connect().await;
    peer.publish(&ex, "a", b"hello").await;
    assert_eq!(recv(&mut rx1, WAIT, "a after boot").await.body, b"hello");
    assert_eq!(recv(&mut rx2, WAIT, "# after boot").await.body, b"hello");
    bus.publish(&ex, "a", b"mine".to_vec(), ExchangeKind::Topic, true)
        .await
        .expect("publish once up");
    assert_eq!(recv(&mut rx1, WAIT, "own publish").await.body, b"mine");
    assert_eq!(bus.health().state, BusState::Connected);
    let consumers = list("consumers", &["queue_name"]).await;
    let queues = [a.queue().expect("qa"), b.queue().expect("qb")];
    assert_eq!(
        consumers.iter().filter(|r| queues.contains(&r[0])).count(),
        2,
        "one consumer per subscription"
    );
    peer.close().await;
    bus.shutdown(Duration::from_secs(2)).await;
    assert!(connections(&name).await.is_empty());
}

/// The broker restarts under a connected bus; subscriptions churn while it
/// is down; publish while down is an unavailable error; after restart the (auto-deleted)
/// topology is re-declared and only the final set of subscriptions comes back.
async fn broker_restart_while_connected() {
    logs();
    let cfg = test_config("restart");
    let name = cfg.connection_name.clone();
    let bus = EventBus::new(cfg, BusMetrics::detached());
    let ex = unique("restart");
    let (s1, mut rx1) = ChanSink::new();
    let (s2, mut rx2) = ChanSink::new();
    let a = bus
        .subscribe(&ex, "a", ExchangeKind::Topic, s1)
        .expect("subscribe");
    let b = bus
        .subscribe(&ex, "b", ExchangeKind::Topic, s2)
        .expect("subscribe");
    let qa = a.wait_active(WAIT).await.expect("a");
    b.wait_active(WAIT).await.expect("b");
    bus.publish(&ex, "a", b"1".to_vec(), ExchangeKind::Topic, true)
        .await
        .expect("publish before");
    assert_eq!(recv(&mut rx1, WAIT, "before restart").await.body, b"1");

    let guard = stop_app().await;
    a.wait_state(WAIT, |s| *s == SubscriptionState::Pending)
        .await
        .expect("loss noticed");
    assert_eq!(bus.health().state, BusState::Connecting);
    let err = bus
        .publish(&ex, "a", b"2".to_vec(), ExchangeKind::Topic, true)
        .await
        .expect_err("publish while down");
    assert!(err.is_unavailable(), "{err}");

    b.cancel();
    let (s3, mut rx3) = ChanSink::new();
    let c = bus
        .subscribe(&ex, "c", ExchangeKind::Topic, s3)
        .expect("subscribe");

    start_app().await;
    drop(guard);
    let qa2 = match a
        .wait_state(
            Duration::from_secs(15),
            |s| matches!(s, SubscriptionState::Active { queue } if *queue != qa),
        )
        .await
    {
        Some(SubscriptionState::Active { queue }) => queue,
        other => panic!("a not restored: {other:?}"),
    };
    c.wait_active(WAIT).await.expect("c declared after restart");
    assert_eq!(b.state(), SubscriptionState::Cancelled);

    let peer = Peer::connect().await;
    for k in ["b", "c", "a"] {
        peer.publish(&ex, k, k.as_bytes()).await;
    }
    assert_eq!(recv(&mut rx3, WAIT, "c").await.body, b"c");
    assert_eq!(recv(&mut rx1, WAIT, "a").await.body, b"a");
    assert_empty(&mut rx2, "b was cancelled during the outage");
    // First publish after the restart works (reconnects on demand).
    let mut ok = false;
    for _ in 0..3 {
        match bus
            .publish(&ex, "a", b"3".to_vec(), ExchangeKind::Topic, true)
            .await
        {
            Ok(()) => {
                ok = true;
                break;
            }
            Err(e) => assert!(e.is_unavailable(), "{e}"),
        }
    }
    assert!(ok, "publisher recovered after restart");
    assert_eq!(
        recv(&mut rx1, WAIT, "own publish after restart").await.body,
        b"3"
    );

    let h = bus.health();
    assert_eq!(h.state, BusState::Connected);
    assert!(h.listener.reconnects >= 1);
    let mut keys: Vec<_> = h.subscriptions.iter().map(|s| s.routing.clone()).collect();
    keys.sort();
    assert_eq!(keys, ["a", "c"]);
    let conns = connections(&name).await;
    assert_eq!(conns.len(), 2, "one listener, one publisher: {conns:?}");
    let listener = conns
        .iter()
        .find(|c| c.1.ends_with(":listener"))
        .expect("listener");
    assert_eq!(listener.2, 2, "channels for a and c");
    let bindings = list(
        "bindings",
        &["source_name", "destination_name", "routing_key"],
    )
    .await;
    assert!(bindings
        .iter()
        .any(|r| r[0] == ex && r[1] == qa2 && r[2] == "a"));
    peer.close().await;
    bus.shutdown(Duration::from_secs(2)).await;
    assert!(connections(&name).await.is_empty());
}

/// A memory alarm blocks publishers; publish returns a timeout error (no hang),
/// health shows the block, and publishing works again after the alarm clears.
async fn blocked_broker_times_out_publish() {
    logs();
    let mut cfg = test_config("blocked");
    cfg.publish_timeout = Duration::from_secs(2);
    let name = cfg.connection_name.clone();
    let bus = EventBus::new(cfg, BusMetrics::detached());
    let ex = unique("blocked");
    let (sink, mut rx) = ChanSink::new();
    let sub = bus
        .subscribe(&ex, "k", ExchangeKind::Topic, sink)
        .expect("subscribe");
    sub.wait_active(WAIT).await.expect("active");
    bus.publish(&ex, "k", b"1".to_vec(), ExchangeKind::Topic, true)
        .await
        .expect("publish before alarm");
    assert_eq!(recv(&mut rx, WAIT, "before alarm").await.body, b"1");

    ctl(&[
        "eval",
        "rabbit_alarm:set_alarm({{resource_limit, memory, node()}, []}).",
    ])
    .await;
    let alarm = AlarmGuard;
    let t = Instant::now();
    let err = bus
        .publish(&ex, "k", b"2".to_vec(), ExchangeKind::Topic, true)
        .await
        .expect_err("blocked publish must not succeed");
    assert!(
        t.elapsed() < Duration::from_secs(4),
        "bounded by publish_timeout: {:?}",
        t.elapsed()
    );
    assert!(err.is_unavailable(), "{err}");
    eprintln!("blocked publish: {err} after {:?}", t.elapsed());
    let blocked = bus.health().publisher.blocked;
    assert!(blocked, "health shows the publisher connection blocked");

    drop(alarm);
    let mut ok = false;
    for _ in 0..5 {
        match bus
            .publish(&ex, "k", b"3".to_vec(), ExchangeKind::Topic, true)
            .await
        {
            Ok(()) => {
                ok = true;
                break;
            }
            Err(e) => assert!(e.is_unavailable(), "{e}"),
        }
    }
    assert!(ok, "publish works after the alarm clears");
    // "2" may or may not have reached the broker (its confirm timed out); "3" arrives.
    loop {
        let g = recv(&mut rx, WAIT, "after alarm").await;
        if g.body == b"3" {
            break;
        }
    }
    bus.shutdown(Duration::from_secs(2)).await;
    assert!(connections(&name).await.is_empty());
}
