//! The plugin as a whole, on the SDK's test host: messages from both eventbuses reach its
//! routes keyed by routing key or topic, its startup options, and the subscriptions added
//! over HTTP, with no host process and no broker.

use std::time::SystemTime;

use plugin_api::{
    rfc3339,
    testing::{TestHost, TestRequest, TestResponse},
};
use serde_json::{json, Value};

use crate::{HistoryPlugin, MAX_SUBSCRIPTIONS};

async fn start() -> TestHost<HistoryPlugin> {
    TestHost::start(HistoryPlugin::default())
        .await
        .expect("the history plugin starts")
}

async fn start_with(args: &[(&str, Value)]) -> TestHost<HistoryPlugin> {
    let mut builder = TestHost::builder(HistoryPlugin::default());
    for (name, value) in args {
        builder = builder.arg(name, value.clone());
    }
    builder.start().await.expect("the history plugin starts")
}

fn json(response: &TestResponse) -> Value {
    response
        .json()
        .unwrap_or_else(|err| panic!("not JSON ({err}): {}", response.text()))
}

/// The messages of `GET /history/recent/{key}` (key as written in the path), oldest first.
async fn recent(host: &TestHost<HistoryPlugin>, key: &str) -> Vec<Value> {
    let response = host.get(&format!("/history/recent/{key}")).await;
    assert_eq!(response.status(), 200, "{key}: {}", response.text());
    let entries = json(&response);
    let entries = entries.as_array().expect("a list");
    entries
        .iter()
        .map(|entry| entry["message"].clone())
        .collect()
}

async fn last(host: &TestHost<HistoryPlugin>) -> Value {
    let response = host.get("/history/last").await;
    assert_eq!(response.status(), 200);
    json(&response)
}

/// Panics unless every handler `deliver` reached accepted the message, and at least one did.
fn delivered(results: Vec<plugin_api::Result<()>>) {
    assert!(!results.is_empty(), "no subscription reached");
    for result in results {
        result.expect("the handler accepts the message");
    }
}

#[tokio::test]
async fn amqp_messages_are_served_by_routing_key() {
    let host = start().await;
    delivered(
        host.deliver("brewcast", "fermenter", &json!({"t": 20}))
            .await,
    );
    delivered(
        host.deliver("brewcast", "fermenter", &json!({"t": 21}))
            .await,
    );
    delivered(host.deliver("brewcast", "kettle.temp", &json!(66.5)).await);
    delivered(host.deliver("brewcast", "kettle.null", &Value::Null).await);

    let expected = json!({"fermenter": {"t": 21}, "kettle.temp": 66.5, "kettle.null": null});
    assert_eq!(last(&host).await, expected);
    let keys: Vec<String> = host.get("/history/keys").await.json().unwrap();
    assert_eq!(keys, ["fermenter", "kettle.null", "kettle.temp"]);
    assert_eq!(
        recent(&host, "fermenter").await,
        [json!({"t": 20}), json!({"t": 21})]
    );
    assert_eq!(recent(&host, "kettle.temp").await, [json!(66.5)]);
}

#[tokio::test]
async fn recent_entries_carry_when_they_were_received() {
    let host = start().await;
    let before = rfc3339(SystemTime::now());
    delivered(host.deliver("brewcast", "k", &1).await);
    let after = rfc3339(SystemTime::now());

    let entries = json(&host.get("/history/recent/k").await);
    let received = entries[0]["received"].as_str().expect("a timestamp");
    // Same fixed-width UTC format on both sides: text order is time order.
    assert!(
        before.as_str() <= received && received <= after.as_str(),
        "{before} <= {received} <= {after}"
    );
    assert_eq!(entries[0]["message"], 1);
}

#[tokio::test]
async fn an_amqp_message_that_is_not_json_is_refused_and_not_kept() {
    let host = start().await;
    let results = host.deliver_bytes("brewcast", "bad", "not json {").await;
    assert_eq!(results.len(), 1);
    assert!(results[0].is_err(), "the handler refuses it");
    // Sentinel: a later message on another key is recorded, the refused one still is not.
    delivered(host.deliver("brewcast", "good", &true).await);
    assert_eq!(last(&host).await, json!({"good": true}));
    assert_eq!(host.get("/history/recent/bad").await.status(), 404);
}

#[tokio::test]
async fn mqtt_messages_are_served_by_topic_whatever_their_payload() {
    let host = start().await;
    delivered(
        host.mqtt_deliver("brewcast/state/a", r#"{"v": [1, 2]}"#)
            .await,
    );
    delivered(
        host.mqtt_deliver("brewcast/state/b", "hello, not json")
            .await,
    );
    delivered(
        host.mqtt_deliver("brewcast/state/c", vec![b'o', 0xff, b'k'])
            .await,
    );

    let expected = json!({
        "brewcast/state/a": {"v": [1, 2]},
        "brewcast/state/b": "hello, not json",
        "brewcast/state/c": "o\u{fffd}k",
    });
    assert_eq!(last(&host).await, expected);
    assert_eq!(
        recent(&host, "brewcast%2Fstate%2Fb").await,
        [json!("hello, not json")]
    );
    assert_eq!(
        recent(&host, "brewcast%2Fstate%2Fc").await,
        [json!("o\u{fffd}k")]
    );
}

#[tokio::test]
async fn mqtt_follows_its_filter_and_keys_apart_from_amqp() {
    let host = start_with(&[("history-mqtt-filter", json!("tilt/+"))]).await;
    assert!(host.mqtt_deliver("brewcast/state/a", "1").await.is_empty());
    delivered(host.mqtt_deliver("tilt/red", "1.050").await);
    delivered(host.deliver("brewcast", "tilt.red", &"amqp").await);
    assert_eq!(
        last(&host).await,
        json!({"tilt/red": 1.05, "tilt.red": "amqp"})
    );
}

#[tokio::test]
async fn each_key_keeps_at_most_history_size_messages_oldest_first() {
    let host = start_with(&[("history-size", json!(3))]).await;
    for n in 1..=5 {
        delivered(host.deliver("brewcast", "k", &n).await);
    }
    delivered(host.deliver("brewcast", "other", &0).await);
    assert_eq!(recent(&host, "k").await, [json!(3), json!(4), json!(5)]);
    assert_eq!(recent(&host, "other").await, [json!(0)]);
}

#[tokio::test]
async fn limit_keeps_the_newest_messages() {
    let host = start().await;
    for n in 1..=4 {
        delivered(host.deliver("brewcast", "k", &n).await);
    }
    assert_eq!(recent(&host, "k?limit=2").await, [json!(3), json!(4)]);
    assert_eq!(recent(&host, "k?limit=1").await, [json!(4)]);
    assert_eq!(recent(&host, "k?limit=%202%20").await, [json!(3), json!(4)]);
    assert_eq!(recent(&host, "k?limit=99").await.len(), 4);
}

#[tokio::test]
async fn a_bad_limit_is_a_400_naming_the_field() {
    let host = start().await;
    delivered(host.deliver("brewcast", "k", &1).await);
    for bad in ["abc", "0", "-1", "1.5", "", "99999999999999999999999"] {
        let response = host
            .request(TestRequest::get("/history/recent/k").query(&format!("limit={bad}")))
            .await;
        assert_eq!(response.status(), 400, "limit={bad}: {}", response.text());
        let body = json(&response);
        assert_eq!(body["field"], "limit", "limit={bad}: {body}");
    }
}

#[tokio::test]
async fn an_unknown_key_is_a_404() {
    let host = start().await;
    delivered(host.deliver("brewcast", "known", &1).await);
    let response = host.get("/history/recent/unknown").await;
    assert_eq!(response.status(), 404);
    assert!(response.text().contains("unknown"), "{}", response.text());
}

#[tokio::test]
async fn the_startup_subscription_follows_the_options() {
    let args = [
        ("history-exchange", json!("events")),
        ("history-routing", json!("spark.*")),
    ];
    let host = start_with(&args).await;
    let list = json(&host.get("/history/subscriptions").await);
    assert_eq!(list, json!([{"exchange": "events", "routing": "spark.*"}]));
    assert!(host.deliver("brewcast", "spark.a", &1).await.is_empty());
    assert!(host.deliver("events", "spark.a.b", &1).await.is_empty());
    delivered(host.deliver("events", "spark.a", &2).await);
    assert_eq!(last(&host).await, json!({"spark.a": 2}));
}

#[tokio::test]
async fn each_eventbus_is_subscribed_only_when_the_service_uses_it() {
    let host = start_with(&[("mqtt", json!(false))]).await;
    let kinds: Vec<String> = host
        .subscriptions()
        .into_iter()
        .map(|s| s.exchange_type)
        .collect();
    assert_eq!(kinds, ["topic"]);

    let host = start_with(&[("amqp", json!(false))]).await;
    let subs = host.subscriptions();
    assert_eq!(subs.len(), 1);
    assert_eq!(
        (subs[0].exchange_type.as_str(), subs[0].routing.as_str()),
        ("mqtt", "brewcast/#")
    );
    let list = json(&host.get("/history/subscriptions").await);
    assert_eq!(list, json!([]));
}

#[tokio::test]
async fn bad_startup_options_refuse_to_start() {
    for (name, value, expected) in [
        ("history-size", json!(0), "--history-size"),
        ("history-exchange", json!("amq.topic"), "--history-exchange"),
        ("history-exchange", json!(""), "--history-exchange"),
        ("history-routing", json!("a\nb"), "--history-routing"),
        (
            "history-mqtt-filter",
            json!("a/#/b"),
            "--history-mqtt-filter",
        ),
    ] {
        let started = TestHost::builder(HistoryPlugin::default())
            .arg(name, value.clone())
            .start()
            .await;
        let err = started
            .err()
            .unwrap_or_else(|| panic!("{name}={value} starts"));
        assert!(err.message().contains(expected), "{name}={value}: {err}");
    }
}

#[tokio::test]
async fn a_subscription_added_over_http_records_its_messages() {
    let host = start().await;
    assert!(host.deliver("spark", "block.temp", &1).await.is_empty());

    let body = json!({"exchange": "spark", "routing": "block.#"});
    let response = host.post_json("/history/subscribe", &body).await;
    assert_eq!(response.status(), 200, "{}", response.text());
    assert_eq!(
        json(&response),
        json!({"exchange": "spark", "routing": "block.#", "added": true})
    );
    let made = host.subscriptions();
    assert!(
        made.iter()
            .any(|s| s.exchange == "spark" && s.routing == "block.#" && !s.cancelled),
        "{made:?}"
    );

    delivered(host.deliver("spark", "block.temp", &19.5).await);
    assert_eq!(recent(&host, "block.temp").await, [json!(19.5)]);
    let list = json(&host.get("/history/subscriptions").await);
    let expected = json!([
        {"exchange": "brewcast", "routing": "#"},
        {"exchange": "spark", "routing": "block.#"},
    ]);
    assert_eq!(list, expected);
}

#[tokio::test]
async fn subscribing_twice_adds_nothing() {
    let host = start().await;
    let body = json!({"exchange": "spark", "routing": "#"});
    assert_eq!(
        json(&host.post_json("/history/subscribe", &body).await)["added"],
        true
    );
    let again = host.post_json("/history/subscribe", &body).await;
    assert_eq!(again.status(), 200);
    assert_eq!(json(&again)["added"], false);
    let startup = json!({"exchange": "brewcast", "routing": "#"});
    assert_eq!(
        json(&host.post_json("/history/subscribe", &startup).await)["added"],
        false
    );

    assert_eq!(host.subscriptions().len(), 3, "startup AMQP, MQTT, spark");
    // One subscription, one copy: a second would record the message twice.
    delivered(host.deliver("spark", "x", &1).await);
    assert_eq!(recent(&host, "x").await, [json!(1)]);
}

#[tokio::test]
async fn overlapping_subscriptions_each_record_a_copy() {
    let host = start().await;
    let body = json!({"exchange": "brewcast", "routing": "a.#"});
    assert_eq!(
        host.post_json("/history/subscribe", &body).await.status(),
        200
    );
    let results = host.deliver("brewcast", "a.b", &7).await;
    assert_eq!(results.len(), 2, "both subscriptions get it");
    delivered(results);
    assert_eq!(recent(&host, "a.b").await, [json!(7), json!(7)]);
    delivered(host.deliver("brewcast", "b", &8).await);
    assert_eq!(recent(&host, "b").await, [json!(8)]);
}

#[tokio::test]
async fn a_bad_subscribe_body_is_a_400_naming_the_field() {
    let host = start().await;
    let long = "r".repeat(256);
    for (body, field) in [
        (json!({}), "exchange"),
        (json!({"exchange": 1, "routing": "#"}), "exchange"),
        (json!({"exchange": "e"}), "routing"),
        (json!({"exchange": "", "routing": "#"}), "exchange"),
        (json!({"exchange": "amq.topic", "routing": "#"}), "exchange"),
        (json!({"exchange": "e\u{7}", "routing": "#"}), "exchange"),
        (json!({"exchange": "e", "routing": long}), "routing"),
    ] {
        let response = host.post_json("/history/subscribe", &body).await;
        assert_eq!(response.status(), 400, "{body}: {}", response.text());
        assert_eq!(json(&response)["field"], field, "{body}");
    }
    assert_eq!(host.subscriptions().len(), 2, "only the startup ones");
}

#[tokio::test]
async fn a_subscription_the_eventbus_cannot_make_leaves_nothing_behind() {
    let host = start().await;
    host.set_eventbus_down(true);
    let body = json!({"exchange": "spark", "routing": "#"});
    let response = host.post_json("/history/subscribe", &body).await;
    assert_eq!(response.status(), 503, "{}", response.text());
    assert!(response.text().contains("spark"), "{}", response.text());
    assert!(host.deliver("spark", "x", &1).await.is_empty(), "cancelled");
    let list = json(&host.get("/history/subscriptions").await);
    assert_eq!(list, json!([{"exchange": "brewcast", "routing": "#"}]));

    // Back up, the same request is a new subscription.
    host.set_eventbus_down(false);
    let response = host.post_json("/history/subscribe", &body).await;
    assert_eq!(json(&response)["added"], true);
    delivered(host.deliver("spark", "x", &1).await);
}

#[tokio::test]
async fn without_amqp_subscribing_is_a_503() {
    let host = start_with(&[("amqp", json!(false))]).await;
    let body = json!({"exchange": "spark", "routing": "#"});
    let response = host.post_json("/history/subscribe", &body).await;
    assert_eq!(response.status(), 503, "{}", response.text());
    assert_eq!(json(&host.get("/history/subscriptions").await), json!([]));
}

#[tokio::test]
async fn subscriptions_are_capped() {
    let host = start().await;
    // The startup subscription counts.
    for n in 1..MAX_SUBSCRIPTIONS {
        let body = json!({"exchange": format!("x{n}"), "routing": "#"});
        let response = host.post_json("/history/subscribe", &body).await;
        assert_eq!(response.status(), 200, "{n}: {}", response.text());
    }
    let body = json!({"exchange": "one-more", "routing": "#"});
    let response = host.post_json("/history/subscribe", &body).await;
    assert_eq!(response.status(), 409, "{}", response.text());
    assert!(host.deliver("one-more", "k", &1).await.is_empty());
    let list = json(&host.get("/history/subscriptions").await);
    assert_eq!(list.as_array().map(Vec::len), Some(MAX_SUBSCRIPTIONS));
    // One already made is still answered.
    let known = json!({"exchange": "x1", "routing": "#"});
    assert_eq!(
        json(&host.post_json("/history/subscribe", &known).await)["added"],
        false
    );
}

#[tokio::test]
async fn at_the_key_cap_the_least_recently_updated_key_is_forgotten() {
    let host = start().await;
    let cap = crate::store::MAX_KEYS;
    for n in 0..cap {
        delivered(host.deliver("brewcast", &format!("k{n}"), &n).await);
    }
    // k0 is updated again: k1 is now the stalest.
    delivered(host.deliver("brewcast", "k0", &"again").await);
    delivered(host.deliver("brewcast", "new", &1).await);

    let last = last(&host).await;
    let held = last.as_object().expect("an object");
    assert_eq!(held.len(), cap);
    assert_eq!(held.get("k0"), Some(&json!("again")));
    assert!(held.contains_key("new") && held.contains_key("k2"));
    assert!(!held.contains_key("k1"), "k1 forgotten");
    assert_eq!(host.get("/history/recent/k1").await.status(), 404);
}

#[tokio::test]
async fn stopping_ends_the_subscriptions() {
    let host = start().await;
    host.stop().await.expect("a clean stop");
    assert!(host.subscriptions().iter().all(|s| s.cancelled));
    assert!(host.deliver("brewcast", "k", &1).await.is_empty());
    assert!(host.mqtt_deliver("brewcast/x", "1").await.is_empty());
}

#[tokio::test]
async fn a_hot_swap_keeps_the_messages_their_times_and_the_added_subscriptions() {
    let old = start().await;
    old.deliver("brewcast", "a", &1).await;
    old.deliver("brewcast", "b", &2).await;
    old.deliver("brewcast", "a", &3).await;
    let body = json!({"exchange": "spark", "routing": "block.#"});
    assert_eq!(
        old.post_json("/history/subscribe", &body).await.status(),
        200
    );
    let before = old.get("/history/recent/a").await.json::<Value>().unwrap();
    let state = old.handover().await.unwrap().expect("a state");
    assert_eq!(state.version(), crate::handover::STATE_VERSION);

    let new = TestHost::builder(HistoryPlugin::default())
        .handed_over(state)
        .start()
        .await
        .unwrap();
    assert_eq!(new.handover_outcome(), plugin_api::HandedOver::Accepted(()));
    let after = new.get("/history/recent/a").await.json::<Value>().unwrap();
    assert_eq!(after, before, "same messages, same receive times");
    assert_eq!(last(&new).await, json!({"a": 3, "b": 2}));
    let subscriptions = new
        .get("/history/subscriptions")
        .await
        .json::<Value>()
        .unwrap();
    assert_eq!(
        subscriptions,
        json!([{"exchange": "brewcast", "routing": "#"}, body]),
        "the added subscription is made again, once"
    );
    assert_eq!(new.deliver("spark", "block.t", &7).await.len(), 1);
    assert_eq!(recent(&new, "block.t").await, [json!(7)]);
}

#[tokio::test]
async fn another_state_version_is_refused_and_the_history_starts_empty() {
    let state =
        plugin_api::Handover::json(99, &json!({"messages": [], "subscriptions": []})).unwrap();
    let new = TestHost::builder(HistoryPlugin::default())
        .handed_over(state)
        .start()
        .await
        .unwrap();
    let plugin_api::HandedOver::Refused(why) = new.handover_outcome() else {
        panic!("accepted");
    };
    assert!(why.contains("state version 99"), "{why}");
    assert_eq!(last(&new).await, json!({}));
}

#[tokio::test]
async fn the_startup_subscriptions_can_be_shared_and_durable() {
    let args = [
        ("history-group", json!("hist")),
        ("history-durable", json!(true)),
    ];
    let host = start_with(&args).await;
    let subs = host.subscriptions();
    let amqp = subs.iter().find(|s| s.exchange_type == "topic").unwrap();
    assert_eq!(amqp.queue.as_deref(), Some("hist:brewcast:#"));
    let mqtt = subs.iter().find(|s| s.exchange_type == "mqtt").unwrap();
    assert_eq!(mqtt.routing, "$share/hist/brewcast/#");
    assert_eq!(
        mqtt.session.as_deref(),
        Some("brewblox-host-test-durable"),
        "durable on MQTT too: on the service's persistent session"
    );
    delivered(host.deliver("brewcast", "fermenter", &1).await);
    delivered(host.mqtt_deliver("brewcast/kettle", "2").await);
    assert_eq!(
        last(&host).await,
        json!({"fermenter": 1, "brewcast/kettle": 2})
    );
    let list = json(&host.get("/history/subscriptions").await);
    let expected =
        json!([{"exchange": "brewcast", "routing": "#", "group": "hist", "durable": true}]);
    assert_eq!(list, expected);

    let bad = TestHost::builder(HistoryPlugin::default())
        .arg("history-group", json!("a/b"))
        .start()
        .await;
    assert!(bad.is_err(), "a group name with '/' is refused at start");
}

#[tokio::test]
async fn a_subscription_added_over_http_can_be_an_mqtt_durable_one() {
    let host = start().await;
    let body = json!({"filter": "spark/#", "durable": true});
    let response = host.post_json("/history/subscribe", &body).await;
    assert_eq!(response.status(), 200, "{}", response.text());
    assert_eq!(
        json(&response),
        json!({"filter": "spark/#", "durable": true, "added": true})
    );
    let sub = host
        .subscriptions()
        .into_iter()
        .find(|s| s.routing == "spark/#")
        .expect("the MQTT subscription");
    let session = format!("brewblox-host-{}-durable", host.config().name());
    assert_eq!(sub.session, Some(session), "on the persistent session");
    delivered(host.mqtt_deliver("spark/a", "3").await);
    assert_eq!(last(&host).await["spark/a"], 3, "keyed by topic");
    let list = json(&host.get("/history/subscriptions").await);
    assert_eq!(list[1], body);
    for bad in [
        json!({"filter": ""}),
        json!({"filter": "a", "exchange": "e", "routing": "#"}),
    ] {
        let response = host.post_json("/history/subscribe", &bad).await;
        assert_eq!(response.status(), 400, "{bad}: {}", response.text());
        assert_eq!(json(&response)["field"], "filter", "{bad}");
    }
}

#[tokio::test]
async fn a_subscription_added_over_http_takes_a_group_and_durable() {
    let host = start().await;
    let body = json!({"exchange": "spark", "routing": "#", "group": "hist"});
    let response = host.post_json("/history/subscribe", &body).await;
    assert_eq!(response.status(), 200, "{}", response.text());
    assert_eq!(json(&response)["group"], "hist");
    let body = json!({"exchange": "spark", "routing": "block.#", "durable": true});
    let response = host.post_json("/history/subscribe", &body).await;
    assert_eq!(response.status(), 200, "{}", response.text());
    let queues: Vec<Option<String>> = host.subscriptions().into_iter().map(|s| s.queue).collect();
    let service = host.config().name().to_owned();
    assert!(
        queues.contains(&Some("hist:spark:#".to_owned())),
        "{queues:?}"
    );
    assert!(
        queues.contains(&Some(format!("{service}:spark:block.#"))),
        "a durable subscription without a group is in its service's: {queues:?}"
    );
    let body = json!({"exchange": "spark", "routing": "#", "group": "a b"});
    let response = host.post_json("/history/subscribe", &body).await;
    assert_eq!(response.status(), 400, "{}", response.text());
    assert!(
        response.text().contains("group name"),
        "{}",
        response.text()
    );
}
