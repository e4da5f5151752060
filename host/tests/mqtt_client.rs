//! The MQTT client against a private Mosquitto (its own port, stopped and started by the
//! test): delivery, wildcards, order, acknowledgements, faults, bounded queues, the will.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use brewblox_host::eventbus::{Delivery, DeliveryError, Redelivery, Sink, Subscription};
use brewblox_host::metrics::bus::BusMetrics;
use brewblox_host::mqtt::{MqttBus, MqttConfig, MqttError, MqttState, Protocol, Will};
use bytes::Bytes;
use integration_tests::mqtt::{rumqttc::QoS, Mosquitto, Peer};
use tokio::sync::{mpsc, Semaphore};

fn config(port: u16) -> MqttConfig {
    MqttConfig {
        host: "127.0.0.1".into(),
        port: Some(port),
        keepalive: Duration::from_secs(5),
        reconnect_interval: Duration::from_millis(200),
        timeout: Duration::from_secs(3),
        service: "mqtt-test".into(),
        ..MqttConfig::default()
    }
}

/// One message a sink got.
#[derive(Debug)]
struct MqttMessage {
    topic: String,
    payload: Bytes,
}

/// Forwards every message to a channel; a payload of `panic` panics, `fail` fails.
struct Forward(mpsc::UnboundedSender<MqttMessage>);

impl Sink for Forward {
    fn deliver(&self, _: &Subscription, topic: &str, payload: Bytes, _: Redelivery) -> Delivery {
        let m = MqttMessage {
            topic: topic.to_owned(),
            payload,
        };
        if &m.payload[..] == b"panic" {
            panic!("handler panics on purpose");
        }
        let tx = self.0.clone();
        Delivery::Boxed(Box::pin(async move {
            if &m.payload[..] == b"fail" {
                return Err(DeliveryError::Failed("handler fails on purpose".into()));
            }
            let _ = tx.send(m);
            Ok(())
        }))
    }
}

fn forward() -> (Arc<dyn Sink>, mpsc::UnboundedReceiver<MqttMessage>) {
    let (tx, rx) = mpsc::unbounded_channel();
    (Arc::new(Forward(tx)), rx)
}

async fn next(rx: &mut mpsc::UnboundedReceiver<MqttMessage>) -> MqttMessage {
    tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("a message within 5 s")
        .expect("channel open")
}

async fn connected(bus: &MqttBus) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !bus.is_connected() {
        assert!(
            Instant::now() < deadline,
            "not connected: {:?}",
            bus.health()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wildcards_order_and_both_qos() {
    let broker = Mosquitto::start();
    let bus = MqttBus::new(config(broker.port), BusMetrics::detached()).unwrap();
    let (sink, mut parent) = forward();
    let sub = bus.subscribe("t/a/#", QoS::AtLeastOnce, sink).unwrap();
    let (sink, mut plus) = forward();
    let plus_sub = bus.subscribe("t/+/x", QoS::AtMostOnce, sink).unwrap();
    bus.start();
    bus.ready(&sub).await.unwrap();
    bus.ready(&plus_sub).await.unwrap();

    // `a/#` matches `a` itself; `+` exactly one level.
    bus.publish("t/a", "parent", QoS::AtLeastOnce, false)
        .await
        .unwrap();
    bus.publish("t/b/x", "plus", QoS::AtMostOnce, false)
        .await
        .unwrap();
    bus.publish("t/b/x/y", "too deep", QoS::AtMostOnce, false)
        .await
        .unwrap();
    bus.publish("t/c/x", "plus marker", QoS::AtMostOnce, false)
        .await
        .unwrap();
    assert_eq!(&next(&mut parent).await.payload[..], b"parent");
    assert_eq!(&next(&mut plus).await.payload[..], b"plus");
    assert_eq!(&next(&mut plus).await.payload[..], b"plus marker");

    // In order within a subscription.
    for i in 0..200 {
        let qos = if i % 2 == 0 {
            QoS::AtMostOnce
        } else {
            QoS::AtLeastOnce
        };
        bus.publish("t/a/n", i.to_string(), qos, false)
            .await
            .unwrap();
    }
    for i in 0..200 {
        assert_eq!(next(&mut parent).await.payload, i.to_string());
    }

    // A message both filters match reaches both subscriptions, each with its topic (the
    // last takes the received topic, the other a copy).
    bus.publish("t/a/x", "both", QoS::AtMostOnce, false)
        .await
        .unwrap();
    for got in [next(&mut parent).await, next(&mut plus).await] {
        assert_eq!(
            (got.topic.as_str(), &got.payload[..]),
            ("t/a/x", &b"both"[..])
        );
    }
    let h = bus.health().connection;
    assert_eq!(h.state, MqttState::Connected);
    assert_eq!(h.subscriptions.len(), 2);
    assert!(h.subscriptions.iter().all(|s| s.state == "active"));
    bus.shutdown(Duration::from_secs(2)).await;
    assert_eq!(
        bus.publish("t/a", "late", QoS::AtMostOnce, false).await,
        Err(MqttError::ShuttingDown)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_topics_sizes_and_qos_are_refused_before_sending() {
    let broker = Mosquitto::start();
    let bus = MqttBus::new(
        MqttConfig {
            max_message_size: 10,
            ..config(broker.port)
        },
        BusMetrics::detached(),
    )
    .unwrap();
    bus.start();
    connected(&bus).await;
    for topic in ["a/+", "a/#", "", "a\0b"] {
        let err = bus
            .publish(topic, "x", QoS::AtMostOnce, false)
            .await
            .unwrap_err();
        assert!(matches!(err, MqttError::Invalid(_)), "{topic:?}: {err}");
    }
    let err = bus
        .publish("ok", vec![0u8; 11], QoS::AtMostOnce, false)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("11 bytes"), "{err}");
    let (sink, _rx) = forward();
    for filter in ["a/#/b", "a+", ""] {
        assert!(matches!(
            bus.subscribe(filter, QoS::AtMostOnce, sink.clone()),
            Err(MqttError::Invalid(_))
        ));
    }
    assert!(brewblox_host::mqtt::qos(2).is_err());
    bus.shutdown(Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payloads_of_any_kind_and_failing_handlers_do_not_stop_delivery() {
    let broker = Mosquitto::start();
    let bus = MqttBus::new(config(broker.port), BusMetrics::detached()).unwrap();
    let (sink, mut rx) = forward();
    let sub = bus.subscribe("p/#", QoS::AtLeastOnce, sink).unwrap();
    bus.start();
    bus.ready(&sub).await.unwrap();
    let mut peer = Peer::connect(broker.port, &[]).await;
    for payload in [
        &b"panic"[..],
        b"fail",
        b"",
        b"not json",
        &[0xff, 0xfe],
        b"{\"a\":1}",
    ] {
        peer.client
            .publish("p/x", QoS::AtLeastOnce, false, payload.to_vec())
            .await
            .unwrap();
    }
    // The panicking and the failing message are logged; the others arrive, in order.
    assert_eq!(&next(&mut rx).await.payload[..], b"");
    assert_eq!(&next(&mut rx).await.payload[..], b"not json");
    assert_eq!(&next(&mut rx).await.payload[..], &[0xff, 0xfe]);
    assert_eq!(&next(&mut rx).await.payload[..], b"{\"a\":1}");
    let _ = &mut peer;
    bus.shutdown(Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_down_at_start_then_restarted() {
    let mut broker = Mosquitto::later();
    let bus = MqttBus::new(config(broker.port), BusMetrics::detached()).unwrap();
    let (sink, mut rx) = forward();
    let sub = bus.subscribe("r/#", QoS::AtLeastOnce, sink).unwrap();
    bus.start();

    // Down: a publish fails at once, ready() within its bound.
    let started = Instant::now();
    let err = bus
        .publish("r/x", "1", QoS::AtLeastOnce, false)
        .await
        .unwrap_err();
    assert!(matches!(err, MqttError::Unavailable(_)), "{err}");
    assert!(started.elapsed() < Duration::from_millis(500));
    assert!(matches!(
        bus.ready(&sub).await,
        Err(MqttError::Unavailable(_))
    ));
    assert_eq!(bus.health().connection.state, MqttState::Connecting);

    broker.up();
    bus.ready(&sub).await.unwrap();
    bus.publish("r/x", "first", QoS::AtLeastOnce, false)
        .await
        .unwrap();
    assert_eq!(&next(&mut rx).await.payload[..], b"first");

    // Restart: noticed at once, publish fails fast, the subscription comes back by itself.
    broker.down();
    let deadline = Instant::now() + Duration::from_secs(5);
    while bus.is_connected() {
        assert!(Instant::now() < deadline, "loss not noticed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let err = bus
        .publish("r/x", "lost", QoS::AtMostOnce, false)
        .await
        .unwrap_err();
    assert!(matches!(err, MqttError::Unavailable(_)), "{err}");
    broker.up();
    connected(&bus).await;
    bus.ready(&sub).await.unwrap();
    let mut peer = Peer::connect(broker.port, &[]).await;
    peer.client
        .publish("r/y", QoS::AtLeastOnce, false, "second")
        .await
        .unwrap();
    let m = next(&mut rx).await;
    assert_eq!((m.topic.as_str(), &m.payload[..]), ("r/y", &b"second"[..]));
    assert!(
        bus.health().connection.reconnects >= 1,
        "{:?}",
        bus.health()
    );
    let _ = &mut peer;
    bus.shutdown(Duration::from_secs(2)).await;
}

/// Holds every handler until released; counts what it got.
struct Slow {
    gate: Arc<Semaphore>,
    got: Arc<Mutex<Vec<String>>>,
}

impl Sink for Slow {
    fn deliver(&self, _: &Subscription, _: &str, payload: Bytes, _: Redelivery) -> Delivery {
        let (gate, got) = (self.gate.clone(), self.got.clone());
        Delivery::Boxed(Box::pin(async move {
            let _permit = gate
                .acquire()
                .await
                .map_err(|e| DeliveryError::Failed(e.to_string()))?;
            got.lock()
                .unwrap()
                .push(String::from_utf8_lossy(&payload).into());
            Ok(())
        }))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_into_a_slow_handler_is_bounded_and_others_go_on() {
    let broker = Mosquitto::start();
    let bus = MqttBus::new(
        MqttConfig {
            queue_size: 10,
            ..config(broker.port)
        },
        BusMetrics::detached(),
    )
    .unwrap();
    let gate = Arc::new(Semaphore::new(0));
    let got = Arc::new(Mutex::new(Vec::new()));
    let slow = bus
        .subscribe(
            "f/#",
            QoS::AtMostOnce,
            Arc::new(Slow {
                gate: gate.clone(),
                got: got.clone(),
            }),
        )
        .unwrap();
    let (sink, mut fast) = forward();
    let fast_sub = bus.subscribe("f/#", QoS::AtMostOnce, sink).unwrap();
    bus.start();
    bus.ready(&slow).await.unwrap();
    bus.ready(&fast_sub).await.unwrap();
    for i in 0..100 {
        bus.publish("f/x", i.to_string(), QoS::AtLeastOnce, false)
            .await
            .unwrap();
    }
    // The fast subscription got all of them while the slow one is stuck.
    for i in 0..100 {
        assert_eq!(next(&mut fast).await.payload, i.to_string());
    }
    let dropped = bus
        .health()
        .connection
        .subscriptions
        .iter()
        .find(|s| s.id == slow.id())
        .unwrap()
        .dropped;
    // One in the handler, ten queued, the rest dropped.
    assert_eq!(dropped, 100 - 11, "{:?}", bus.health());
    gate.add_permits(1000);
    // The marker goes out once the slow handler emptied its queue: sent earlier, it could
    // find the queue still full and be dropped like the flood.
    let deadline = Instant::now() + Duration::from_secs(5);
    while got.lock().unwrap().len() < 11 {
        assert!(Instant::now() < deadline, "{:?}", got.lock().unwrap());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    bus.publish("f/x", "marker", QoS::AtLeastOnce, false)
        .await
        .unwrap();
    assert_eq!(&next(&mut fast).await.payload[..], b"marker");
    let deadline = Instant::now() + Duration::from_secs(5);
    while got.lock().unwrap().last().map(String::as_str) != Some("marker") {
        assert!(Instant::now() < deadline, "{:?}", got.lock().unwrap());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let got = got.lock().unwrap().clone();
    let expected: Vec<String> = (0..11)
        .map(|i| i.to_string())
        .chain(["marker".into()])
        .collect();
    assert_eq!(got, expected);
    bus.shutdown(Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_will_is_published_at_a_clean_stop_and_cancel_unsubscribes() {
    let broker = Mosquitto::start();
    let mut peer = Peer::connect(broker.port, &["w/#"]).await;
    let bus = MqttBus::new(config(broker.port), BusMetrics::detached()).unwrap();
    let will = Will {
        topic: "w/svc".into(),
        payload: b"{\"data\":null}".to_vec(),
        retain: true,
    };
    let (sink, mut rx) = forward();
    let sub = bus.subscribe("w/#", QoS::AtLeastOnce, sink).unwrap();
    bus.start();
    bus.hold_wills(&[("p".into(), will)]).await.unwrap();
    assert!(bus.wills_held(Duration::from_secs(5)).await);
    assert!(bus.health().wills[0].held);
    bus.ready(&sub).await.unwrap();
    sub.cancel();
    bus.publish("w/alive", "yes", QoS::AtLeastOnce, true)
        .await
        .unwrap();
    let seen = peer.until("w/alive", Duration::from_secs(5)).await;
    assert_eq!(seen.len(), 1);
    bus.shutdown(Duration::from_secs(2)).await;
    let will = peer.next(Duration::from_secs(5)).await.expect("the will");
    assert_eq!((will.topic.as_str(), will.retain), ("w/svc", false));
    assert_eq!(&will.payload[..], b"{\"data\":null}");
    // Cancelled before the publishes: nothing reached the handler.
    assert!(rx.try_recv().is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_over_the_limit_is_dropped_and_the_connection_goes_on() {
    let broker = Mosquitto::start();
    let bus = MqttBus::new(
        MqttConfig {
            max_message_size: 10,
            ..config(broker.port)
        },
        BusMetrics::detached(),
    )
    .unwrap();
    let (sink, mut rx) = forward();
    let sub = bus.subscribe("big/#", QoS::AtLeastOnce, sink).unwrap();
    bus.start();
    bus.ready(&sub).await.unwrap();
    // Counted from here: whatever the start-up took, the large message must cost none.
    let before = bus.health().connection.reconnects;
    let peer = Peer::connect(broker.port, &[]).await;
    peer.client
        .publish("big/x", QoS::AtLeastOnce, false, vec![b'x'; 11])
        .await
        .unwrap();
    peer.client
        .publish("big/marker", QoS::AtLeastOnce, false, "small")
        .await
        .unwrap();
    let m = next(&mut rx).await;
    assert_eq!(m.topic, "big/marker");
    let h = bus.health().connection;
    assert_eq!((h.state, h.reconnects), (MqttState::Connected, before));
    bus.shutdown(Duration::from_secs(2)).await;
}

/// Publishes to itself through `bus` and waits for it: the transport works end to end.
async fn round_trip(bus: &MqttBus) {
    let (sink, mut rx) = forward();
    let sub = bus.subscribe("rt/#", QoS::AtLeastOnce, sink).unwrap();
    bus.start();
    bus.ready(&sub).await.unwrap();
    bus.publish("rt/x", "over", QoS::AtLeastOnce, false)
        .await
        .unwrap();
    assert_eq!(&next(&mut rx).await.payload[..], b"over");
    bus.shutdown(Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_without_verification_accepts_a_self_signed_broker_and_with_it_refuses() {
    let broker = Mosquitto::tls();
    let bus = MqttBus::new(
        MqttConfig {
            protocol: Protocol::Mqtts,
            ..config(broker.port)
        },
        BusMetrics::detached(),
    )
    .unwrap();
    round_trip(&bus).await;

    let checked = MqttBus::new(
        MqttConfig {
            protocol: Protocol::Mqtts,
            tls_verify: true,
            ..config(broker.port)
        },
        BusMetrics::detached(),
    )
    .unwrap();
    checked.start();
    let deadline = Instant::now() + Duration::from_secs(10);
    while checked.health().connection.last_error.is_none() {
        assert!(Instant::now() < deadline, "{:?}", checked.health());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let h = checked.health().connection;
    assert_eq!(h.state, MqttState::Connecting);
    assert!(h.last_error.unwrap().to_lowercase().contains("certificate"));
    checked.shutdown(Duration::from_secs(1)).await;
}
