//! The metrics endpoint: both paths and both formats, parsed with a Prometheus text-format
//! parser, and counters that move by exactly what the test did.

use std::time::Duration;

use serde_json::json;

use integration_tests::{
    amqp::{self, SyncPeer},
    mqtt::{rumqttc::QoS, Mosquitto, Peer},
    wait_until, Host, PluginDir,
};
use openmetrics_parser::{
    openmetrics::parse_openmetrics, prometheus::parse_prometheus, MetricsExposition,
    OpenMetricsType, OpenMetricsValue, PrometheusType, PrometheusValue,
};

const SVC: &str = "/test_svc";

type Scrape = MetricsExposition<PrometheusType, PrometheusValue>;

fn kit() -> (Host, PluginDir) {
    let dir = PluginDir::with(&["testkit-plugin"]);
    let host = Host::builder(dir.path())
        .args(&["--max-body-size", "4096"])
        .start();
    (host, dir)
}

fn parse(text: &str) -> Scrape {
    parse_prometheus(text).unwrap_or_else(|e| panic!("unparsable metrics ({e:?}):\n{text}"))
}

fn scrape(host: &Host) -> Scrape {
    let res = host.get("/_service/metrics");
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    parse(&res.text().unwrap())
}

/// The value of the one sample of family `name` with these labels (among others); for a
/// histogram, its count. 0 when there is none yet.
fn value(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    let Some(family) = scrape.families.get(name) else {
        return 0.0;
    };
    let matching: Vec<f64> = family
        .iter_samples()
        .filter(|s| {
            let set = s.get_labelset().expect("labels");
            labels
                .iter()
                .all(|(k, v)| set.get_label_value(k) == Some(*v))
        })
        .map(|s| match &s.value {
            PrometheusValue::Counter(c) => c.value.as_f64(),
            PrometheusValue::Gauge(v) | PrometheusValue::Unknown(v) => v.as_f64(),
            PrometheusValue::Histogram(h) => h.count.unwrap_or(0) as f64,
            PrometheusValue::Summary(_) => panic!("{name} is a summary"),
        })
        .collect();
    assert!(matching.len() <= 1, "{name} {labels:?}: {matching:?}");
    matching.first().copied().unwrap_or(0.0)
}

/// Every label value of every sample.
fn label_values(scrape: &Scrape) -> Vec<String> {
    scrape
        .families
        .values()
        .flat_map(|f| f.iter_samples())
        .flat_map(|s| {
            let set = s.get_labelset().expect("labels");
            set.iter_values().cloned().collect::<Vec<_>>()
        })
        .collect()
}

fn requests(scrape: &Scrape, route: &str, method: &str, status: &str, plugin: &str) -> f64 {
    value(
        scrape,
        "http_requests_total",
        &[
            ("route", route),
            ("method", method),
            ("status", status),
            ("plugin", plugin),
        ],
    )
}

#[test]
fn requests_are_counted_by_route_template_method_status_and_plugin() {
    let (host, _dir) = kit();
    let echo = format!("{SVC}/kit/echo/{{id}}");
    let before = scrape(&host);
    for id in 0..7 {
        assert_eq!(host.get(&format!("/kit/echo/{id}")).status(), 200);
    }
    let res = host.client.put(host.url("/kit/echo/x")).send().unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(host.get("/kit/error").status(), 500);
    assert_eq!(host.get("/kit/panic").status(), 500);
    assert_eq!(host.get("/no/such/route").status(), 404);
    assert_eq!(host.get("/_service/status").status(), 200);
    let res = host
        .client
        .post(host.url("/kit/json"))
        .body(vec![b' '; 5000])
        .send()
        .unwrap();
    assert_eq!(res.status(), 413);
    let after = scrape(&host);

    let moved = |f: &dyn Fn(&Scrape) -> f64| f(&after) - f(&before);
    let kit = "testkit-plugin";
    assert_eq!(moved(&|s| requests(s, &echo, "GET", "2xx", kit)), 7.0);
    assert_eq!(moved(&|s| requests(s, &echo, "PUT", "2xx", kit)), 1.0);
    let error = format!("{SVC}/kit/error");
    let panic = format!("{SVC}/kit/panic");
    assert_eq!(moved(&|s| requests(s, &error, "GET", "5xx", kit)), 1.0);
    assert_eq!(moved(&|s| requests(s, &panic, "GET", "5xx", kit)), 1.0);
    assert_eq!(
        moved(&|s| requests(s, "unmatched", "GET", "4xx", "host")),
        1.0
    );
    let status = format!("{SVC}/_service/status");
    assert_eq!(moved(&|s| requests(s, &status, "GET", "2xx", "host")), 1.0);
    let json = format!("{SVC}/kit/json");
    assert_eq!(moved(&|s| requests(s, &json, "POST", "4xx", kit)), 1.0);
    fn route(r: &str) -> [(&str, &str); 2] {
        [("route", r), ("plugin", "testkit-plugin")]
    }
    assert_eq!(
        moved(&|s| value(s, "http_request_bodies_too_large_total", &route(&json))),
        1.0
    );
    assert_eq!(
        moved(&|s| value(s, "http_handler_panics_total", &route(&panic))),
        1.0
    );
    assert_eq!(
        moved(&|s| value(s, "http_handler_panics_total", &route(&error))),
        0.0
    );
    assert_eq!(
        moved(&|s| value(s, "http_request_duration_seconds", &route(&echo))),
        8.0
    );
    // The raw URL never becomes a label; the scrape itself is the one request in flight.
    let raw = format!("{SVC}/kit/echo/3");
    assert!(!label_values(&after).contains(&raw));
    assert!(label_values(&after).contains(&echo));
    assert_eq!(value(&after, "http_requests_in_flight", &[]), 1.0);
}

#[test]
fn both_paths_answer_in_both_formats() {
    let (host, _dir) = kit();
    let plain = host.client.get(host.raw_url("/metrics")).send().unwrap();
    assert_eq!(plain.status(), 200);
    assert_eq!(
        plain.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let text = plain.text().unwrap();
    assert!(!text.contains("# EOF"), "{text}");
    let scrape = parse(&text);
    assert!(value(&scrape, "process_threads", &[]) >= 1.0);

    for path in [host.raw_url("/metrics"), host.url("/_service/metrics")] {
        let open = host
            .client
            .get(&path)
            .header(
                "accept",
                "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5",
            )
            .send()
            .unwrap();
        assert_eq!(open.status(), 200);
        assert_eq!(
            open.headers()["content-type"],
            "application/openmetrics-text; version=1.0.0; charset=utf-8"
        );
        let text = open.text().unwrap();
        assert!(text.ends_with("# EOF\n"), "{text}");
        let open: MetricsExposition<OpenMetricsType, OpenMetricsValue> =
            parse_openmetrics(&text).unwrap_or_else(|e| panic!("{e:?}:\n{text}"));
        let family = &open.families["http_requests"];
        assert_eq!(family.family_type, OpenMetricsType::Counter);
        let rss = &open.families["process_resident_memory_bytes"];
        let sample = rss.iter_samples().next().expect("one sample");
        assert!(matches!(&sample.value, OpenMetricsValue::Gauge(v) if v.as_f64() > 1e6));
    }
}

#[test]
fn process_metrics_come_from_proc() {
    let (host, _dir) = kit();
    let scrape = scrape(&host);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let start = value(&scrape, "process_start_time_seconds", &[]);
    assert!(
        start > now - 120.0 && start <= now + 1.0,
        "{start} vs {now}"
    );
    let uptime = value(&scrape, "process_uptime_seconds", &[]);
    assert!((0.0..120.0).contains(&uptime), "{uptime}");
    let rss = value(&scrape, "process_resident_memory_bytes", &[]);
    assert!(rss > 1e6 && rss < 4e9, "{rss}");
    // stdin, stdout, stderr and the listening socket at least.
    assert!(value(&scrape, "process_open_fds", &[]) >= 4.0);
    // The tokio workers at least (and each plugin's runtime).
    assert!(value(&scrape, "process_threads", &[]) >= 2.0);
}

/// Every `brewblox_plugin_state` series: (plugin, state, generation).
fn plugin_states(scrape: &Scrape) -> Vec<(String, String, String)> {
    let Some(family) = scrape.families.get("brewblox_plugin_state") else {
        return Vec::new();
    };
    let mut states: Vec<_> = family
        .iter_samples()
        .map(|s| {
            let set = s.get_labelset().expect("labels");
            let label = |name| set.get_label_value(name).unwrap_or("").to_owned();
            (label("plugin"), label("state"), label("generation"))
        })
        .collect();
    states.sort();
    states
}

fn reloads(scrape: &Scrape, outcome: &str) -> f64 {
    value(scrape, "brewblox_reloads_total", &[("outcome", outcome)])
}

#[test]
fn plugin_series_follow_reloads_and_count_them() {
    let dir = PluginDir::with(&["testkit-plugin", "device-plugin"]);
    let host = Host::builder(dir.path()).start();
    let first = scrape(&host);
    let running = |generation: &str| {
        vec![
            ("device-plugin".into(), "running".into(), generation.into()),
            ("testkit-plugin".into(), "running".into(), generation.into()),
        ]
    };
    assert_eq!(plugin_states(&first), running("1"));
    let device = [("plugin", "device-plugin"), ("version", "0.1.0")];
    assert_eq!(value(&first, "brewblox_plugin_state", &device), 1.0);
    let build = first.families["brewblox_plugin_state"]
        .iter_samples()
        .map(|s| {
            let set = s.get_labelset().unwrap();
            set.get_label_value("build").unwrap_or("").to_owned()
        })
        .next()
        .unwrap();
    assert!(
        build.len() >= 16 && build.chars().all(|c| c.is_ascii_hexdigit()),
        "{build}"
    );
    // The device plugin's tasks, as its health lists them (its publisher and repeater).
    let health: serde_json::Value = host.get("/_service/health").json().unwrap();
    let listed = health["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "device-plugin")
        .map(|p| p["tasks"].as_array().unwrap().len())
        .unwrap();
    assert_eq!(listed, 2);
    let tasks = [("plugin", "device-plugin"), ("generation", "1")];
    assert_eq!(
        value(&first, "brewblox_plugin_tasks", &tasks),
        listed as f64
    );
    assert_eq!(
        (reloads(&first, "ok"), reloads(&first, "refused")),
        (0.0, 0.0)
    );
    // The testkit starts two tasks that fail (one errs, one panics) in each generation.
    let task_failures = |host: &Host| {
        value(
            &scrape(host),
            "brewblox_plugin_task_failures_total",
            &[("plugin", "testkit-plugin")],
        )
    };
    let failed =
        integration_tests::wait_until(Duration::from_secs(10), || task_failures(&host) == 2.0);
    assert!(failed, "{}", task_failures(&host));

    // A good reload: one more "ok", and the old generation's series go once it stopped.
    host.signal(libc::SIGHUP);
    let swapped = integration_tests::wait_until(Duration::from_secs(30), || {
        plugin_states(&scrape(&host)) == running("2")
    });
    assert!(swapped, "{:?}", plugin_states(&scrape(&host)));
    assert_eq!(reloads(&scrape(&host), "ok"), 1.0);
    let failed =
        integration_tests::wait_until(Duration::from_secs(10), || task_failures(&host) == 4.0);
    assert!(failed, "{}", task_failures(&host));

    // A refused reload: one "refused", and the running generation stays.
    std::fs::write(dir.path().join("broken.so"), "not a library").unwrap();
    host.signal(libc::SIGHUP);
    let refused = integration_tests::wait_until(Duration::from_secs(30), || {
        reloads(&scrape(&host), "refused") == 1.0
    });
    assert!(refused, "{}", host.stderr.text());
    let last = scrape(&host);
    assert_eq!(reloads(&last, "ok"), 1.0);
    assert_eq!(plugin_states(&last), running("2"));
}

#[test]
fn eventbus_messages_publishes_and_reconnects_are_counted() {
    let exchange = amqp::unique("ex-metrics");
    let (host, _dir) =
        integration_tests::testkit_host(&exchange, &["--eventbus-max-message-size", "1000"]);
    let sub = [
        ("bus", "amqp"),
        ("exchange", exchange.as_str()),
        ("routing", "#"),
        ("plugin", "testkit-plugin"),
    ];
    let active = integration_tests::wait_until(Duration::from_secs(20), || {
        let health: serde_json::Value = host.get("/_service/health").json().unwrap();
        health["eventbus"]["subscriptions"][0]["state"] == "active"
    });
    assert!(active, "{}", host.stderr.text());

    let peer = SyncPeer::connect();
    // A handler's own error is a failure whatever its words: the host counts from the
    // type of the outcome, not from the message.
    let handled = [
        "\"a\"",
        "1",
        "\"fail\"",
        "\"fail-as-not-json\"",
        "\"panic\"",
        "{\"b\": 2}",
    ];
    for message in handled {
        peer.publish(&exchange, "k", message.as_bytes());
    }
    peer.publish(&exchange, "k", b"not json {");
    peer.publish(&exchange, "k", b"");
    peer.publish(
        &exchange,
        "k",
        format!("\"{}\"", "x".repeat(2000)).as_bytes(),
    );
    peer.publish(&exchange, "k", b"\"marker\"");
    // In order within a subscription: once the marker was handled, everything before was.
    let delivered = |s: &Scrape| value(s, "eventbus_messages_delivered_total", &sub);
    let done =
        integration_tests::wait_until(Duration::from_secs(15), || delivered(&scrape(&host)) == 7.0);
    let after = scrape(&host);
    assert!(done, "{}", delivered(&after));
    assert_eq!(value(&after, "eventbus_messages_failed_total", &sub), 3.0);
    let not_json: Vec<_> = sub
        .iter()
        .copied()
        .chain([("reason", "not_json")])
        .collect();
    assert_eq!(
        value(&after, "eventbus_messages_dropped_total", &not_json),
        2.0
    );
    let too_large: Vec<_> = sub
        .iter()
        .copied()
        .chain([("reason", "too_large")])
        .collect();
    assert_eq!(
        value(&after, "eventbus_messages_dropped_total", &too_large),
        1.0
    );
    assert_eq!(
        value(&after, "eventbus_handler_duration_seconds", &sub),
        7.0
    );
    assert_eq!(
        value(&after, "eventbus_unacked_messages", &[("bus", "amqp")]),
        0.0
    );

    // Publishes: each confirmed one is counted, with its confirm time.
    let ok = [("bus", "amqp"), ("outcome", "ok")];
    let before = value(&after, "eventbus_publishes_total", &ok);
    for i in 0..3 {
        let res = host
            .client
            .post(host.url("/kit/bus/publish"))
            .json(&serde_json::json!({"exchange": exchange, "routing": "out", "message": i}))
            .send()
            .unwrap();
        assert_eq!(res.json::<serde_json::Value>().unwrap()["ok"], true);
    }
    // One over --eventbus-max-message-size: refused before it reaches the broker.
    let failed = [("bus", "amqp"), ("outcome", "failed")];
    let failed_before = value(&after, "eventbus_publishes_total", &failed);
    let res = host
        .client
        .post(host.url("/kit/bus/publish"))
        .json(&json!({"exchange": exchange, "routing": "out", "message": "x".repeat(2000)}))
        .send()
        .unwrap();
    assert_eq!(res.json::<serde_json::Value>().unwrap()["ok"], false);
    let published = scrape(&host);
    assert_eq!(
        value(&published, "eventbus_publishes_total", &failed),
        failed_before + 1.0
    );
    assert_eq!(
        value(&published, "eventbus_publishes_total", &ok),
        before + 3.0
    );
    assert_eq!(
        value(
            &published,
            "eventbus_publish_confirm_seconds",
            &[("bus", "amqp")]
        ),
        before + 3.0
    );

    // The broker closes the listener's connection: one reconnect, and up again.
    let listener = [("bus", "amqp"), ("connection", "listener")];
    assert_eq!(
        value(&published, "eventbus_reconnects_total", &listener),
        0.0
    );
    assert_eq!(value(&published, "eventbus_connection_up", &listener), 1.0);
    let name = format!("brewblox-host:{}:listener", host.name);
    peer.block_on(amqp::close_connection(&name));
    let back = integration_tests::wait_until(Duration::from_secs(20), || {
        let s = scrape(&host);
        value(&s, "eventbus_reconnects_total", &listener) == 1.0
            && value(&s, "eventbus_connection_up", &listener) == 1.0
    });
    assert!(back, "{}", host.stderr.text());
}

#[test]
fn device_plugin_exports_its_state_as_gauges() {
    let dir = PluginDir::with(&["device-plugin"]);
    let host = Host::builder(dir.path())
        .args(&["--device-id", "chamber-7", "--update-interval", "0"])
        .start();
    let res = host
        .client
        .put(host.url("/device/setpoint"))
        .json(&serde_json::json!({"setpoint": 30.5}))
        .send()
        .unwrap();
    assert_eq!(res.status(), 200);
    // Updates are off: the state stays as the setpoint left it.
    let state: serde_json::Value = host.get("/device/state").json().unwrap();
    let s = scrape(&host);
    let device = [("device", "chamber-7")];
    let gauge = |name: &str| value(&s, name, &device);
    assert_eq!(gauge("plugin_device_plugin_setpoint_celsius"), 30.5);
    assert_eq!(
        gauge("plugin_device_plugin_temperature_celsius"),
        state["temperature"].as_f64().unwrap()
    );
    let on = |key: &str| if state[key] == true { 1.0 } else { 0.0 };
    assert_eq!(gauge("plugin_device_plugin_heater_on"), on("heater"));
    assert_eq!(gauge("plugin_device_plugin_cooler_on"), on("cooler"));
    assert_eq!(
        s.families["plugin_device_plugin_heater_on"].family_type,
        PrometheusType::Gauge
    );
}

fn register(host: &Host, body: serde_json::Value) -> serde_json::Value {
    let res = host
        .client
        .post(host.url("/kit/metric"))
        .json(&body)
        .send()
        .unwrap();
    res.json().unwrap()
}

#[test]
fn plugins_register_metrics_under_their_prefix_and_bad_names_are_invalid() {
    let (host, _dir) = kit();
    let counter =
        json!({"kind": "counter", "name": "jobs", "labels": [["queue", "a"]], "value": 2});
    assert_eq!(register(&host, counter.clone())["ok"], true);
    assert_eq!(register(&host, counter)["ok"], true);
    let gauge = json!({"kind": "gauge", "name": "level", "labels": [], "value": -3.5});
    assert_eq!(register(&host, gauge)["ok"], true);
    let histogram =
        json!({"kind": "histogram", "name": "wait_seconds", "labels": [], "value": 0.2});
    assert_eq!(register(&host, histogram)["ok"], true);
    let s = scrape(&host);
    let queue = [("queue", "a")];
    assert_eq!(value(&s, "plugin_testkit_plugin_jobs_total", &queue), 4.0);
    assert_eq!(value(&s, "plugin_testkit_plugin_level", &[]), -3.5);
    assert_eq!(value(&s, "plugin_testkit_plugin_wait_seconds", &[]), 1.0);

    for (body, needle) in [
        (json!({"name": "bad-name"}), "invalid metric name"),
        (json!({"name": "x_total"}), "suffix _total"),
        (
            json!({"name": "ok", "labels": [["bad label", "v"]]}),
            "invalid label name",
        ),
        (
            json!({"name": "ok", "labels": [["l", "a\nb"]]}),
            "invalid value of label",
        ),
        (
            json!({"kind": "gauge", "name": "jobs", "labels": [["queue", "a"]]}),
            "cannot also be",
        ),
        (
            json!({"name": "jobs", "labels": [["other", "a"]]}),
            "cannot also be",
        ),
    ] {
        let answer = register(&host, body.clone());
        assert_eq!(answer["ok"], false, "{body}");
        assert_eq!(answer["kind"], "Invalid", "{body}: {answer}");
        let error = answer["error"].as_str().unwrap();
        assert!(error.contains(needle), "{body}: {error}");
    }
    // Nothing of the refused ones was exported.
    let after = scrape(&host);
    assert!(!after.families.contains_key("plugin_testkit_plugin_ok"));
    assert_eq!(
        value(&after, "plugin_testkit_plugin_jobs_total", &queue),
        4.0
    );
}

#[test]
fn repeater_failures_are_counted_per_failed_run() {
    let (host, _dir) = kit();
    // The testkit's counting repeater fails its first run; its failing repeater every run
    // (retried after 100 ms, doubling). Equal once the failing one is between two runs.
    let failures = |host: &Host| {
        value(
            &scrape(host),
            "brewblox_plugin_repeater_failures_total",
            &[("plugin", "testkit-plugin")],
        )
    };
    let attempts = |host: &Host| {
        let tasks: serde_json::Value = host.get("/kit/tasks").json().unwrap();
        tasks["failing_attempts"].as_f64().unwrap()
    };
    let mut last = (0.0, 0.0);
    let equal = integration_tests::wait_until(Duration::from_secs(10), || {
        let before = attempts(&host);
        let counted = failures(&host);
        let after = attempts(&host);
        last = (counted, after);
        before == after && after >= 3.0 && counted == 1.0 + after
    });
    assert!(equal, "counted {}, failed runs 1 + {}", last.0, last.1);
}

#[test]
fn mqtt_messages_publishes_and_the_connection_are_counted() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let broker = Mosquitto::start();
    let plugins = PluginDir::with(&["testkit-plugin"]);
    let host = Host::builder(plugins.path())
        .without_amqp()
        .mqtt(broker.port)
        .start();
    let secs = Duration::from_secs(10);
    assert!(wait_until(secs, || host.get("/_service/health").status() == 200));
    let post = |path: &str, body: serde_json::Value| -> serde_json::Value {
        host.client
            .post(host.url(path))
            .body(body.to_string())
            .send()
            .unwrap()
            .json()
            .unwrap()
    };
    post(
        "/kit/mqtt/subscribe",
        json!({"filter": "count/#", "tag": "a"}),
    );
    post(
        "/kit/mqtt/subscribe",
        json!({"filter": "json/#", "tag": "j", "json": true}),
    );
    let peer = rt.block_on(Peer::connect(broker.port, &[]));
    rt.block_on(async {
        for n in 0..3 {
            peer.client
                .publish(format!("count/{n}"), QoS::AtLeastOnce, false, "1")
                .await
                .unwrap();
        }
        // Refused by the handler's `Json` extractor, then one it takes: in order within
        // the subscription, so once the second is recorded the first was counted.
        for payload in ["not json {", "{\"a\": 1}"] {
            peer.client
                .publish("json/x", QoS::AtLeastOnce, false, payload)
                .await
                .unwrap();
        }
    });
    assert!(wait_until(secs, || {
        host.get("/kit/mqtt/received")
            .json::<Vec<serde_json::Value>>()
            .unwrap()
            .len()
            >= 4
    }));
    let answer = post(
        "/kit/mqtt/publish",
        json!({"topic": "out/x", "payload": "hi", "qos": 1}),
    );
    assert_eq!(answer["ok"], true, "{answer}");

    let after = scrape(&host);
    let sub = [
        ("bus", "mqtt"),
        ("routing", "count/#"),
        ("plugin", "testkit-plugin"),
    ];
    assert_eq!(
        value(&after, "eventbus_messages_delivered_total", &sub),
        3.0
    );
    assert_eq!(
        value(&after, "eventbus_handler_duration_seconds", &sub),
        3.0
    );
    let json_sub = [
        ("bus", "mqtt"),
        ("routing", "json/#"),
        ("plugin", "testkit-plugin"),
    ];
    let not_json: Vec<_> = json_sub
        .iter()
        .copied()
        .chain([("reason", "not_json")])
        .collect();
    assert_eq!(
        value(&after, "eventbus_messages_dropped_total", &not_json),
        1.0
    );
    assert_eq!(
        value(&after, "eventbus_messages_delivered_total", &json_sub),
        1.0
    );
    assert_eq!(
        value(
            &after,
            "eventbus_publishes_total",
            &[("bus", "mqtt"), ("outcome", "ok")]
        ),
        1.0
    );
    assert_eq!(
        value(
            &after,
            "eventbus_publish_confirm_seconds",
            &[("bus", "mqtt")]
        ),
        1.0
    );
    assert_eq!(
        value(&after, "eventbus_connection_up", &[("bus", "mqtt")]),
        1.0
    );
}

/// Every value of label `label` in the scrape.
fn values_of(scrape: &Scrape, label: &str) -> Vec<String> {
    scrape
        .families
        .values()
        .flat_map(|f| f.iter_samples())
        .filter_map(|s| {
            let set = s.get_labelset().expect("labels");
            set.get_label_value(label).map(str::to_owned)
        })
        .collect()
}

#[test]
fn subscriptions_that_never_became_active_leave_no_series() {
    let mut broker = Mosquitto::later();
    let plugins = PluginDir::new();
    let host = Host::builder(plugins.path())
        .without_amqp()
        .mqtt(broker.port)
        .start();
    // The broker is down: each waits its 5 s and fails; all at once, so the test waits once.
    let failed: Vec<u16> = std::thread::scope(|scope| {
        let calls: Vec<_> = (0..4)
            .map(|n| {
                let host = &host;
                scope.spawn(move || {
                    host.post_json("/_debug/subscribe", json!({ "topic": format!("gone/{n}") }))
                        .status()
                        .as_u16()
                })
            })
            .collect();
        calls.into_iter().map(|c| c.join().unwrap()).collect()
    });
    assert_eq!(failed, [503; 4]);
    broker.up();
    let secs = Duration::from_secs(10);
    assert!(wait_until(secs, || host.get("/_service/health").status() == 200));
    let ok = host.post_json("/_debug/subscribe", json!({"topic": "kept/#"}));
    assert_eq!(ok.status(), 200);
    let routing = values_of(&scrape(&host), "routing");
    // The sentinel: the one that became active has its series, at zero.
    assert!(routing.iter().any(|r| r == "kept/#"), "{routing:?}");
    assert!(
        !routing.iter().any(|r| r.starts_with("gone/")),
        "{routing:?}"
    );
}
