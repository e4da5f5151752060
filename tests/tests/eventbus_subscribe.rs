//! Subscriptions made over HTTP and waited for: the broker's verdict is the answer, a
//! refused one leaves nothing behind, identical ones are one, and there is a cap; a plugin
//! that waits for `ready()` receives what is published right after.

use std::time::Duration;

use integration_tests::{
    amqp::{self, SyncPeer},
    testkit_host as kit, testkit_received as received, wait_until, Host,
};
use serde_json::{json, Value};

fn subscriptions(host: &Host) -> Vec<Value> {
    host.health().1["eventbus"]["subscriptions"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[test]
fn debug_subscribe_to_an_exchange_the_broker_refuses_is_409_and_leaves_nothing() {
    let (host, _dir) = kit("", &[]);
    let peer = SyncPeer::connect();
    let fanout = amqp::unique("ex-fanout");
    peer.declare_like_original(&fanout, lapin::ExchangeKind::Fanout);
    let _bound = peer.consume(&fanout, ""); // keeps the auto-delete exchange alive
    let body = json!({"exchange": fanout, "routing": "#"});
    let res = host.post_json("/_debug/subscribe", body.clone());
    assert_eq!(res.status(), 409);
    let text = res.text().unwrap();
    assert!(text.starts_with("409: ") && text.contains("406"), "{text}");
    let (status, report) = host.health();
    assert_eq!(status, 200, "{report}");
    assert_eq!(subscriptions(&host), Vec::<Value>::new(), "{report}");
    let metrics = || host.get("/_service/metrics").text().unwrap();
    assert!(
        !metrics().contains(&fanout),
        "a refused subscription leaves no series"
    );
    // Once the exchange is gone the same subscription works.
    peer.delete_exchange(&fanout);
    let res = host.post_json("/_debug/subscribe", body);
    assert_eq!(res.status(), 200, "{}", res.text().unwrap());
    let subs = subscriptions(&host);
    assert_eq!(subs.len(), 1);
    assert_eq!(subs[0]["state"], "active", "answered once bound");
    // The sentinel: bound, it has its series (at zero) at once.
    assert!(metrics().contains(&fanout), "{}", metrics());
}

#[test]
fn identical_debug_subscriptions_are_one_and_there_is_a_cap() {
    let (host, _dir) = kit("", &[]);
    let exchange = amqp::unique("ex-dedupe");
    let body = json!({"exchange": exchange, "routing": "k.#"});
    for _ in 0..5 {
        let res = host.post_json("/_debug/subscribe", body.clone());
        assert_eq!(res.status(), 200);
    }
    assert_eq!(subscriptions(&host).len(), 1);
    // The cap counts subscriptions made here: 100 in all.
    for i in 1..100 {
        let res = host.post_json(
            "/_debug/subscribe",
            json!({"exchange": exchange, "routing": format!("k.{i}")}),
        );
        assert_eq!(res.status(), 200, "subscription {i}");
    }
    let res = host.post_json(
        "/_debug/subscribe",
        json!({"exchange": exchange, "routing": "one.too.many"}),
    );
    assert_eq!(res.status(), 409);
    assert!(res.text().unwrap().contains("100"));
    // An existing one is still fine, and the host is healthy.
    assert_eq!(host.post_json("/_debug/subscribe", body).status(), 200);
    assert_eq!(subscriptions(&host).len(), 100);
    assert_eq!(host.health().0, 200);
}

#[test]
fn a_message_published_right_after_ready_is_received() {
    let (host, _dir) = kit("", &[]);
    for round in 0..5 {
        let exchange = amqp::unique("ex-ready");
        let res: Value = host
            .post_json(
                "/kit/bus/subscribe",
                json!({
                    "exchange": exchange, "routing": "#", "tag": "ready", "ready": true,
                    "then_publish": {"routing": "first", "message": round},
                }),
            )
            .json()
            .unwrap();
        assert_eq!(res["ready"], true, "{res}");
        let ok = wait_until(Duration::from_secs(10), || {
            received(&host)
                .iter()
                .any(|m| m["key"] == "first" && m["message"] == round)
        });
        assert!(ok, "round {round}: {:?}", received(&host));
    }
}

#[test]
fn ready_reports_a_refusal_to_the_plugin() {
    let (host, _dir) = kit("", &[]);
    let peer = SyncPeer::connect();
    let fanout = amqp::unique("ex-ready-fanout");
    peer.declare_like_original(&fanout, lapin::ExchangeKind::Fanout);
    let _bound = peer.consume(&fanout, "");
    let res: Value = host
        .post_json(
            "/kit/bus/subscribe",
            json!({"exchange": fanout, "routing": "#", "ready": true}),
        )
        .json()
        .unwrap();
    assert_eq!(res["ready"], false, "{res}");
    assert_eq!(res["kind"], "Rejected", "{res}");
    assert!(
        res["error"].as_str().unwrap_or_default().contains("406"),
        "{res}"
    );
}

#[test]
fn concurrent_debug_subscribes_to_a_refused_exchange_all_get_the_refusal() {
    let (host, _dir) = kit("", &[]);
    let peer = SyncPeer::connect();
    let fanout = amqp::unique("ex-race-fanout");
    peer.declare_like_original(&fanout, lapin::ExchangeKind::Fanout);
    let _bound = peer.consume(&fanout, "");
    // A few rounds of four identical requests released together, so that they overlap.
    for round in 0..5 {
        let body = json!({"exchange": fanout, "routing": format!("r{round}.#")});
        let barrier = std::sync::Barrier::new(4);
        let answers: Vec<(u16, String)> = std::thread::scope(|scope| {
            let calls: Vec<_> = (0..4)
                .map(|_| {
                    let (host, body, barrier) = (&host, body.clone(), &barrier);
                    scope.spawn(move || {
                        barrier.wait();
                        let res = host.post_json("/_debug/subscribe", body);
                        (res.status().as_u16(), res.text().unwrap())
                    })
                })
                .collect();
            calls.into_iter().map(|c| c.join().unwrap()).collect()
        });
        for (status, text) in answers {
            assert_eq!(status, 409, "round {round}: {text}");
            assert!(text.starts_with("409: ") && text.contains("406"), "{text}");
        }
    }
    assert_eq!(subscriptions(&host), Vec::<Value>::new());
    peer.delete_exchange(&fanout);
}
