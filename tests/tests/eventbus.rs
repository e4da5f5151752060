//! The eventbus through the real host and real plugins, against the real broker, with an
//! independent lapin client (`integration_tests::amqp::Peer`) on the other side.

use std::time::Duration;

use integration_tests::{
    amqp::{self, SyncPeer},
    free_port, testkit_host as kit, testkit_received as received, wait_until, Host, PluginDir,
};
use serde_json::{json, Value};

/// Waits until `n` subscriptions are active (their queues exist).
fn wait_active(host: &Host, n: usize) {
    let ok = wait_until(Duration::from_secs(20), || {
        let (_, body) = host.health();
        body["eventbus"]["subscriptions"]
            .as_array()
            .is_some_and(|subs| subs.iter().filter(|s| s["state"] == "active").count() >= n)
    });
    assert!(ok, "subscriptions not active: {}", host.health().1);
}

fn wait_received(host: &Host, n: usize) -> Vec<Value> {
    let ok = wait_until(Duration::from_secs(15), || received(host).len() >= n);
    assert!(
        ok,
        "expected {n} messages, got {:?}\n{}",
        received(host),
        host.stderr.text()
    );
    received(host)
}

/// testkit's publish route: `{"ok"}` or `{"ok": false, "kind", "error"}`.
fn kit_publish(host: &Host, body: Value) -> Value {
    host.post_json("/kit/bus/publish", body).json().unwrap()
}

/// The error text of a failed [`kit_publish`], after checking it failed with `kind`.
fn publish_error<'a>(res: &'a Value, kind: &str) -> &'a str {
    assert_eq!(
        (&res["ok"], res["kind"].as_str()),
        (&json!(false), Some(kind)),
        "{res}"
    );
    res["error"].as_str().unwrap_or_default()
}

#[test]
fn plugin_receives_any_json_value_from_an_independent_publisher() {
    let exchange = amqp::unique("ex-in");
    let (host, _dir) = kit(&exchange, &[]);
    wait_active(&host, 1);
    let values = [
        json!({"ok": 1}),
        json!([1, "two"]),
        json!("text"),
        json!(42),
        json!(1.5),
        json!(true),
        json!(null),
    ];
    let peer = SyncPeer::connect();
    for (i, value) in values.iter().enumerate() {
        peer.publish_json(&exchange, &format!("key.{i}"), value);
    }
    let got = wait_received(&host, values.len());
    for (i, value) in values.iter().enumerate() {
        assert_eq!(got[i]["message"], *value, "in order, intact");
        assert_eq!(got[i]["key"], format!("key.{i}"));
        assert_eq!(got[i]["sub"], format!("<# @ {exchange}>"));
    }
}

#[test]
fn plugin_publishes_to_an_independent_consumer_with_the_original_topology() {
    let exchange = amqp::unique("ex-out");
    let (host, _dir) = kit("", &[]);
    let peer = SyncPeer::connect();
    // Declared as brewblox-service 0.20.0 declares it: the host's declaration must match.
    peer.declare_like_original(&exchange, lapin::ExchangeKind::Topic);
    let mut rx = peer.consume(&exchange, "state.*");
    let res = host.post_json(
        "/kit/bus/publish",
        json!({"exchange": exchange, "routing": "state.kit", "message": {"temp": 20.5, "u": "é"}}),
    );
    assert_eq!(res.json::<Value>().unwrap(), json!({"ok": true}));
    let delivery = rx.recv(amqp::WAIT, "published message");
    assert_eq!(delivery.routing_key.as_str(), "state.kit");
    let body: Value = serde_json::from_slice(&delivery.data).unwrap();
    assert_eq!(body, json!({"temp": 20.5, "u": "é"}));
    assert!(
        delivery.properties.content_type().is_none(),
        "no properties, like the original"
    );
    let rows = peer.block_on(amqp::list(
        "exchanges",
        &["name", "type", "durable", "auto_delete"],
    ));
    let row = rows
        .iter()
        .find(|r| r[0] == exchange)
        .expect("exchange listed");
    assert_eq!(&row[1..], ["topic", "false", "true"]);
}

#[test]
fn subscriptions_from_handlers_follow_topic_wildcards() {
    let exchange = amqp::unique("ex-wild");
    let (host, _dir) = kit("", &[]);
    for (tag, routing) in [("star", "a.*"), ("hash", "a.#")] {
        let res = host.post_json(
            "/kit/bus/subscribe",
            json!({"exchange": exchange, "routing": routing, "tag": tag}),
        );
        assert_eq!(res.status(), 200);
    }
    wait_active(&host, 2);
    let peer = SyncPeer::connect();
    // The last, "a.end", is the sentinel: both subscriptions match it, and each queue
    // delivers in order, so once both have it every earlier delivery is in.
    for key in ["a", "a.b", "a.b.c", "b.a", "end", "a.end"] {
        peer.publish_json(&exchange, key, &json!(key));
    }
    let ok = wait_until(Duration::from_secs(15), || {
        received(&host)
            .iter()
            .filter(|m| m["key"] == "a.end")
            .count()
            == 2
    });
    assert!(ok, "sentinels: {:?}", received(&host));
    // a → a.# only; a.b → both; a.b.c → a.# only; b.a and end → none.
    let mut seen: Vec<(String, String)> = received(&host)
        .iter()
        .filter(|m| m["key"] != "a.end")
        .map(|m| {
            (
                m["tag"].as_str().unwrap().to_owned(),
                m["key"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    seen.sort();
    let expected = [
        ("hash", "a"),
        ("hash", "a.b"),
        ("hash", "a.b.c"),
        ("star", "a.b"),
    ];
    assert_eq!(seen, expected.map(|(t, k)| (t.to_owned(), k.to_owned())));
}

#[test]
fn fanout_and_direct_exchanges() {
    let (fanout, direct) = (amqp::unique("ex-fan"), amqp::unique("ex-dir"));
    let (host, _dir) = kit("", &[]);
    host.post_json(
        "/kit/bus/subscribe",
        json!({"exchange": fanout, "routing": "ignored", "exchange_type": "fanout", "tag": "fan"}),
    );
    host.post_json(
        "/kit/bus/subscribe",
        json!({"exchange": direct, "routing": "exact", "exchange_type": "direct", "tag": "dir"}),
    );
    wait_active(&host, 2);
    let res = host.post_json(
        "/kit/bus/publish",
        json!({"exchange": fanout, "routing": "whatever", "message": 1, "exchange_type": "fanout"}),
    );
    assert_eq!(res.json::<Value>().unwrap()["ok"], true);
    host.post_json(
        "/kit/bus/publish",
        json!({"exchange": direct, "routing": "other", "message": 2, "exchange_type": "direct"}),
    );
    host.post_json(
        "/kit/bus/publish",
        json!({"exchange": direct, "routing": "exact", "message": 3, "exchange_type": "direct"}),
    );
    // Sentinels, one per exchange, after the messages under test.
    host.post_json(
        "/kit/bus/publish",
        json!({"exchange": fanout, "routing": "x", "message": "end", "exchange_type": "fanout"}),
    );
    host.post_json("/kit/bus/publish",
        json!({"exchange": direct, "routing": "exact", "message": "end", "exchange_type": "direct"}),
    );
    let got = wait_received(&host, 4);
    let messages: Vec<Value> = got
        .iter()
        .map(|m| m["message"].clone())
        .filter(|m| m != "end")
        .collect();
    assert_eq!(messages.len(), 2, "{got:?}");
    assert!(
        messages.contains(&json!(1)) && messages.contains(&json!(3)),
        "{messages:?}"
    );
}

#[test]
fn handlers_can_be_swapped_and_subscriptions_cancelled() {
    let exchange = amqp::unique("ex-swap");
    let (host, _dir) = kit(&exchange, &[]);
    wait_active(&host, 1);
    let publish = |n: i64| {
        let res = host.post_json(
            "/kit/bus/publish",
            json!({"exchange": exchange, "routing": "k", "message": n}),
        );
        assert_eq!(res.json::<Value>().unwrap()["ok"], true);
    };
    publish(1);
    wait_received(&host, 1);
    assert_eq!(host.post_json("/kit/bus/0/swap", json!({})).status(), 200);
    publish(2);
    let got = wait_received(&host, 2);
    assert_eq!(got[1]["tag"], "swapped");
    let queue = host.health().1["eventbus"]["subscriptions"][0]["queue"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        host.post_json("/kit/bus/0/cancel", json!({}))
            .json::<Value>()
            .unwrap()["cancelled"],
        true
    );
    let gone = wait_until(Duration::from_secs(10), || {
        host.health().1["eventbus"]["subscriptions"]
            .as_array()
            .is_some_and(|s| s.is_empty())
    });
    assert!(gone, "{}", host.health().1);
    let peer = SyncPeer::connect();
    assert!(
        wait_until(Duration::from_secs(10), || !peer.queue_exists(&queue)),
        "queue {queue} deleted"
    );
    // A second subscription to the same key is the sentinel: bound before the publish, it
    // gets message 3; the cancelled one must not.
    let res: Value = host
        .post_json(
            "/kit/bus/subscribe",
            json!({"exchange": exchange, "routing": "k", "tag": "sentinel", "ready": true}),
        )
        .json()
        .unwrap();
    assert_eq!(res["ready"], true, "{res}");
    publish(3);
    let got = wait_received(&host, 3);
    assert_eq!(got[2]["tag"], "sentinel", "{got:?}");
    assert_eq!(received(&host).len(), 3, "nothing after cancel: {got:?}");
}

#[test]
fn failing_handlers_and_malformed_messages_are_logged_and_dropped() {
    let exchange = amqp::unique("ex-bad");
    let (mut host, _dir) = kit(&exchange, &[]);
    wait_active(&host, 1);
    let peer = SyncPeer::connect();
    for body in [
        &b"\"fail\""[..],
        b"\"panic\"",
        b"{not json",
        b"",
        b"\xff\xfe",
        b"\"good\"",
    ] {
        peer.publish(&exchange, "k", body);
    }
    let got = wait_received(&host, 1);
    assert_eq!(got[0]["message"], "good");
    let sub = format!("<# @ {exchange}>");
    let log = &host.stderr;
    assert!(
        wait_until(Duration::from_secs(5), || log
            .text()
            .matches(&format!("Exception relaying message in {sub}"))
            .count()
            >= 5),
        "{}",
        log.text()
    );
    let text = log.text();
    assert!(text.contains("handler refused the message"), "{text}");
    assert!(
        text.contains("handler kaboom") || text.contains("panicked"),
        "{text}"
    );
    assert!(
        text.contains("message is not JSON") && text.contains("empty message body"),
        "{text}"
    );
    assert!(host.is_running());
    assert_eq!(host.get("/_service/status").status(), 200);
    assert!(host.stop().success());
}

#[test]
fn a_channel_error_reaches_the_plugin_and_the_next_publish_works() {
    let exchange = amqp::unique("ex-406");
    let (host, _dir) = kit("", &[]);
    let peer = SyncPeer::connect();
    peer.declare_like_original(&exchange, lapin::ExchangeKind::Fanout);
    let publish = |body: Value| kit_publish(&host, body);
    let res = publish(json!({"exchange": exchange, "routing": "k", "message": 1}));
    assert_eq!(res["ok"], false);
    assert_eq!(res["kind"], "Rejected", "{res}");
    assert!(res["error"].as_str().unwrap().contains("406"), "{res}");
    // The original's publisher stayed broken here (docs/brewblox-service-0.20.0.md, quirk 5).
    let res = publish(
        json!({"exchange": exchange, "routing": "k", "message": 1, "exchange_type": "fanout"}),
    );
    assert_eq!(res["ok"], true, "{res}");
    let missing = amqp::unique("ex-missing");
    let res = publish(json!({"exchange": missing, "routing": "k", "message": 1, "declare": false}));
    assert!(res["error"].as_str().unwrap().contains("404"), "{res}");
    let res =
        publish(json!({"exchange": "amq.topic", "routing": "k", "message": 1, "declare": false}));
    assert_eq!(
        res["ok"], true,
        "pre-declared exchange without declaring: {res}"
    );
    peer.delete_exchange(&exchange);
}

/// Big messages from a plugin and through `/_debug/publish`, whose body limit is
/// `--max-body-size` too (axum's `Bytes` extractor would have capped it at 2 MiB).
#[test]
fn big_messages_round_trip() {
    let exchange = amqp::unique("ex-big");
    let (host, _dir) = kit(&exchange, &["--max-body-size", "4194304"]);
    wait_active(&host, 1);
    let big = "x".repeat(1 << 20);
    let res = host.post_json(
        "/kit/bus/publish",
        json!({"exchange": exchange, "routing": "big", "message": big}),
    );
    assert_eq!(res.json::<Value>().unwrap()["ok"], true);
    let got = wait_received(&host, 1);
    assert_eq!(got[0]["message"].as_str().unwrap(), big);
    let bigger = "d".repeat(3 << 20);
    let res = host.post_json(
        "/_debug/publish",
        json!({"exchange": exchange, "routing": "big", "message": bigger}),
    );
    assert_eq!(res.status(), 200, "{}", res.text().unwrap());
    let got = wait_received(&host, 2);
    assert_eq!(got[1]["message"].as_str(), Some(bigger.as_str()));
}

#[test]
fn messages_over_the_hosts_cap_are_refused_both_ways_and_nothing_else_is() {
    let exchange = amqp::unique("ex-cap");
    let (host, _dir) = kit(&exchange, &["--eventbus-max-message-size", "1000"]);
    wait_active(&host, 1);
    let big = "x".repeat(2000);
    // From a plugin: an `Invalid` error naming both sizes, before the broker sees anything.
    let res: Value = kit_publish(
        &host,
        json!({"exchange": exchange, "routing": "k", "message": big}),
    );
    let error = publish_error(&res, "Invalid");
    assert!(
        error.contains("2002 bytes") && error.contains("limit of 1000 bytes"),
        "{error}"
    );
    // Through /_debug/publish: 413 with the same words.
    let res = host.post_json(
        "/_debug/publish",
        json!({"exchange": exchange, "routing": "k", "message": big}),
    );
    assert_eq!(res.status(), 413);
    let text = res.text().unwrap();
    assert!(text.contains("limit of 1000 bytes"), "{text}");
    // Into a plugin: logged and rejected; the next message is delivered.
    let peer = SyncPeer::connect();
    peer.publish_json(&exchange, "k.big", &json!(big));
    peer.publish_json(&exchange, "k.small", &json!("small"));
    let got = wait_received(&host, 1);
    assert_eq!(got[0]["message"], "small");
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(
        host.stderr.wait_for(
            &format!(
                "Exception relaying message in <# @ {exchange}>: message with routing key \
                 'k.big' of 2002 bytes is larger than the limit of 1000 bytes"
            ),
            Duration::from_secs(10)
        ),
        "{}",
        host.stderr.text()
    );
    // At the cap is fine both ways.
    let exact = "y".repeat(998);
    let res: Value = kit_publish(
        &host,
        json!({"exchange": exchange, "routing": "k", "message": exact}),
    );
    assert_eq!(res["ok"], true, "{res}");
    let got = wait_received(&host, 2);
    assert_eq!(got[1]["message"], exact.as_str());
}

/// A message over the broker's size limit (the host's own cap turned off): the broker closes
/// the publisher's channel; that publish fails at once with the broker's reason, the next one
/// works, and the listener's channel never noticed.
#[test]
fn a_publish_over_the_brokers_limit_fails_on_its_own_channel_only() {
    let broker_limit = amqp::BrokerSettings::set(&[("max_message_size", 4 << 20)]);
    let exchange = amqp::unique("ex-brokercap");
    let (host, _dir) = kit(
        &exchange,
        &[
            "--eventbus-max-message-size",
            "0",
            "--max-body-size",
            "16777216",
        ],
    );
    wait_active(&host, 1);
    let publish = |message: Value| -> Value {
        kit_publish(
            &host,
            json!({"exchange": exchange, "routing": "k", "message": message}),
        )
    };
    let res = publish(json!("z".repeat(5 << 20)));
    let error = publish_error(&res, "Rejected");
    assert!(
        error.contains("406") && error.contains("max size"),
        "{error}"
    );
    let res = publish(json!("after"));
    assert_eq!(res["ok"], true, "{res}");
    let got = wait_received(&host, 1);
    assert_eq!(got[0]["message"], "after");
    assert_eq!(got.len(), 1);
    let (status, body) = host.health();
    assert_eq!(status, 200, "{body}");
    drop(broker_limit);
}

/// A slow consumer end to end (the bus alone: `host/tests/bus_wire.rs`): with `--eventbus-prefetch`
/// a slow plugin handler holds at most that many unacknowledged messages (the backlog waits in
/// the broker, not in the host), and another subscription's messages are not held up behind it.
#[test]
fn a_slow_handler_holds_at_most_prefetch_messages_and_other_subscriptions_go_on() {
    let slow = amqp::unique("ex-slow");
    let other = amqp::unique("ex-other");
    let (host, _dir) = kit(&slow, &["--eventbus-prefetch", "5"]);
    let res = host.post_json(
        "/kit/bus/subscribe",
        json!({"exchange": other, "routing": "#", "tag": "other"}),
    );
    assert_eq!(res.status(), 200);
    wait_active(&host, 2);
    let (_, body) = host.health();
    let queue = body["eventbus"]["subscriptions"]
        .as_array()
        .and_then(|subs| subs.iter().find(|s| s["exchange"] == slow.as_str()))
        .and_then(|s| s["queue"].as_str())
        .unwrap_or_else(|| panic!("no queue for {slow}: {body}"))
        .to_owned();
    let peer = SyncPeer::connect();
    let backlog = 40;
    for i in 0..backlog {
        // 150 ms each: the backlog takes the handler ~6 s.
        peer.publish_json(&slow, &format!("k.{i}"), &json!("wait:150"));
    }
    peer.publish_json(&other, "ping", &json!("ping"));
    // The other subscription's message arrives while the slow one still has most of its work.
    let ok = wait_until(Duration::from_secs(5), || {
        received(&host).iter().any(|m| m["tag"] == "other")
    });
    assert!(ok, "{:?}", received(&host));
    let done_when_other_arrived = received(&host)
        .iter()
        .filter(|m| m["tag"] == "startup")
        .count();
    assert!(
        done_when_other_arrived < backlog / 2,
        "{done_when_other_arrived} of {backlog} slow messages were handled first"
    );
    // While the backlog drains, the broker never has more than 5 of it out with the host.
    let mut samples = Vec::new();
    for _ in 0..3 {
        let rows = peer.block_on(amqp::list(
            "queues",
            &["name", "messages_unacknowledged", "messages_ready"],
        ));
        let row = rows
            .iter()
            .find(|row| row.first() == Some(&queue))
            .unwrap_or_else(|| panic!("{queue} not listed: {rows:?}"))
            .clone();
        let count = |i: usize| row.get(i).and_then(|v| v.parse::<u64>().ok());
        samples.push((count(1), count(2)));
    }
    assert!(
        samples
            .iter()
            .all(|(unacked, _)| unacked.is_some_and(|n| n <= 5)),
        "unacked, ready: {samples:?}"
    );
    assert!(
        samples[0].1.is_some_and(|ready| ready > 0),
        "the backlog should wait in the broker: {samples:?}"
    );
    // Everything arrives, in order.
    let ok = wait_until(Duration::from_secs(30), || {
        received(&host)
            .iter()
            .filter(|m| m["tag"] == "startup")
            .count()
            >= backlog
    });
    assert!(ok, "{:?}", received(&host));
    let keys: Vec<String> = received(&host)
        .iter()
        .filter(|m| m["tag"] == "startup")
        .map(|m| m["key"].as_str().unwrap_or_default().to_owned())
        .collect();
    let expected: Vec<String> = (0..backlog).map(|i| format!("k.{i}")).collect();
    assert_eq!(keys, expected);
}

#[test]
fn debug_endpoints_publish_and_subscribe() {
    let exchange = amqp::unique("ex-debug");
    let (host, _dir) = kit("", &[]);
    let res = host.post_json(
        "/_debug/subscribe",
        json!({"exchange": exchange, "routing": "dbg.#"}),
    );
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "application/octet-stream");
    wait_active(&host, 1);
    let peer = SyncPeer::connect();
    let mut rx = peer.consume(&exchange, "dbg.#");
    let res = host.post_json(
        "/_debug/publish",
        json!({"exchange": exchange, "routing": "dbg.x", "message": {"v": [1, 2]}}),
    );
    assert_eq!(res.status(), 200);
    assert_eq!(res.text().unwrap(), "");
    let delivery = rx.recv(amqp::WAIT, "debug publish");
    assert_eq!(
        serde_json::from_slice::<Value>(&delivery.data).unwrap(),
        json!({"v": [1, 2]})
    );
    assert!(host.stderr.wait_for(&format!("Unhandled event: subscription=<dbg.# @ {exchange}>, key=dbg.x, message={{\"v\":[1,2]}}"), Duration::from_secs(10)), "{}", host.stderr.text());

    for (body, field) in [
        (json!({"exchange": "e", "message": 1}), Some("routing")),
        (json!({"routing": "r", "message": 1}), Some("exchange")),
        (json!({"exchange": "e", "routing": "r"}), Some("message")),
        (
            json!({"exchange": 1, "routing": "r", "message": 1}),
            Some("exchange"),
        ),
        (json!([1, 2]), None),
    ] {
        let res = host.post_json("/_debug/publish", body.clone());
        assert_eq!(res.status(), 400, "{body}");
        let error: Value = res.json().unwrap();
        assert_eq!(error["field"].as_str(), field, "{error}");
    }
    let res = host
        .client
        .post(host.url("/_debug/publish"))
        .body("{nope")
        .send()
        .unwrap();
    assert_eq!(res.status(), 400);
    assert!(res.json::<Value>().unwrap()["error"]
        .as_str()
        .unwrap()
        .starts_with("invalid JSON body"));
    let res = host.post_json("/_debug/subscribe", json!({"exchange": "e"}));
    assert_eq!(res.status(), 400);
    assert_eq!(res.json::<Value>().unwrap()["field"], "routing");
}

#[test]
fn an_unreachable_broker_is_503_and_unavailable_but_http_serves() {
    let dead = free_port().to_string();
    let exchange = amqp::unique("ex-dead");
    let (host, _dir) = kit(
        &exchange,
        &[
            "--eventbus-port",
            &dead,
            "--eventbus-publish-timeout",
            "3",
            "--debug",
        ],
    );
    assert_eq!(host.get("/_service/status").status(), 200);
    let res = host.post_json(
        "/_debug/publish",
        json!({"exchange": "e", "routing": "r", "message": 1}),
    );
    assert_eq!(res.status(), 503);
    assert!(res.text().unwrap().starts_with("503: "));
    let res: Value = kit_publish(
        &host,
        json!({"exchange": "e", "routing": "r", "message": 1}),
    );
    assert_eq!(res["ok"], false);
    assert_eq!(res["unavailable"], true, "{res}");
    let (status, body) = host.health();
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["status"], "unhealthy");
    assert_eq!(body["eventbus"]["state"], "connecting");
    assert_eq!(body["eventbus"]["subscriptions"][0]["state"], "pending");
    assert_eq!(
        body["eventbus"]["subscriptions"][0]["plugin"],
        "testkit-plugin"
    );
    // Warned once, not per retry: the retries show as debug lines (the sentinel), the
    // warning once.
    let retried = wait_until(Duration::from_secs(10), || {
        let retries = ["DEBUG", "Connection error in event bus listener"];
        host.stderr.count(&retries) >= 3
    });
    assert!(retried, "{}", host.stderr.text());
    let warnings = host.stderr.count(&["WARNING", "listener"]);
    assert_eq!(warnings, 1, "{}", host.stderr.text());
}

#[test]
fn health_reports_every_part() {
    let exchange = amqp::unique("ex-health");
    let dir = PluginDir::with(&["device-plugin", "testkit-plugin"]);
    let host = Host::builder(dir.path())
        .name(&amqp::unique("svc"))
        .args(&[
            "--testkit-exchange",
            &exchange,
            "--device-exchange",
            &exchange,
        ])
        .start();
    wait_active(&host, 1);
    let (status, body) = host.health();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "ok");
    assert_eq!(body["service"], host.name);
    let names: Vec<&str> = body["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["device-plugin", "testkit-plugin"]);
    assert!(body["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .all(|p| p["state"] == "running"));
    assert!(body["features"]
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f["name"] == "device" && f["plugin"] == "device-plugin"));
    let sub = &body["eventbus"]["subscriptions"][0];
    assert_eq!(sub["plugin"], "testkit-plugin");
    assert_eq!(sub["exchange"], exchange);
    assert!(sub["queue"].as_str().unwrap().starts_with("amq.gen-"));
    assert_eq!(body["eventbus"]["listener"]["state"], "connected");
    // The status endpoint keeps its exact body whatever the health.
    assert_eq!(
        host.get("/_service/status").text().unwrap(),
        r#"{"status": "ok"}"#
    );
}

#[test]
fn device_plugin_publishes_its_state_under_the_service_name() {
    let exchange = amqp::unique("brewcast");
    let dir = PluginDir::with(&["device-plugin"]);
    let name = amqp::unique("fermenter");
    let peer = SyncPeer::connect();
    peer.declare_like_original(&exchange, lapin::ExchangeKind::Topic);
    let mut rx = peer.consume(&exchange, &name);
    let _host = Host::builder(dir.path())
        .name(&name)
        .args(&[
            "--device-exchange",
            &exchange,
            "--update-interval",
            "0.1",
            "--device-id",
            "chamber-7",
        ])
        .start();
    let delivery = rx.recv(amqp::WAIT, "device state");
    assert_eq!(delivery.routing_key.as_str(), name.as_str());
    let state: Value = serde_json::from_slice(&delivery.data).unwrap();
    assert_eq!(state["device_id"], "chamber-7");
    assert!(state["setpoint"].is_number(), "{state}");
}

#[test]
fn recovers_after_the_broker_closes_the_connection() {
    let exchange = amqp::unique("ex-recover");
    let (host, _dir) = kit(&exchange, &[]);
    wait_active(&host, 1);
    let listener = format!("brewblox-host:{}:listener", host.name);
    let peer = SyncPeer::connect();
    peer.block_on(amqp::close_connection(&listener));
    let ok = wait_until(Duration::from_secs(20), || {
        let (_, body) = host.health();
        body["eventbus"]["reconnects"].as_u64().unwrap_or(0) >= 1
            && body["eventbus"]["subscriptions"][0]["state"] == "active"
    });
    assert!(ok, "recovered: {}", host.health().1);
    peer.publish_json(&exchange, "after", &json!("after"));
    let got = wait_received(&host, 1);
    assert_eq!(got[0]["message"], "after");
}

#[test]
fn sigterm_under_load_exits_0_and_leaves_no_connection() {
    let exchange = amqp::unique("ex-load");
    let (mut host, _dir) = kit(&exchange, &[]);
    wait_active(&host, 1);
    let prefix = format!("brewblox-host:{}:", host.name);
    let peer = SyncPeer::connect();
    for i in 0..2000 {
        let body = if i % 100 == 0 {
            "\"sleep:20\"".to_owned()
        } else {
            i.to_string()
        };
        peer.publish(&exchange, "load", body.as_bytes());
    }
    host.signal(libc::SIGTERM);
    let status = host
        .wait_exit(Duration::from_secs(30))
        .expect("exits under load");
    assert_eq!(status.code(), Some(0), "{}", host.stderr.text());
    let gone = wait_until(Duration::from_secs(10), || {
        peer.block_on(amqp::connections(&prefix)).is_empty()
    });
    assert!(
        gone,
        "connections left: {:?}",
        peer.block_on(amqp::connections(&prefix))
    );
}

#[test]
fn credentials_never_appear_in_logs() {
    let dir = PluginDir::with(&["testkit-plugin"]);
    let exchange = amqp::unique("ex-secret");
    // A wrong password: the broker refuses, and the host says so without the password.
    let host = Host::builder(dir.path())
        .name(&amqp::unique("svc"))
        .args(&[
            "--debug",
            "--testkit-exchange",
            &exchange,
            "--eventbus-user",
            "guest",
        ])
        .env("BREWBLOX_EVENTBUS_PASSWORD", "s3cr3t-pw")
        .start();
    // The refusal is logged (the sentinel: the line that could hold the password is there).
    assert!(host.stderr.wait_for(
        "Connection error in event bus listener",
        Duration::from_secs(10)
    ));
    assert!(
        !host.stderr.text().contains("s3cr3t-pw"),
        "{}",
        host.stderr.text()
    );
    drop(host);

    let host = Host::builder(dir.path())
        .name(&amqp::unique("svc"))
        .args(&["--debug", "--testkit-exchange", &exchange])
        .args(&["--eventbus-url", "amqp://guest:guest@127.0.0.1:5672/%2f"])
        .start();
    wait_active(&host, 1);
    assert!(
        !host.stderr.text().contains("guest:guest"),
        "{}",
        host.stderr.text()
    );
    let out = Host::builder(dir.path())
        .env("BREWBLOX_EVENTBUS_PASSWORD", "s3cr3t-pw")
        .arg("--help")
        .run_to_exit();
    assert!(!out.stdout.contains("s3cr3t-pw"), "help hides env values");
}
