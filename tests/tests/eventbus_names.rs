//! Exchange names and routing keys AMQP cannot carry (over 255 bytes, control characters)
//! never reach the broker, whichever way they come in: `/_debug/subscribe`,
//! `/_debug/publish`, or a plugin through the SDK. The host stays healthy and its other
//! subscriptions keep delivering.

use std::time::Duration;

use integration_tests::{
    amqp::{self, SyncPeer},
    testkit_host as kit, testkit_received as received, wait_until,
};
use serde_json::{json, Value};

/// A 267-byte exchange name that, sent with its length cut to one byte (267 mod 256 = 11),
/// would end the name after `smuggled-ex` and make the rest the frame's next fields: a
/// `direct` exchange, durable, with an empty argument table.
fn crafted() -> String {
    let mut name = String::from("smuggled-ex");
    name.push_str("\u{6}direct\u{2}\u{0}\u{0}\u{0}\u{0}");
    while name.len() < 267 {
        name.push('x');
    }
    assert_eq!(name.len(), 267);
    name
}

#[test]
fn names_amqp_cannot_carry_are_refused_and_the_bus_stays_healthy() {
    let exchange = amqp::unique("ex-names");
    let (host, _dir) = kit(&exchange, &[]);
    let peer = SyncPeer::connect();
    let ok = wait_until(Duration::from_secs(20), || host.health().0 == 200);
    assert!(ok, "not healthy: {}", host.health().1);

    let long = |n: usize| "s".repeat(n);
    let mut refused = vec![
        (json!({"exchange": long(256), "routing": "k"}), "exchange"),
        (json!({"exchange": long(300), "routing": "k"}), "exchange"),
        (json!({"exchange": crafted(), "routing": "k"}), "exchange"),
        (json!({"exchange": "e", "routing": long(256)}), "routing"),
        (
            json!({"exchange": "e", "routing": "a\nforged line"}),
            "routing",
        ),
    ];
    for (body, field) in refused.drain(..) {
        for path in ["/_debug/subscribe", "/_debug/publish"] {
            let mut body = body.clone();
            body["message"] = json!(1);
            let res = host.post_json(path, body.clone());
            assert_eq!(res.status(), 400, "{path} {body}");
            let error: Value = res.json().unwrap();
            assert_eq!(error["field"], field, "{path}: {error}");
        }
        // Through the SDK: publish (checked in the plugin) and subscribe (checked by the host).
        let mut body = body.clone();
        body["message"] = json!(1);
        // The testkit's routes pass an SDK error on with `?`. Publish is checked in the
        // plugin (a 400 naming the field); subscribe by the host (an Invalid error that
        // names the field, which a route turns into a 500).
        let res = host.post_json("/kit/bus/publish", body.clone());
        assert_eq!(res.status(), 400, "{body}");
        assert_eq!(res.json::<Value>().unwrap()["field"], field, "{body}");
        let res = host.post_json("/kit/bus/subscribe", body.clone());
        assert_ne!(res.status(), 200, "{body}");
        let text = res.text().unwrap();
        assert!(text.contains(&format!("invalid {field}")), "{text}");
    }
    assert!(!peer.exchange_exists("smuggled-ex"));

    // 255 bytes is the most, and works both ways.
    let longest = format!("{exchange}-{}", long(254 - exchange.len()));
    assert_eq!(longest.len(), 255);
    let res = host.post_json(
        "/kit/bus/subscribe",
        json!({"exchange": longest, "routing": "#", "tag": "longest"}),
    );
    assert_eq!(res.status(), 200, "{}", res.text().unwrap());
    let ok = wait_until(Duration::from_secs(20), || {
        let (status, body) = host.health();
        status == 200
            && body["eventbus"]["subscriptions"]
                .as_array()
                .is_some_and(|subs| subs.iter().all(|s| s["state"] == "active") && subs.len() == 2)
    });
    assert!(ok, "{}", host.health().1);
    let res: Value = host
        .post_json(
            "/kit/bus/publish",
            json!({"exchange": longest, "routing": long(255), "message": "longest"}),
        )
        .json()
        .unwrap();
    assert_eq!(res["ok"], true, "{res}");

    // The startup subscription still delivers, and the host is healthy.
    peer.publish_json(&exchange, "after", &json!("after"));
    let ok = wait_until(Duration::from_secs(10), || {
        let got = received(&host);
        let has = |tag: &str, message: &str| {
            got.iter()
                .any(|m| m["tag"] == tag && m["message"] == message)
        };
        has("longest", "longest") && has("startup", "after")
    });
    assert!(ok, "{:?}\n{}", received(&host), host.stderr.text());
    let (status, body) = host.health();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["eventbus"]["reconnects"], 0, "{body}");
}
