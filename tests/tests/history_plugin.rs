//! The history plugin, run for real: the built `libhistory_plugin.so` loaded by the built
//! `brewblox-host`, fed by an independent AMQP client (plain lapin) through the real broker
//! on 127.0.0.1:5672, and read over HTTP.
//!
//! Every test uses an exchange of its own, since tests run in parallel on one broker.

use std::time::{Duration, Instant};

use integration_tests::{
    amqp::{unique, SyncPeer as Peer},
    wait_until, Host, PluginDir,
};
use serde_json::{json, Map, Value};

/// How long the host may take to have its subscription consuming.
const SUBSCRIBE_WAIT: Duration = Duration::from_secs(20);

/// How long a published message may take to show in the history.
const ARRIVAL_WAIT: Duration = Duration::from_secs(10);

/// Probe messages (used only when the host has no health endpoint) carry this in their
/// routing key; the helpers below leave such keys out.
const PROBE: &str = "probe";

/// Whether the health report shows an active subscription to `exchange`; `None` if the
/// host has no health endpoint (or one without subscriptions).
fn health_says_active(host: &Host, exchange: &str) -> Option<bool> {
    let response = host.client.get(host.url("/_service/health")).send().ok()?;
    let health: Value = response.json().ok()?;
    let subscriptions = health.get("eventbus")?.get("subscriptions")?.as_array()?;
    Some(
        subscriptions
            .iter()
            .any(|sub| sub["exchange"] == exchange && sub["state"] == "active"),
    )
}

/// Waits (bounded) until the host consumes from `exchange`, and checks on the way that it
/// declared the exchange as the original does. With a health endpoint it waits for the
/// subscription to be `active`; without, it publishes probe messages with routing key
/// `probe_key` (which must match the subscription and contain [`PROBE`]) until one shows.
fn wait_subscribed(host: &Host, peer: &Peer, exchange: &str, probe_key: &str) {
    assert!(probe_key.contains(PROBE));
    let exists = wait_until(SUBSCRIBE_WAIT, || peer.exchange_exists(exchange));
    assert!(
        exists,
        "the host did not declare exchange {exchange} within {SUBSCRIBE_WAIT:?}:\n{}",
        host.stderr.text()
    );
    peer.declare_like_original(exchange, lapin::ExchangeKind::Topic);

    if health_says_active(host, exchange).is_some() {
        let active = wait_until(SUBSCRIBE_WAIT, || {
            health_says_active(host, exchange) == Some(true)
        });
        assert!(
            active,
            "subscription to {exchange} not active within {SUBSCRIBE_WAIT:?}:\n{}",
            host.stderr.text()
        );
        return;
    }

    let mut last_probe: Option<Instant> = None;
    let seen = wait_until(SUBSCRIBE_WAIT, || {
        if last_probe.is_none_or(|at| at.elapsed() >= Duration::from_millis(200)) {
            peer.publish_json(exchange, probe_key, &json!(PROBE));
            last_probe = Some(Instant::now());
        }
        host.get(&format!("/history/recent/{probe_key}")).status() == 200
    });
    assert!(
        seen,
        "no probe on {exchange} arrived within {SUBSCRIBE_WAIT:?}:\n{}",
        host.stderr.text()
    );
}

/// A host running the history plugin on an exchange of its own, plus the peer client.
struct Setup {
    host: Host,
    peer: Peer,
    exchange: String,
    _plugins: PluginDir,
}

fn start(extra: &[&str]) -> Setup {
    let plugins = PluginDir::with(&["history-plugin"]);
    let exchange = unique("history-test");
    let host = Host::builder(plugins.path())
        .args(&["--history-exchange", &exchange])
        .args(extra)
        .start();
    let peer = Peer::connect();
    wait_subscribed(&host, &peer, &exchange, PROBE);
    Setup {
        host,
        peer,
        exchange,
        _plugins: plugins,
    }
}

/// GET a JSON answer, asserting status and content type.
fn get_json(host: &Host, path: &str, status: u16) -> Value {
    let response = host.get(path);
    let got = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let text = response.text().expect("body");
    assert_eq!(got, status, "GET {path} → {text}");
    assert!(
        content_type.starts_with("application/json"),
        "GET {path}: {content_type} {text}"
    );
    serde_json::from_str(&text).unwrap_or_else(|err| panic!("GET {path}: {err}: {text}"))
}

/// POST a JSON body; status and parsed answer.
fn post(host: &Host, path: &str, body: &str) -> (u16, Value) {
    let response = host
        .client
        .post(host.url(path))
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .expect("POST");
    let status = response.status().as_u16();
    let text = response.text().expect("body");
    let value = serde_json::from_str(&text)
        .unwrap_or_else(|err| panic!("answer to {body} is not JSON ({err}): {text}"));
    (status, value)
}

/// `/history/last` without probe keys.
fn last(host: &Host) -> Map<String, Value> {
    let Value::Object(mut map) = get_json(host, "/history/last", 200) else {
        panic!("/history/last is not an object");
    };
    map.retain(|key, _| !key.contains(PROBE));
    map
}

/// `/history/keys` without probe keys.
fn keys(host: &Host) -> Vec<String> {
    let value = get_json(host, "/history/keys", 200);
    let keys: Vec<String> = serde_json::from_value(value).expect("a list of strings");
    keys.into_iter()
        .filter(|key| !key.contains(PROBE))
        .collect()
}

/// The messages of `/history/recent/{key}{query}`, checking every entry's shape.
fn recent(host: &Host, key: &str, query: &str) -> Vec<Value> {
    let value = get_json(host, &format!("/history/recent/{key}{query}"), 200);
    let entries = value.as_array().expect("a list");
    let mut previous = String::new();
    entries
        .iter()
        .map(|entry| {
            let object = entry.as_object().expect("entries are objects");
            assert_eq!(object.len(), 2, "{entry}");
            let received = entry["received"].as_str().expect("received is text");
            assert!(
                received.len() >= 20 && received.as_bytes()[10] == b'T' && received.ends_with('Z'),
                "RFC 3339 UTC: {received}"
            );
            // Same format and zone throughout, so text order is time order.
            assert!(*received >= *previous, "{previous} then {received}");
            previous = received.to_owned();
            entry["message"].clone()
        })
        .collect()
}

/// Waits (bounded) until `key`'s last message is `expected`.
fn wait_for_last(host: &Host, key: &str, expected: &Value) {
    let mut seen = Map::new();
    let arrived = wait_until(ARRIVAL_WAIT, || {
        seen = last(host);
        seen.get(key) == Some(expected)
    });
    assert!(
        arrived,
        "{key} = {expected} did not arrive within {ARRIVAL_WAIT:?}; last: {seen:?}\n{}",
        host.stderr.text()
    );
}

#[test]
fn records_any_json_value_per_key() {
    let setup = start(&[]);
    let values = [
        ("obj", json!({"temp": 20.5, "nested": {"list": [1, 2]}})),
        ("arr", json!([1, "two", null, {"three": 3}])),
        ("str", json!("plain text")),
        ("num", json!(1)),
        ("num", json!(2.5)),
        ("flag", json!(true)),
        ("nothing", Value::Null),
        ("a.b.c", json!({"dotted": "key"})),
    ];
    for (key, value) in &values {
        setup.peer.publish_json(&setup.exchange, key, value);
    }
    // One subscription handles its messages in order: once the last one shows, all have.
    wait_for_last(&setup.host, "a.b.c", &json!({"dotted": "key"}));

    let expected = json!({
        "obj": {"temp": 20.5, "nested": {"list": [1, 2]}},
        "arr": [1, "two", null, {"three": 3}],
        "str": "plain text",
        "num": 2.5,
        "flag": true,
        "nothing": null,
        "a.b.c": {"dotted": "key"},
    });
    let last = last(&setup.host);
    assert_eq!(Value::Object(last.clone()), expected);
    let order: Vec<&String> = last.keys().collect();
    assert_eq!(
        order,
        keys(&setup.host).iter().collect::<Vec<_>>(),
        "sorted"
    );
    assert_eq!(
        keys(&setup.host),
        ["a.b.c", "arr", "flag", "nothing", "num", "obj", "str"]
    );
    assert_eq!(recent(&setup.host, "num", ""), [json!(1), json!(2.5)]);
    assert_eq!(recent(&setup.host, "nothing", ""), [Value::Null]);
    assert_eq!(recent(&setup.host, "a.b.c", ""), [json!({"dotted": "key"})]);
}

#[test]
fn ring_is_bounded_and_limit_selects_the_newest() {
    let setup = start(&["--history-size", "3"]);
    for n in 1..=5 {
        setup
            .peer
            .publish_json(&setup.exchange, "counter", &json!(n));
    }
    setup
        .peer
        .publish_json(&setup.exchange, "other", &json!("x"));
    wait_for_last(&setup.host, "other", &json!("x"));

    let host = &setup.host;
    assert_eq!(recent(host, "counter", ""), [json!(3), json!(4), json!(5)]);
    assert_eq!(recent(host, "counter", "?limit=2"), [json!(4), json!(5)]);
    assert_eq!(recent(host, "counter", "?limit=1"), [json!(5)]);
    assert_eq!(recent(host, "counter", "?limit=100").len(), 3);
    assert_eq!(recent(host, "other", "?limit=3"), [json!("x")]);
    assert_eq!(last(host)["counter"], json!(5));

    for bad in ["0", "-1", "x", "", "2.5", "99999999999999999999999"] {
        let answer = get_json(host, &format!("/history/recent/counter?limit={bad}"), 400);
        assert_eq!(answer["field"], "limit", "limit={bad}: {answer}");
        assert!(
            answer["error"]
                .as_str()
                .is_some_and(|e| e.contains("limit")),
            "limit={bad}: {answer}"
        );
    }
}

#[test]
fn unknown_key_is_404_json() {
    let setup = start(&[]);
    setup.peer.publish_json(&setup.exchange, "known", &json!(1));
    wait_for_last(&setup.host, "known", &json!(1));
    for key in ["unknown", "known.not", "a.b.c"] {
        let answer = get_json(&setup.host, &format!("/history/recent/{key}"), 404);
        assert!(
            answer["error"].as_str().is_some_and(|e| e.contains(key)),
            "{key}: {answer}"
        );
    }
    // The limit is checked first, but an unknown key with a good limit is still a 404.
    get_json(&setup.host, "/history/recent/unknown?limit=2", 404);
}

#[test]
fn keys_with_a_slash_are_reached_percent_encoded() {
    let setup = start(&[]);
    setup
        .peer
        .publish_json(&setup.exchange, "with/slash", &json!("s"));
    wait_for_last(&setup.host, "with/slash", &json!("s"));
    assert_eq!(recent(&setup.host, "with%2Fslash", ""), [json!("s")]);
}

#[test]
fn non_json_messages_are_dropped_and_later_ones_arrive() {
    let mut setup = start(&[]);
    let peer = &setup.peer;
    peer.publish_json(&setup.exchange, "good", &json!("first"));
    peer.publish(&setup.exchange, "bad", b"not json");
    peer.publish(&setup.exchange, "bad", b"{\"unterminated\": ");
    peer.publish(&setup.exchange, "empty", b"");
    peer.publish(&setup.exchange, "good", b"\"second\"");
    // In order on one subscription: once "second" shows, the bad ones were handled.
    wait_for_last(&setup.host, "good", &json!("second"));
    assert_eq!(keys(&setup.host), ["good"]);
    assert_eq!(
        recent(&setup.host, "good", ""),
        [json!("first"), json!("second")]
    );
    get_json(&setup.host, "/history/recent/bad", 404);
    assert!(setup.host.is_running());
}

#[test]
fn runtime_subscribe_records_the_new_exchange() {
    let setup = start(&[]);
    let host = &setup.host;
    let other = unique("history-test-runtime");
    let body = json!({"exchange": other, "routing": "x.#"}).to_string();

    let (status, answer) = post(host, "/history/subscribe", &body);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        answer,
        json!({"exchange": other, "routing": "x.#", "added": true})
    );
    let (status, again) = post(host, "/history/subscribe", &body);
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["added"], false, "{again}");
    assert_eq!(
        get_json(host, "/history/subscriptions", 200),
        json!([
            {"exchange": setup.exchange, "routing": "#"},
            {"exchange": other, "routing": "x.#"},
        ])
    );

    wait_subscribed(host, &setup.peer, &other, "x.probe");
    setup.peer.publish_json(&other, "x.one", &json!(1));
    setup.peer.publish_json(&other, "y.two", &json!(2)); // does not match x.#
    setup.peer.publish_json(&other, "x", &json!(3)); // matches: # is zero or more words
    setup
        .peer
        .publish_json(&setup.exchange, "startup", &json!(4));
    wait_for_last(host, "x", &json!(3));
    wait_for_last(host, "startup", &json!(4));
    assert_eq!(keys(host), ["startup", "x", "x.one"]);
    assert_eq!(last(host)["x.one"], json!(1));
}

#[test]
fn subscribe_rejects_bad_bodies_naming_the_field() {
    let setup = start(&[]);
    let host = &setup.host;
    for (body, field) in [
        ("{}", "exchange"),
        (r##"{"routing": "#"}"##, "exchange"),
        (r##"{"exchange": 1, "routing": "#"}"##, "exchange"),
        (r##"{"exchange": null, "routing": "#"}"##, "exchange"),
        (r#"{"exchange": "e"}"#, "routing"),
        (r##"{"exchange": "e", "routing": ["#"]}"##, "routing"),
        (r##"{"exchange": "", "routing": "#"}"##, "exchange"),
        (r##"{"exchange": "amq.topic", "routing": "#"}"##, "exchange"),
        (r##"{"exchange": "e\nforged", "routing": "#"}"##, "exchange"),
        (r##"{"exchange": "e", "routing": "a\u0000b"}"##, "routing"),
    ] {
        let (status, answer) = post(host, "/history/subscribe", body);
        assert_eq!(status, 400, "{body} → {answer}");
        assert_eq!(answer["field"], field, "{body} → {answer}");
        assert!(
            answer["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{body} → {answer}"
        );
    }
    for (exchange, routing, field) in [
        ("s".repeat(256), "#".to_owned(), "exchange"),
        ("e".to_owned(), "k".repeat(300), "routing"),
    ] {
        let body = json!({"exchange": exchange, "routing": routing}).to_string();
        let (status, answer) = post(host, "/history/subscribe", &body);
        assert_eq!(status, 400, "{answer}");
        assert_eq!(answer["field"], field, "{answer}");
    }
    for body in ["", "not json", r#"{"exchange": "e", "#, "[]"] {
        let (status, answer) = post(host, "/history/subscribe", body);
        assert_eq!(status, 400, "{body:?} → {answer}");
        assert!(answer["error"].is_string(), "{body:?} → {answer}");
    }
    let subscriptions = get_json(host, "/history/subscriptions", 200);
    assert_eq!(
        subscriptions.as_array().map(Vec::len),
        Some(1),
        "{subscriptions}"
    );
}

#[test]
fn device_state_shows_under_the_service_name() {
    let plugins = PluginDir::with(&["device-plugin", "history-plugin"]);
    let exchange = unique("history-test-device");
    let host = Host::builder(plugins.path())
        .name("history_device_svc")
        .args(&["--update-interval", "0.1", "--device-id", "chamber-h"])
        .args(&[
            "--device-exchange",
            &exchange,
            "--history-exchange",
            &exchange,
        ])
        .start();

    let mut seen = Map::new();
    let arrived = wait_until(SUBSCRIBE_WAIT, || {
        seen = last(&host);
        seen.contains_key("history_device_svc")
    });
    assert!(
        arrived,
        "no device state in the history within {SUBSCRIBE_WAIT:?}: {seen:?}\n{}",
        host.stderr.text()
    );
    let state = &seen["history_device_svc"];
    assert_eq!(state["device_id"], "chamber-h", "{state}");
    let device = get_json(&host, "/device/state", 200);
    assert_eq!(state["setpoint"], device["setpoint"]);
    for field in ["temperature", "ambient", "heater", "cooler", "updated"] {
        assert!(state.get(field).is_some(), "{field} missing: {state}");
    }

    // Updates keep coming, each a newer state.
    let mut history = Vec::new();
    let several = wait_until(ARRIVAL_WAIT, || {
        history = recent(&host, "history_device_svc", "");
        history.len() >= 3
    });
    assert!(several, "{history:?}");
    let updated: Vec<&str> = history
        .iter()
        .map(|state| state["updated"].as_str().expect("updated"))
        .collect();
    assert!(updated.windows(2).all(|w| w[0] < w[1]), "{updated:?}");
    assert_eq!(keys(&host), ["history_device_svc"]);
}

#[test]
fn history_size_below_one_refuses_to_start() {
    let plugins = PluginDir::with(&["history-plugin"]);
    for bad in ["--history-size=0", "--history-size=-3"] {
        let exited = Host::builder(plugins.path()).arg(bad).run_to_exit();
        assert_ne!(exited.code(), Some(0), "{bad}: {exited:?}");
        assert!(
            exited.stderr.contains("--history-size must be at least 1"),
            "{bad}: {}",
            exited.stderr
        );
    }
}

#[test]
fn help_lists_the_arguments() {
    let plugins = PluginDir::with(&["history-plugin"]);
    let exited = Host::builder(plugins.path()).arg("--help").run_to_exit();
    assert_eq!(exited.code(), Some(0), "{exited:?}");
    for text in [
        "--history-exchange",
        "--history-routing",
        "--history-size",
        "brewcast",
    ] {
        assert!(
            exited.stdout.contains(text),
            "{text} missing:\n{}",
            exited.stdout
        );
    }
}

#[test]
fn a_subscription_the_broker_refuses_is_409_and_leaves_nothing() {
    let setup = start(&[]);
    let host = &setup.host;
    // An exchange that exists as fanout: declaring it as topic is a 406 from the broker.
    let fanout = unique("history-test-fanout");
    setup
        .peer
        .declare_like_original(&fanout, lapin::ExchangeKind::Fanout);
    let _bound = setup.peer.consume(&fanout, ""); // keeps the auto-delete exchange alive
    let body = json!({"exchange": fanout, "routing": "#"}).to_string();
    let (status, answer) = post(host, "/history/subscribe", &body);
    assert_eq!(status, 409, "{answer}");
    let error = answer["error"].as_str().unwrap_or_default();
    assert!(error.contains("406"), "{answer}");
    assert_eq!(
        get_json(host, "/history/subscriptions", 200)
            .as_array()
            .map(Vec::len),
        Some(1)
    );
    let health = host.get("/_service/health");
    assert_eq!(health.status(), 200, "{}", health.text().unwrap());
    // The same request again gets the same verdict, not "subscribed already".
    let (status, answer) = post(host, "/history/subscribe", &body);
    assert_eq!(status, 409, "{answer}");
    // Once the exchange is gone, the same subscription can be made.
    setup.peer.delete_exchange(&fanout);
    let (status, answer) = post(host, "/history/subscribe", &body);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["added"], true, "{answer}");
}

/// `count` identical POSTs at once (released together by a barrier); their statuses and
/// answers.
fn post_together(host: &Host, path: &str, body: &str, count: usize) -> Vec<(u16, Value)> {
    let barrier = std::sync::Barrier::new(count);
    std::thread::scope(|scope| {
        let calls: Vec<_> = (0..count)
            .map(|_| {
                let barrier = &barrier;
                scope.spawn(move || {
                    barrier.wait();
                    post(host, path, body)
                })
            })
            .collect();
        calls.into_iter().map(|c| c.join().unwrap()).collect()
    })
}

#[test]
fn concurrent_requests_for_a_refused_subscription_all_get_the_refusal() {
    let setup = start(&[]);
    let host = &setup.host;
    let fanout = unique("history-test-race");
    setup
        .peer
        .declare_like_original(&fanout, lapin::ExchangeKind::Fanout);
    let _bound = setup.peer.consume(&fanout, "");
    // A few rounds, so that the requests overlap in at least some of them.
    for round in 0..5 {
        let body = json!({"exchange": fanout, "routing": format!("r{round}.#")}).to_string();
        for (status, answer) in post_together(host, "/history/subscribe", &body, 4) {
            assert_eq!(status, 409, "round {round}: {answer}");
            let error = answer["error"].as_str().unwrap_or_default();
            assert!(error.contains("406"), "round {round}: {answer}");
        }
    }
    // Nothing stayed: only the startup subscription.
    assert_eq!(
        get_json(host, "/history/subscriptions", 200)
            .as_array()
            .map(Vec::len),
        Some(1)
    );
    setup.peer.delete_exchange(&fanout);
}

/// `--history-durable`: what is published while the service is stopped is recorded when it
/// is back (the durable queue `<service>:<exchange>:#` waits for it; deleted at the end).
#[test]
fn a_durable_history_misses_nothing_across_a_restart() {
    let plugins = PluginDir::with(&["history-plugin"]);
    let (service, exchange) = (unique("hist"), unique("history-test"));
    let queue = format!("{service}:{exchange}:#");
    struct DeleteQueue(String);
    impl Drop for DeleteQueue {
        fn drop(&mut self) {
            let _ = std::panic::catch_unwind(|| {
                integration_tests::amqp::ctl_blocking(&["delete_queue".into(), self.0.clone()]);
            });
        }
    }
    let _guard = DeleteQueue(queue.clone());
    let start = || {
        Host::builder(plugins.path())
            .name(&service)
            .args(&["--history-exchange", &exchange, "--history-durable"])
            .start()
    };
    let mut first = start();
    let peer = Peer::connect();
    wait_subscribed(&first, &peer, &exchange, PROBE);
    assert!(first.stop().success());
    assert!(
        peer.queue_exists(&queue),
        "the durable queue outlives the service"
    );
    for n in 0..5 {
        peer.publish_json(&exchange, &format!("away.{n}"), &json!({ "n": n }));
    }
    let second = start();
    let all_in = wait_until(ARRIVAL_WAIT, || {
        let keys: Vec<String> = second.get("/history/keys").json().unwrap_or_default();
        keys.iter().filter(|k| k.starts_with("away.")).count() == 5
    });
    assert!(
        all_in,
        "keys after the restart: {}",
        second.get("/history/keys").text().unwrap_or_default()
    );
    let list = get_json(&second, "/history/subscriptions", 200);
    assert_eq!(list[0]["durable"], true, "{list}");
}
