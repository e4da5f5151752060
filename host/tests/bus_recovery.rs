//! Eventbus recovery from connections killed by the broker (`rabbitmqctl close_connection`,
//! 320 CONNECTION_FORCED). Only this test's own connections (found by their
//! `connection_name`) are closed, so these tests run in parallel with the others.
//! Broker stop/start scenarios are in `bus_outage.rs` (must run alone).

mod bus_support;

use std::time::Duration;

use brewblox_host::bus::{BusState, EventBus, ExchangeKind, SubscriptionState};
use bus_support::*;

/// Wait until `sub` is active on a queue other than `old`.
async fn wait_new_queue(sub: &brewblox_host::bus::Subscription, old: &str) -> String {
    match sub
        .wait_state(
            WAIT,
            |s| matches!(s, SubscriptionState::Active { queue } if queue != old),
        )
        .await
    {
        Some(SubscriptionState::Active { queue }) => queue,
        other => panic!("{sub} not re-declared after reconnect: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_connection_recovers_listener_and_publisher() {
    let logs = logs();
    let cfg = test_config("close");
    let name = cfg.connection_name.clone();
    let bus = EventBus::new(cfg, BusMetrics::detached());
    let ex = unique("close");
    let (sink, mut rx) = ChanSink::new();
    let sub = bus
        .subscribe(&ex, "k", ExchangeKind::Topic, sink)
        .expect("subscribe");
    let q1 = sub.wait_active(WAIT).await.expect("active");
    bus.publish(&ex, "k", b"before".to_vec(), ExchangeKind::Topic, true)
        .await
        .expect("publish before");
    assert_eq!(recv(&mut rx, WAIT, "before").await.body, b"before");

    close_connection(&format!("{name}:listener")).await;
    // Noticed at once: the subscription leaves `active` without waiting for a poll.
    sub.wait_state(Duration::from_secs(2), |s| {
        *s != SubscriptionState::Active { queue: q1.clone() }
    })
    .await
    .expect("loss noticed within 2 s");
    let q2 = wait_new_queue(&sub, &q1).await;
    assert!(q2.starts_with("amq.gen-"));
    let peer = Peer::connect().await;
    assert!(!peer.queue_exists(&q1).await, "old exclusive queue gone");
    peer.publish(&ex, "k", b"after".as_slice()).await;
    assert_eq!(
        recv(&mut rx, WAIT, "after listener recovery").await.body,
        b"after"
    );
    let h = bus.health();
    assert_eq!(h.listener.reconnects, 1);
    assert_eq!(h.state, BusState::Connected);
    assert!(
        h.last_error
            .as_deref()
            .unwrap_or("")
            .contains("CONNECTION_FORCED"),
        "{h:?}"
    );
    assert_eq!(
        logs.count_all(&[
            "WARN",
            &format!("Connection lost in event bus listener {name}:listener:"),
            "CONNECTION_FORCED - fault-test"
        ]),
        1
    );

    // Publisher: the next publish after a forced close succeeds (reconnect on demand), or at
    // worst the one in flight while the close arrives fails as unavailable.
    close_connection(&format!("{name}:publisher")).await;
    let mut ok = false;
    for _ in 0..3 {
        match bus
            .publish(&ex, "k", b"pub-after".to_vec(), ExchangeKind::Topic, true)
            .await
        {
            Ok(()) => {
                ok = true;
                break;
            }
            Err(e) => assert!(e.is_unavailable(), "{e}"),
        }
    }
    assert!(ok, "publisher recovered");
    assert_eq!(
        recv(&mut rx, WAIT, "after publisher recovery").await.body,
        b"pub-after"
    );
    let conns = connections(&name).await;
    assert_eq!(conns.len(), 2, "one listener, one publisher: {conns:?}");
    peer.close().await;
    bus.shutdown(Duration::from_secs(2)).await;
    assert!(connections(&name).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_recoveries_in_a_row_leak_nothing() {
    logs();
    let cfg = test_config("ten");
    let name = cfg.connection_name.clone();
    let listener = format!("{name}:listener");
    let bus = EventBus::new(cfg, BusMetrics::detached());
    let ex = unique("ten");
    let (s1, mut rx1) = ChanSink::new();
    let (s2, mut rx2) = ChanSink::new();
    let a = bus
        .subscribe(&ex, "a", ExchangeKind::Topic, s1)
        .expect("subscribe");
    let b = bus
        .subscribe(&ex, "#", ExchangeKind::Topic, s2)
        .expect("subscribe");
    let mut qa = a.wait_active(WAIT).await.expect("a active");
    let mut qb = b.wait_active(WAIT).await.expect("b active");
    for i in 0..10 {
        close_connection(&listener).await;
        qa = wait_new_queue(&a, &qa).await;
        qb = wait_new_queue(&b, &qb).await;
        assert_eq!(bus.health().listener.reconnects, i + 1);
    }
    let conns = connections(&listener).await;
    assert_eq!(conns.len(), 1, "exactly one listener connection: {conns:?}");
    assert_eq!(conns[0].2, 2, "one channel per subscription");
    let queues = list("queues", &["name", "consumers"]).await;
    for q in [&qa, &qb] {
        let row = queues.iter().find(|r| &r[0] == q).expect("queue listed");
        assert_eq!(row[1], "1", "one consumer on {q}");
    }
    let consumers = list("consumers", &["queue_name"]).await;
    let ours = consumers
        .iter()
        .filter(|r| r[0] == qa || r[0] == qb)
        .count();
    assert_eq!(ours, 2, "no duplicate consumers");

    bus.publish(&ex, "a", b"x".to_vec(), ExchangeKind::Topic, true)
        .await
        .expect("publish");
    assert_eq!(
        recv(&mut rx1, WAIT, "a after 10 recoveries").await.body,
        b"x"
    );
    assert_eq!(
        recv(&mut rx2, WAIT, "# after 10 recoveries").await.body,
        b"x"
    );
    assert_empty(&mut rx1, "delivered once");
    bus.shutdown(Duration::from_secs(2)).await;
    assert!(connections(&name).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn churn_while_disconnected_restores_only_final_set() {
    logs();
    // Through a proxy that can refuse connections: the bus reconnects at once after a loss,
    // so the broker must look down for the churn to happen while disconnected.
    let proxy = BlackholeProxy::start().await;
    let mut cfg = test_config("churn");
    cfg.port = proxy.port;
    let name = cfg.connection_name.clone();
    let listener = format!("{name}:listener");
    let bus = EventBus::new(cfg, BusMetrics::detached());
    let ex = unique("churn");
    let (sa, mut rxa) = ChanSink::new();
    let (sb, mut rxb) = ChanSink::new();
    let (sc, mut rxc) = ChanSink::new();
    let a = bus
        .subscribe(&ex, "a", ExchangeKind::Topic, sa)
        .expect("subscribe");
    let b = bus
        .subscribe(&ex, "b", ExchangeKind::Topic, sb)
        .expect("subscribe");
    let c = bus
        .subscribe(&ex, "c", ExchangeKind::Topic, sc)
        .expect("subscribe");
    let qa = a.wait_active(WAIT).await.expect("a");
    b.wait_active(WAIT).await.expect("b");
    let qc = c.wait_active(WAIT).await.expect("c");
    // Cancelled while connected: its queue goes now, and must not come back later.
    c.cancel();
    c.wait_state(WAIT, |s| *s == SubscriptionState::Cancelled)
        .await
        .expect("c cancelled");

    proxy.refuse(true);
    close_connection(&listener).await;
    a.wait_state(WAIT, |s| *s == SubscriptionState::Pending)
        .await
        .expect("a pending while disconnected");
    assert_eq!(bus.health().listener.state, BusState::Connecting);
    // Churn during the outage.
    b.cancel();
    let (sd, mut rxd) = ChanSink::new();
    let d = bus
        .subscribe(&ex, "d", ExchangeKind::Topic, sd)
        .expect("subscribe");
    let (se, mut rxe) = ChanSink::new();
    let e = bus
        .subscribe(&ex, "e", ExchangeKind::Topic, se)
        .expect("subscribe");
    e.cancel();
    proxy.refuse(false);

    let qa2 = wait_new_queue(&a, &qa).await;
    let qd = d.wait_active(WAIT).await.expect("d active after reconnect");
    assert_eq!(b.state(), SubscriptionState::Cancelled);
    assert_eq!(e.state(), SubscriptionState::Cancelled);
    assert_eq!(c.state(), SubscriptionState::Cancelled);

    let conns = connections(&listener).await;
    assert_eq!(conns.len(), 1);
    assert_eq!(conns[0].2, 2, "channels for a and d only: {conns:?}");
    let bindings = list(
        "bindings",
        &["source_name", "destination_name", "routing_key"],
    )
    .await;
    let mut keys: Vec<_> = bindings
        .iter()
        .filter(|r| r[0] == ex)
        .map(|r| r[2].clone())
        .collect();
    keys.sort();
    assert_eq!(keys, ["a", "d"], "only the final set is bound");
    let peer = Peer::connect().await;
    assert!(!peer.queue_exists(&qc).await);
    let mut h: Vec<_> = bus
        .health()
        .subscriptions
        .into_iter()
        .map(|s| s.routing)
        .collect();
    h.sort();
    assert_eq!(h, ["a", "d"]);

    for k in ["b", "c", "e", "d", "a"] {
        peer.publish(&ex, k, k.as_bytes()).await;
    }
    assert_eq!(recv(&mut rxd, WAIT, "d").await.body, b"d");
    assert_eq!(recv(&mut rxa, WAIT, "a").await.body, b"a");
    assert_empty(&mut rxb, "b cancelled while down");
    assert_empty(&mut rxc, "c cancelled before");
    assert_empty(&mut rxe, "e cancelled while down");
    assert!(qa2 != qd);
    peer.close().await;
    bus.shutdown(Duration::from_secs(2)).await;
}

/// A loopback TCP proxy to the broker. `freeze()` makes every connection open at that moment
/// a black hole (sockets stay open, nothing is forwarded); later connections work normally.
/// `refuse(true)` closes every new connection at once, as a broker that is down would.
struct BlackholeProxy {
    port: u16,
    epoch: tokio::sync::watch::Sender<u64>,
    refusing: tokio::sync::watch::Sender<bool>,
}

impl BlackholeProxy {
    async fn start() -> BlackholeProxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind proxy");
        let port = listener.local_addr().expect("addr").port();
        let epoch = tokio::sync::watch::channel(0u64).0;
        let refusing = tokio::sync::watch::channel(false).0;
        let (ep, refuse) = (epoch.clone(), refusing.clone());
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if *refuse.borrow() {
                    drop(client);
                    continue;
                }
                let Ok(upstream) = tokio::net::TcpStream::connect("127.0.0.1:5672").await else {
                    continue;
                };
                let born = *ep.borrow();
                let (cr, cw) = client.into_split();
                let (ur, uw) = upstream.into_split();
                tokio::spawn(pump(cr, uw, ep.subscribe(), born));
                tokio::spawn(pump(ur, cw, ep.subscribe(), born));
            }
        });
        BlackholeProxy {
            port,
            epoch,
            refusing,
        }
    }

    fn refuse(&self, refuse: bool) {
        self.refusing.send_replace(refuse);
    }

    fn freeze(&self) {
        self.epoch.send_modify(|e| *e += 1);
    }
}

/// Forward bytes until the epoch moves on; then hold both sockets open, silent, forever.
async fn pump(
    from: tokio::net::tcp::OwnedReadHalf,
    to: tokio::net::tcp::OwnedWriteHalf,
    mut epoch: tokio::sync::watch::Receiver<u64>,
    born: u64,
) {
    let mut buf = vec![0u8; 64 * 1024];
    'outer: loop {
        tokio::select! {
            _ = epoch.wait_for(|e| *e != born) => break,
            r = from.readable() => if r.is_err() { return },
        }
        let n = match from.try_read(&mut buf) {
            Ok(0) => return,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(_) => return,
        };
        let mut sent = 0;
        while sent < n {
            if to.writable().await.is_err() {
                return;
            }
            match to.try_write(&buf[sent..n]) {
                Ok(k) => sent += k,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(_) => break 'outer,
            }
        }
    }
    let _keep_open = (from, to);
    std::future::pending::<()>().await;
}

/// A dead peer (socket open, no data) is detected within two heartbeats, the bus
/// reconnects, and shutdown during a black hole does not hang.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_peer_detected_within_two_heartbeats() {
    logs();
    let proxy = BlackholeProxy::start().await;
    let mut cfg = test_config("hb");
    cfg.port = proxy.port;
    cfg.heartbeat = 2;
    let bus = EventBus::new(cfg, BusMetrics::detached());
    let ex = unique("hb");
    let (sink, mut rx) = ChanSink::new();
    let sub = bus
        .subscribe(&ex, "k", ExchangeKind::Topic, sink)
        .expect("subscribe");
    let q1 = sub.wait_active(WAIT).await.expect("active");

    proxy.freeze();
    let t = std::time::Instant::now();
    sub.wait_state(Duration::from_secs(2 * 2 + 2), |s| {
        *s != SubscriptionState::Active { queue: q1.clone() }
    })
    .await
    .expect("dead peer noticed within 2 heartbeats (+1 s slack)");
    let noticed = t.elapsed();
    assert!(noticed >= Duration::from_secs(2), "too early? {noticed:?}");
    let h = bus.health();
    assert!(
        h.listener
            .last_error
            .as_deref()
            .unwrap_or("")
            .contains("heartbeat"),
        "{h:?}"
    );
    wait_new_queue(&sub, &q1).await;
    let peer = Peer::connect().await;
    peer.publish(&ex, "k", b"back").await;
    assert_eq!(recv(&mut rx, WAIT, "after dead peer").await.body, b"back");
    peer.close().await;

    // Shutdown while the (new) connection is black-holed finishes within its bound.
    proxy.freeze();
    let t = std::time::Instant::now();
    bus.shutdown(Duration::from_secs(1)).await;
    assert!(
        t.elapsed() < Duration::from_secs(8),
        "shutdown hung: {:?}",
        t.elapsed()
    );
}

/// After a loss the first reconnect is made at once, not after the reconnect interval: with
/// the default interval of 1 s the subscription is bound again well within 300 ms of the
/// broker closing the connection (the broker accepts new connections all along).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_connection_is_retried_at_once() {
    logs();
    let cfg = brewblox_host::bus::BusConfig {
        reconnect_interval: Duration::from_secs(1),
        ..test_config("at-once")
    };
    let name = cfg.connection_name.clone();
    let bus = EventBus::new(cfg, BusMetrics::detached());
    let ex = unique("at-once");
    let (sink, _rx) = ChanSink::new();
    let sub = bus
        .subscribe(&ex, "k", ExchangeKind::Topic, sink)
        .expect("subscribe");
    let mut queue = sub.wait_active(WAIT).await.expect("active");
    for round in 0..3 {
        let listener = format!("{name}:listener");
        let close = tokio::spawn(async move { close_connection(&listener).await });
        // From the moment the loss is seen (rabbitmqctl itself takes about a second).
        let old = queue.clone();
        sub.wait_state(WAIT, |s| {
            *s != SubscriptionState::Active { queue: old.clone() }
        })
        .await
        .expect("loss noticed");
        let lost = std::time::Instant::now();
        let next = wait_new_queue(&sub, &queue).await;
        let took = lost.elapsed();
        close.await.expect("close_connection");
        assert!(
            took < Duration::from_millis(300),
            "round {round}: bound again after {took:?}"
        );
        queue = next;
    }
    bus.shutdown(Duration::from_secs(2)).await;
}
