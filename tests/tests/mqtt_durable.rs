//! Durable MQTT subscriptions against a private Mosquitto: the service's persistent session
//! (clean session off, a stable client id, QoS 1, acknowledged after the handler) keeps what
//! is published while the service is stopped, gives a killed instance's unacknowledged
//! message again at the restart, flagged as a redelivery, and a reload under a steady
//! stream of messages hands the subscription to the new generation with none lost and none
//! handled twice. The history plugin with `--history-durable` misses nothing across a
//! restart; two instances of a durable group each get their share of what was kept.

use std::{collections::BTreeMap, thread, time::Duration};

use integration_tests::{
    mqtt::{rumqttc::QoS, Mosquitto, Peer},
    runtime, testkit_numbers, testkit_received, urlencode, wait_until, Host, PluginDir,
};
use serde_json::{json, Value};

const SECS: Duration = Duration::from_secs(20);

/// A testkit host named `name`, subscribed durably at startup to `filter` (the bus handler:
/// `/kit/bus/received`, `/kit/bus/holding`), on MQTT only; `extra` arguments last.
fn durable_instance(
    broker: &Mosquitto,
    plugins: &PluginDir,
    name: &str,
    filter: &str,
    extra: &[&str],
) -> Host {
    Host::builder(plugins.path())
        .name(name)
        .without_amqp()
        .mqtt(broker.port)
        .args(&["--testkit-mqtt-filter", filter, "--testkit-durable"])
        .args(&["--eventbus-reconnect-interval", "0.2"])
        .args(extra)
        .start()
}

/// Waits until the persistent session is connected and its subscription acknowledged:
/// from then on the broker keeps what is published to it.
fn wait_session(host: &Host, filter: &str) -> Value {
    let mut session = Value::Null;
    let up = wait_until(SECS, || {
        let (_, health) = host.health();
        session = health["mqtt"]["session"].clone();
        session["state"] == "connected"
            && session["subscriptions"].as_array().is_some_and(|subs| {
                subs.iter()
                    .any(|s| s["filter"] == filter && s["state"] == "active")
            })
    });
    assert!(up, "the durable session never came up: {session}");
    session
}

/// A unique topic prefix, so that topics never meet another test's.
fn unique(prefix: &str) -> String {
    integration_tests::amqp::unique(prefix)
}

#[test]
fn what_is_published_while_a_durable_subscriber_is_stopped_reaches_it_at_restart() {
    const MESSAGES: u64 = 50;
    let rt = runtime();
    let broker = Mosquitto::start();
    let plugins = PluginDir::with(&["testkit-plugin"]);
    let (service, topic) = (unique("svc"), unique("kept"));
    let filter = format!("{topic}/#");
    let mut first = durable_instance(&broker, &plugins, &service, &filter, &[]);
    let session = wait_session(&first, &filter);
    assert_eq!(
        session["client_id"],
        format!("brewblox-host-{service}-durable"),
        "the session's client id is stable: derived from the service name"
    );
    let doc: Value = first.get("/api/asyncapi.json").json().unwrap();
    let channels = doc["channels"].as_object().cloned().unwrap_or_default();
    assert!(
        channels.values().any(|c| c["address"] == filter.as_str()),
        "the durable subscription is in the AsyncAPI document: {channels:?}"
    );
    assert!(first.stop().success());
    let log = first.stderr.text();
    assert!(
        !log.contains("durable handlers still running"),
        "an idle durable subscription holds up no stop:\n{log}"
    );
    let peer = rt.block_on(Peer::connect(broker.port, &[]));
    rt.block_on(async {
        for n in 0..MESSAGES {
            let body = json!({ "n": n }).to_string();
            peer.client
                .publish(format!("{topic}/{}", n % 3), QoS::AtLeastOnce, false, body)
                .await
                .unwrap();
        }
        // The sentinel: sent last, so once it is handled all before it were.
        peer.client
            .publish(
                format!("{topic}/end"),
                QoS::AtLeastOnce,
                false,
                r#"{"end": true}"#,
            )
            .await
            .unwrap();
    });
    let second = durable_instance(&broker, &plugins, &service, &filter, &[]);
    let ended = wait_until(SECS, || {
        testkit_received(&second)
            .iter()
            .any(|entry| entry["message"]["end"] == true)
    });
    let got = testkit_numbers(&testkit_received(&second));
    assert!(ended, "the sentinel never came; got {got:?}");
    assert_eq!(
        got,
        (0..MESSAGES).collect::<Vec<_>>(),
        "all, in order, once"
    );
}

#[test]
fn a_killed_instances_unacknowledged_message_comes_again_at_restart_as_a_redelivery() {
    let rt = runtime();
    let broker = Mosquitto::start();
    let plugins = PluginDir::with(&["testkit-plugin"]);
    let (service, topic) = (unique("svc"), unique("jobs"));
    let filter = format!("{topic}/#");
    let mut first = durable_instance(&broker, &plugins, &service, &filter, &[]);
    wait_session(&first, &filter);
    let peer = rt.block_on(Peer::connect(broker.port, &[]));
    let publish = |body: &str| {
        rt.block_on(peer.client.publish(
            format!("{topic}/1"),
            QoS::AtLeastOnce,
            false,
            body.to_owned(),
        ))
        .unwrap();
    };
    // The handler holds this one until the process dies: it is never acknowledged.
    publish(r#""hold:60000""#);
    let holding = wait_until(SECS, || {
        let list: Vec<Value> = first.get("/kit/bus/holding").json().unwrap();
        !list.is_empty()
    });
    assert!(holding, "the handler never started on the message");
    first.signal(libc::SIGKILL);
    assert!(first.wait_exit(SECS).is_some(), "the host did not die");
    let second = durable_instance(&broker, &plugins, &service, &filter, &[]);
    let again = wait_until(SECS, || {
        testkit_received(&second)
            .iter()
            .any(|entry| entry["message"] == "hold:60000")
    });
    let entries = testkit_received(&second);
    assert!(again, "the message never came again: {entries:?}");
    let entry = entries
        .iter()
        .find(|entry| entry["message"] == "hold:60000")
        .unwrap();
    assert_eq!(
        entry["redelivered"], true,
        "flagged as a redelivery: {entry}"
    );
    // A message handled after the restart is acknowledged: it does not come a third time.
    publish(r#"{"end": true}"#);
    let ended = wait_until(SECS, || {
        testkit_received(&second)
            .iter()
            .any(|entry| entry["message"]["end"] == true)
    });
    assert!(ended, "the sentinel never came");
    let held = testkit_received(&second)
        .iter()
        .filter(|entry| entry["message"] == "hold:60000")
        .count();
    assert_eq!(held, 1, "handled once after the restart");
}

#[test]
fn a_stop_acknowledges_nothing_it_did_not_handle() {
    const MESSAGES: u64 = 5;
    let rt = runtime();
    let broker = Mosquitto::start();
    let plugins = PluginDir::with(&["testkit-plugin"]);
    let (service, topic) = (unique("svc"), unique("queued"));
    let filter = format!("{topic}/#");
    let quick_stop = ["--hook-timeout", "1"];
    let mut first = durable_instance(&broker, &plugins, &service, &filter, &quick_stop);
    wait_session(&first, &filter);
    let peer = rt.block_on(Peer::connect(broker.port, &[]));
    let publish = |body: String| {
        rt.block_on(
            peer.client
                .publish(format!("{topic}/1"), QoS::AtLeastOnce, false, body),
        )
        .unwrap();
    };
    // The first holds the handler through the stop; the others wait behind it.
    publish(r#""hold:60000""#.to_owned());
    for n in 0..MESSAGES {
        publish(json!({ "n": n }).to_string());
    }
    let holding = wait_until(SECS, || {
        let list: Vec<Value> = first.get("/kit/bus/holding").json().unwrap();
        !list.is_empty()
    });
    assert!(holding, "the handler never started on the message");
    assert!(first.stop().success());
    assert!(
        first
            .stderr
            .text()
            .contains("durable handlers still running"),
        "the stop gave the held handler its time:\n{}",
        first.stderr.text()
    );
    let second = durable_instance(&broker, &plugins, &service, &filter, &quick_stop);
    publish(r#"{"end": true}"#.to_owned());
    let ended = wait_until(SECS, || {
        testkit_received(&second)
            .iter()
            .any(|entry| entry["message"]["end"] == true)
    });
    let entries = testkit_received(&second);
    assert!(ended, "the sentinel never came: {entries:?}");
    let held: Vec<&Value> = entries
        .iter()
        .filter(|entry| entry["message"] == "hold:60000")
        .collect();
    assert_eq!(held.len(), 1, "the held message once: {entries:?}");
    assert_eq!(held[0]["redelivered"], true, "{entries:?}");
    assert_eq!(
        testkit_numbers(&entries),
        (0..MESSAGES).collect::<Vec<_>>(),
        "what waited behind it: all, in order, once"
    );
}

/// Two instances in a group, each on its own persistent session (its own
/// `--mqtt-client-id`), both stopped: Mosquitto hands what is published meanwhile round the
/// group's sessions, and each instance gets its share at its restart; between them, every
/// message once.
#[test]
fn a_durable_group_keeps_each_instances_share_for_it() {
    const MESSAGES: u64 = 20;
    let rt = runtime();
    let broker = Mosquitto::start();
    let plugins = PluginDir::with(&["testkit-plugin"]);
    let (service, topic, group) = (unique("svc"), unique("jobs"), unique("workers"));
    let filter = format!("{topic}/#");
    let shared = format!("$share/{group}/{filter}");
    let member = |id: &str| {
        let client_id = format!("{service}-{id}");
        let args = ["--testkit-group", &group, "--mqtt-client-id", &client_id];
        durable_instance(&broker, &plugins, &service, &filter, &args)
    };
    let (mut a, mut b) = (member("a"), member("b"));
    for host in [&a, &b] {
        wait_session(host, &shared);
    }
    assert!(a.stop().success() && b.stop().success());
    let peer = rt.block_on(Peer::connect(broker.port, &[]));
    let publish = |body: String| {
        rt.block_on(
            peer.client
                .publish(format!("{topic}/1"), QoS::AtLeastOnce, false, body),
        )
        .unwrap();
    };
    for n in 0..MESSAGES {
        publish(json!({ "n": n }).to_string());
    }
    // Back one after the other; sentinels until each has handled one, so that each has
    // handled what was kept for it.
    let a = member("a");
    let b = member("b");
    let seen_end = |host: &Host| {
        testkit_received(host)
            .iter()
            .any(|entry| entry["message"]["end"].is_u64())
    };
    let mut sentinels = 0;
    let both = wait_until(SECS, || {
        if seen_end(&a) && seen_end(&b) {
            return true;
        }
        if sentinels < 50 {
            publish(json!({ "end": sentinels }).to_string());
            sentinels += 1;
        }
        false
    });
    let (x, y) = (
        testkit_numbers(&testkit_received(&a)),
        testkit_numbers(&testkit_received(&b)),
    );
    assert!(both, "a handled {x:?}, b {y:?}");
    let mut all: Vec<u64> = x.iter().chain(&y).copied().collect();
    all.sort_unstable();
    assert_eq!(
        all,
        (0..MESSAGES).collect::<Vec<_>>(),
        "each once: {x:?} {y:?}"
    );
    assert!(
        !x.is_empty() && !y.is_empty(),
        "each kept its share: {x:?} {y:?}"
    );
}

#[test]
fn a_reload_under_a_steady_stream_on_a_durable_subscription_loses_and_doubles_none() {
    const MESSAGES: u64 = 300;
    let rt = runtime();
    let broker = Mosquitto::start();
    let plugins = PluginDir::with(&["testkit-plugin"]);
    let (service, topic, echo) = (unique("svc"), unique("steady"), unique("echo"));
    let filter = format!("{topic}/#");
    // Every handled message is published again to `echo` by the handler, whichever
    // generation handled it: the test counts there.
    let mut echoes = rt.block_on(Peer::connect(broker.port, &[&echo]));
    let host = durable_instance(
        &broker,
        &plugins,
        &service,
        &filter,
        &["--testkit-mqtt-echo", &echo],
    );
    wait_session(&host, &filter);
    let publisher = {
        let (port, topic) = (broker.port, topic.clone());
        thread::spawn(move || {
            let rt = runtime();
            let peer = rt.block_on(Peer::connect(port, &[]));
            for n in 0..MESSAGES {
                let body = json!({ "n": n }).to_string();
                rt.block_on(peer.client.publish(
                    format!("{topic}/a"),
                    QoS::AtLeastOnce,
                    false,
                    body,
                ))
                .unwrap();
                thread::sleep(Duration::from_millis(5));
            }
            // Let the last PUBACKs come before the client goes.
            thread::sleep(Duration::from_millis(200));
        })
    };
    let mut counts: BTreeMap<u64, u32> = BTreeMap::new();
    let mut next_echo = |counts: &mut BTreeMap<u64, u32>, what: &str| -> Value {
        let publish = rt
            .block_on(echoes.next(SECS))
            .unwrap_or_else(|| panic!("no echo: {what}"));
        tally(counts, &publish.payload)
    };
    // The reload starts once the stream is well under way.
    for _ in 0..20 {
        next_echo(&mut counts, "before the reload");
    }
    host.signal(libc::SIGHUP);
    host.wait_reloads((1, 0));
    publisher.join().expect("publisher");
    // The sentinel comes after every message and after the reload: the new generation
    // handles it after all the others.
    rt.block_on(peer_publish(
        broker.port,
        &format!("{topic}/a"),
        r#"{"end": true}"#,
    ));
    for _ in 0..(2 * MESSAGES) {
        let entry = next_echo(&mut counts, "the echoes up to the sentinel");
        if entry["message"]["end"] == true {
            break;
        }
    }
    let missing: Vec<u64> = (0..MESSAGES).filter(|n| !counts.contains_key(n)).collect();
    let doubled: Vec<(&u64, &u32)> = counts.iter().filter(|(_, c)| **c > 1).collect();
    assert!(missing.is_empty(), "lost: {missing:?}");
    assert!(doubled.is_empty(), "handled twice: {doubled:?}");
    assert_eq!(counts.len() as u64, MESSAGES);
    let text = host.stderr.text();
    assert!(
        text.contains("handed to the new generation"),
        "the running subscription was taken over, not made anew:\n{text}"
    );
}

/// Counts the `n` of an echoed entry; the entry.
fn tally(counts: &mut BTreeMap<u64, u32>, payload: &[u8]) -> Value {
    let entry: Value = serde_json::from_slice(payload).expect("echo JSON");
    if let Some(n) = entry["message"]["n"].as_u64() {
        *counts.entry(n).or_default() += 1;
    }
    entry
}

/// Publishes one QoS 1 message from a fresh client.
async fn peer_publish(port: u16, topic: &str, body: &str) {
    let peer = Peer::connect(port, &[]).await;
    peer.client
        .publish(topic, QoS::AtLeastOnce, false, body.to_owned())
        .await
        .unwrap();
    // The PUBACK, before the client goes.
    tokio::time::sleep(Duration::from_millis(200)).await;
}

#[test]
fn a_durable_history_misses_nothing_across_a_restart() {
    const KEYS: u64 = 20;
    let rt = runtime();
    let broker = Mosquitto::start();
    let plugins = PluginDir::with(&["history-plugin"]);
    let (service, topic) = (unique("hist"), unique("brewcast"));
    let filter = format!("{topic}/#");
    let history = |plugins: &PluginDir| {
        Host::builder(plugins.path())
            .name(&service)
            .without_amqp()
            .mqtt(broker.port)
            .args(&["--history-mqtt-filter", &filter, "--history-durable"])
            .start()
    };
    let mut first = history(&plugins);
    wait_session(&first, &filter);
    assert!(first.stop().success());
    rt.block_on(async {
        let peer = Peer::connect(broker.port, &[]).await;
        for n in 0..KEYS {
            let body = json!({ "n": n }).to_string();
            peer.client
                .publish(format!("{topic}/k{n}"), QoS::AtLeastOnce, false, body)
                .await
                .unwrap();
        }
        peer.client
            .publish(format!("{topic}/end"), QoS::AtLeastOnce, false, "{}")
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
    });
    let second = history(&plugins);
    let last = || -> Value { second.get("/history/last").json().unwrap_or(Value::Null) };
    let ended = wait_until(SECS, || last().get(format!("{topic}/end")).is_some());
    assert!(ended, "the sentinel never reached the history: {}", last());
    for n in 0..KEYS {
        let key = format!("{topic}/k{n}");
        let recent: Vec<Value> = second
            .get(&format!("/history/recent/{}", urlencode(&key)))
            .json()
            .unwrap_or_default();
        assert_eq!(recent.len(), 1, "{key} recorded once: {recent:?}");
    }
}
