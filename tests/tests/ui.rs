//! The operator page (`/{name}/_service/ui`) in a real browser: headless Chromium opens it
//! against the real host with the bundled plugins on both eventbuses (the machine's RabbitMQ
//! and a private Mosquitto), and the test checks what a person would see:
//!
//! - every plugin listed, the device's gauges plotted with points, the recorded history
//!   plotted;
//! - delivered counts moving on one open page: a proxy between the browser and the host
//!   keeps the first overview the page got and holds its next poll until the test has sent
//!   5 messages, then the same page shows the count 5 higher;
//! - a routing key `<img src=x onerror=alert(1)>` and an MQTT topic
//!   `brewcast/<img src=x onerror=alert(2)>` shown as those characters (history keys, host
//!   subscriptions, channel list), never as an element;
//! - the channel list (inside `id="channels"`) lists the device's state topic;
//! - no console message and no error on the page; only GET requests, all to this service;
//! - the page's Content-Security-Policy forbids inline script;
//! - a dropped connection (a proxy in front of the host drops and refuses it for a while)
//!   recovers by itself.
//!
//! A screenshot is kept as an artefact: `<target>/ui-screenshot.png` (path printed; `.ci/run`
//! copies it to `target/ci-artifacts/ui-screenshot.png`).

use std::{
    io::{Read, Write},
    net::{Shutdown, TcpListener, TcpStream},
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Condvar, Mutex,
    },
    time::{Duration, Instant},
};

use integration_tests::{
    browser::{render, Rendered},
    build_dir,
    mqtt::{Mosquitto, Peer},
    runtime, wait_until, Host, PluginDir,
};
use serde_json::{json, Value};

const NAME: &str = "ui_svc";
const HOSTILE: &str = "<img src=x onerror=alert(1)>";
const HOSTILE_SHOWN: &str = "&lt;img src=x onerror=alert(1)&gt;";
/// A hostile MQTT topic (no wildcard, so a valid topic name), recorded by the history plugin.
const HOSTILE_TOPIC: &str = "brewcast/<img src=x onerror=alert(2)>";
const HOSTILE_TOPIC_SHOWN: &str = "brewcast/&lt;img src=x onerror=alert(2)&gt;";

fn overview(host: &Host) -> Value {
    host.get("/_service/overview")
        .json()
        .expect("overview JSON")
}

/// Messages delivered to history-plugin's AMQP subscription, from the overview.
fn history_delivered(overview: &Value) -> f64 {
    overview["plugins"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["name"] == "history-plugin")
        .flat_map(|p| p["subscriptions"].as_array().cloned().unwrap_or_default())
        .find(|s| s["bus"] == "amqp")
        .and_then(|s| s["delivered"].as_f64())
        .unwrap_or(-1.0)
}

/// The element with id `id` in the dumped DOM, up to the end of its section.
fn element<'a>(dom: &'a str, id: &str) -> &'a str {
    let start = dom
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("no element {id}:\n{dom}"));
    let rest = &dom[start..];
    &rest[..rest.find("</section>").unwrap_or(rest.len())]
}

/// Messages delivered to the host's AMQP subscription to the hostile routing key, from the
/// overview.
fn hostile_delivered(overview: &Value) -> f64 {
    integration_tests::delivered(&overview["host_subscriptions"], "amqp", HOSTILE)
}

/// The delivered count the page shows for that subscription.
fn shown_hostile_delivered(dom: &str) -> f64 {
    let host = element(dom, "host-subscriptions");
    let row = host
        .find(&format!("<td class=\"routing\">{HOSTILE_SHOWN}</td>"))
        .map(|at| &host[at..])
        .expect("the hostile routing key's row");
    let cell = row
        .find("class=\"num delivered\">")
        .map(|at| &row[at + "class=\"num delivered\">".len()..])
        .expect("a delivered count");
    cell[..cell.find('<').unwrap()].parse().expect("a number")
}

/// The largest `data-points` of the plots whose title contains `title`.
fn points_of(dom: &str, title: &str) -> usize {
    dom.match_indices("data-points=\"")
        .filter_map(|(at, _)| {
            let rest = &dom[at + "data-points=\"".len()..];
            let points: usize = rest[..rest.find('"')?].parse().ok()?;
            let figure_end = rest.find("</figure>")?;
            rest[..figure_end].contains(title).then_some(points)
        })
        .max()
        .unwrap_or(0)
}

fn publish(host: &Host, routing: &str, message: Value) {
    let answer = host.post_json(
        "/_debug/publish",
        json!({"exchange": "brewcast", "routing": routing, "message": message}),
    );
    assert_eq!(answer.status(), 200, "publish to {routing}");
}

/// Hostile names: a routing key (a message recorded by the history plugin, and a host
/// subscription) and an MQTT topic (a message recorded by the history plugin, and a host
/// subscription to it as a filter).
fn hostile_names(host: &Host, broker: &Mosquitto) {
    // A message published before history-plugin's AMQP queue is bound would be dropped by
    // the exchange: wait until the queue has received one of the device's events first.
    assert!(
        wait_until(Duration::from_secs(30), || {
            history_delivered(&overview(host)) >= 1.0
        }),
        "history-plugin's AMQP subscription received nothing: {}",
        overview(host)
    );
    publish(host, HOSTILE, json!({"data": {"x[degC]": 1.5}}));
    let rt = runtime();
    let peer = rt.block_on(Peer::connect(broker.port, &[]));
    rt.block_on(peer.client.publish(
        HOSTILE_TOPIC,
        rumqttc::QoS::AtLeastOnce,
        false,
        br#"{"x[degC]": 2.5}"#.to_vec(),
    ))
    .expect("publish on the hostile topic");
    for subscription in [
        json!({"exchange": "brewcast", "routing": HOSTILE}),
        json!({"topic": HOSTILE_TOPIC}),
        json!({"topic": "ui/debug/#"}),
    ] {
        let answer = host.post_json("/_debug/subscribe", subscription.clone());
        assert_eq!(answer.status(), 200, "{subscription}");
    }
    let recorded = wait_until(Duration::from_secs(10), || {
        let keys: Value = host.get("/history/keys").json().unwrap_or_default();
        keys.as_array().is_some_and(|k| {
            [HOSTILE, HOSTILE_TOPIC]
                .iter()
                .all(|h| k.iter().any(|k| k == h))
        })
    });
    assert!(
        recorded,
        "the hostile routing key or topic was not recorded"
    );
}

/// What the first render shows: plugins, plots, hostile names as text, the channels, no
/// error, only GETs to this service.
fn assert_the_page(first: &Rendered, origin: &str) {
    let dom = &first.dom;
    for plugin in ["device-plugin", "history-plugin", "hello-plugin"] {
        assert!(
            dom.contains(&format!("<span class=\"plugin-name\">{plugin}</span>")),
            "{plugin} is not listed:\n{}",
            &dom[..dom.len().min(6000)]
        );
    }
    assert!(
        points_of(dom, "temperature_celsius") >= 3,
        "temperature plot:\n{dom}"
    );
    assert!(points_of(dom, "setpoint_celsius") >= 3);
    assert!(points_of(dom, "messages delivered/s") >= 2);
    assert!(
        points_of(dom, "temperature[degC]") >= 2,
        "recorded history plot:\n{dom}"
    );
    // The hostile names are shown as text, and no element was made of them: the routing key
    // in the history keys and the host subscriptions, the topic in the history keys, the
    // host subscriptions and the channels.
    let keys = element(dom, "history-key");
    assert!(
        keys.contains(HOSTILE_SHOWN) && keys.contains(HOSTILE_TOPIC_SHOWN),
        "{keys}"
    );
    let host_part = element(dom, "host-subscriptions");
    for shown in [
        format!("<td class=\"routing\">{HOSTILE_SHOWN}</td>"),
        format!("<td class=\"routing\">{HOSTILE_TOPIC_SHOWN}</td>"),
        "<td class=\"routing\">ui/debug/#</td>".to_owned(),
    ] {
        assert!(host_part.contains(&shown), "{shown} in {host_part}");
    }
    assert!(!dom.contains("<img"), "an element was made from data");
    // The channel list, from the AsyncAPI document: the device's retained state topic, and
    // the host's subscription to the hostile topic.
    let channels = element(dom, "channels");
    for address in [
        format!("brewcast/state/{NAME}"),
        HOSTILE_TOPIC_SHOWN.to_owned(),
    ] {
        assert!(
            channels.contains(&format!("<td class=\"address\">{address}</td>")),
            "{address} in {channels}"
        );
    }
    // No error: none caught by the page, none in the console.
    assert!(
        dom.contains("<ul id=\"page-errors\"></ul>"),
        "page errors:\n{dom}"
    );
    let console: Vec<&str> = first
        .stderr
        .lines()
        .filter(|l| l.contains(":CONSOLE"))
        .collect();
    assert!(console.is_empty(), "console messages: {console:#?}");
    // Read-only and self-contained: only GETs, only to this service.
    assert!(
        first.page_methods.iter().all(|m| m == "GET"),
        "{:?}",
        first.page_methods
    );
    for request in &first.page_requests {
        assert!(
            request.starts_with(&format!("{origin}/{NAME}/")),
            "{request}"
        );
    }
}

/// Route links open their operation in the API UI.
fn assert_route_links(host: &Host, dom: &str, origin: &str) {
    let link = format!("../api/doc#/device-plugin/get_{NAME}_device_state");
    assert!(
        dom.contains(&format!("href=\"{link}\"")),
        "route links into the API UI"
    );
    let api_ui = render(
        &format!(
            "{}#/device-plugin/get_{NAME}_device_state",
            host.url("/api/doc")
        ),
        origin,
        &[],
    );
    assert!(
        api_ui.dom.contains("opblock-get is-open"),
        "the deep link opens the operation"
    );
}

#[test]
fn the_page_shows_the_service_in_a_real_browser() {
    let broker = Mosquitto::start();
    let dir = PluginDir::with(&["device-plugin", "history-plugin", "hello-plugin"]);
    let host = Host::builder(dir.path())
        .name(NAME)
        .mqtt(broker.port)
        .args(&["--update-interval", "0.5"])
        .start();
    let page = host.get("/_service/ui");
    assert_eq!(page.status(), 200);
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    hostile_names(&host, &broker);
    // The window needs a few samples (one every 2 s) and the history a few device events.
    assert!(
        wait_until(Duration::from_secs(30), || {
            let overview = overview(&host);
            overview["window"]["times"].as_array().map_or(0, Vec::len) >= 4
                && history_delivered(&overview) >= 3.0
        }),
        "no samples or no messages: {}",
        overview(&host)
    );

    let origin = host.raw_url("");
    let origin = origin.trim_end_matches('/');
    let first = render(
        &host.url("/_service/ui"),
        origin,
        &["--enable-logging=stderr", "--v=0"],
    );
    assert_the_page(&first, origin);
    assert_route_links(&host, &first.dom, origin);
    counts_move_on_one_open_page(&host);
}

/// Opens the page through a [`Gate`]: the page's first overview is kept, its next poll held
/// while 5 messages go to the host's subscription to the hostile routing key (which nothing
/// else publishes to), then let through. The same page then shows the count 5 higher. The
/// screenshot is of that page.
fn counts_move_on_one_open_page(host: &Host) {
    let gate = Gate::start(host_port(host));
    let origin = format!("http://127.0.0.1:{}", gate.port);
    let url = format!("{origin}/{NAME}/_service/ui");
    let screenshot = build_dir().parent().unwrap().join("ui-screenshot.png");
    let _ = std::fs::remove_file(&screenshot);
    let shot = format!("--screenshot={}", screenshot.display());
    let browser = {
        let (url, origin) = (url.clone(), origin.clone());
        std::thread::spawn(move || render(&url, &origin, &[&shot, "--window-size=1280,2600"]))
    };
    let first = gate.first_answer(Duration::from_secs(60));
    let before = hostile_delivered(&first);
    assert!(before >= 0.0, "the hostile subscription: {first:#}");
    for n in 0..5 {
        publish(host, HOSTILE, json!({ "n": n }));
    }
    let counted = wait_until(Duration::from_secs(10), || {
        hostile_delivered(&overview(host)) == before + 5.0
    });
    gate.open();
    let page = browser.join().expect("the browser thread");
    assert!(counted, "the host did not count 5 more: {}", overview(host));
    let after = shown_hostile_delivered(&page.dom);
    assert_eq!(
        after,
        before + 5.0,
        "the page got {before} first, then shows {after}"
    );
    assert!(gate.answers() >= 2, "the page polled through the gate");
    assert!(screenshot.is_file(), "no screenshot");
    println!("screenshot: {}", screenshot.display());
}

fn host_port(host: &Host) -> u16 {
    host.raw_url("")
        .trim_end_matches('/')
        .rsplit(':')
        .next()
        .and_then(|port| port.parse().ok())
        .expect("the host's port")
}

/// A proxy between the browser and the host, one request per connection (it asks the host
/// to close each): it keeps the overview answers it passes, and holds every overview request
/// after the first until [`Gate::open`] (at most 60 s). A held request keeps Chromium's
/// virtual time still, so the page cannot poll past it.
struct Gate {
    port: u16,
    state: Arc<(Mutex<GateState>, Condvar)>,
}

#[derive(Default)]
struct GateState {
    open: bool,
    answers: Vec<Value>,
}

impl Gate {
    fn start(upstream: u16) -> Gate {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new((Mutex::new(GateState::default()), Condvar::new()));
        let shared = Arc::clone(&state);
        std::thread::spawn(move || {
            for client in listener.incoming().take(1000) {
                let Ok(client) = client else { continue };
                let shared = Arc::clone(&shared);
                std::thread::spawn(move || pass_one(client, upstream, &shared));
            }
        });
        Gate { port, state }
    }

    /// The first overview the page got, waiting at most `timeout`.
    fn first_answer(&self, timeout: Duration) -> Value {
        let (lock, changed) = &*self.state;
        let deadline = Instant::now() + timeout;
        let mut state = lock.lock().unwrap();
        while state.answers.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "the page asked for no overview");
            state = changed.wait_timeout(state, left).unwrap().0;
        }
        state.answers[0].clone()
    }

    fn open(&self) {
        let (lock, changed) = &*self.state;
        lock.lock().unwrap().open = true;
        changed.notify_all();
    }

    fn answers(&self) -> usize {
        self.state.0.lock().unwrap().answers.len()
    }
}

/// Passes one request (a GET: no body) to the host and its answer back, as [`Gate`] says.
fn pass_one(mut client: TcpStream, upstream: u16, state: &(Mutex<GateState>, Condvar)) {
    let _ = client.set_read_timeout(Some(Duration::from_secs(60)));
    let Some(head) = read_head(&mut client) else {
        return;
    };
    let overview = head.starts_with(&format!("GET /{NAME}/_service/overview"));
    if overview {
        hold(state);
    }
    let Ok(mut server) = TcpStream::connect(("127.0.0.1", upstream)) else {
        return;
    };
    let closing: String = head
        .split("\r\n")
        .filter(|line| !line.is_empty() && !line.to_ascii_lowercase().starts_with("connection:"))
        .map(|line| format!("{line}\r\n"))
        .collect::<String>()
        + "Connection: close\r\n\r\n";
    let mut answer = Vec::new();
    let _ = server.set_read_timeout(Some(Duration::from_secs(60)));
    if server.write_all(closing.as_bytes()).is_err() || server.read_to_end(&mut answer).is_err() {
        return;
    }
    if overview {
        record(state, &answer);
    }
    let _ = client.write_all(&answer);
    let _ = client.shutdown(Shutdown::Both);
}

/// The request's head, up to its empty line (at most 64 KiB).
fn read_head(client: &mut TcpStream) -> Option<String> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && head.len() < 64 * 1024 {
        match client.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return None,
        }
    }
    String::from_utf8(head).ok()
}

/// Waits, when an overview was passed already, until the gate opens (at most 60 s).
fn hold(state: &(Mutex<GateState>, Condvar)) {
    let (lock, changed) = state;
    let guard = lock.lock().unwrap();
    let _unused = changed
        .wait_timeout_while(guard, Duration::from_secs(60), |s| {
            !s.open && !s.answers.is_empty()
        })
        .unwrap();
}

/// Keeps the JSON body of an overview answer.
fn record(state: &(Mutex<GateState>, Condvar), answer: &[u8]) {
    let text = String::from_utf8_lossy(answer);
    let Some((_, body)) = text.split_once("\r\n\r\n") else {
        return;
    };
    if let Ok(value) = serde_json::from_str::<Value>(body) {
        let (lock, changed) = state;
        lock.lock().unwrap().answers.push(value);
        changed.notify_all();
    }
}

#[test]
fn every_answer_of_the_page_carries_its_security_headers() {
    let dir = PluginDir::with(&["hello-plugin"]);
    let host = Host::builder(dir.path()).name(NAME).start();
    for (path, status) in [
        ("/_service/ui", 200),
        ("/_service/ui/ui.js", 200),
        ("/_service/ui/ui.css", 200),
        ("/_service/overview", 200),
        ("/_service/ui/nothing.js", 404),
    ] {
        let answer = host.get(path);
        assert_eq!(answer.status(), status, "{path}");
        let headers = answer.headers();
        let csp = headers
            .get("content-security-policy")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_else(|| panic!("{path}: no CSP in {headers:?}"));
        assert!(
            csp.contains("default-src 'none'") && csp.contains("script-src 'self'"),
            "{path}: {csp}"
        );
        assert_eq!(headers["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(headers["referrer-policy"], "same-origin", "{path}");
    }
}

/// A TCP proxy in front of the host that, once the page has polled the overview twice, drops
/// that request's connection and refuses the next connections, then lets them through again:
/// a dropped connection as the browser sees it.
struct Flaky {
    port: u16,
    /// Overview requests forwarded to the host.
    forwarded: Arc<AtomicUsize>,
    /// Connections closed unanswered.
    refused: Arc<AtomicUsize>,
}

/// Connections refused after the drop before the proxy lets them through again.
const REFUSALS: usize = 3;

impl Flaky {
    fn start(upstream: u16) -> Flaky {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let forwarded = Arc::new(AtomicUsize::new(0));
        let refused = Arc::new(AtomicUsize::new(0));
        let (seen, closed) = (Arc::clone(&forwarded), Arc::clone(&refused));
        std::thread::spawn(move || {
            for client in listener.incoming().take(1000) {
                let Ok(client) = client else { continue };
                let (seen, closed) = (Arc::clone(&seen), Arc::clone(&closed));
                std::thread::spawn(move || relay(client, upstream, &seen, &closed));
            }
        });
        Flaky {
            port,
            forwarded,
            refused,
        }
    }
}

/// Relays one connection, request by request from the client's side, dropping it as
/// [`Flaky`] says.
fn relay(mut client: TcpStream, upstream: u16, seen: &AtomicUsize, closed: &AtomicUsize) {
    let refusing = || seen.load(Ordering::SeqCst) >= 2 && closed.load(Ordering::SeqCst) < REFUSALS;
    if refusing() {
        closed.fetch_add(1, Ordering::SeqCst);
        return; // dropped: closed unanswered
    }
    let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
        return;
    };
    let mut from_server = server.try_clone().unwrap();
    let mut to_client = client.try_clone().unwrap();
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut from_server, &mut to_client);
        let _ = to_client.shutdown(Shutdown::Both);
    });
    let mut to_server = server;
    let mut buffer = [0u8; 16 * 1024];
    client
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    while let Ok(n) = client.read(&mut buffer) {
        if n == 0 {
            break;
        }
        let chunk = &buffer[..n];
        if chunk.starts_with(format!("GET /{NAME}/_service/overview").as_bytes()) {
            if refusing() {
                closed.fetch_add(1, Ordering::SeqCst);
                break;
            }
            seen.fetch_add(1, Ordering::SeqCst);
        }
        if to_server.write_all(chunk).is_err() {
            break;
        }
    }
    let _ = to_server.shutdown(Shutdown::Both);
    let _ = client.shutdown(Shutdown::Both);
}

#[test]
fn a_dropped_connection_recovers_by_itself() {
    let dir = PluginDir::with(&["hello-plugin"]);
    let host = Host::builder(dir.path()).name(NAME).start();
    let port: u16 = host
        .raw_url("")
        .trim_end_matches('/')
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let proxy = Flaky::start(port);
    let origin = format!("http://127.0.0.1:{}", proxy.port);
    let rendered = render(&format!("{origin}/{NAME}/_service/ui"), &origin, &[]);
    let refused = proxy.refused.load(Ordering::SeqCst);
    let forwarded = proxy.forwarded.load(Ordering::SeqCst);
    assert!(
        refused >= REFUSALS,
        "the proxy dropped {refused} connection(s)"
    );
    assert!(
        forwarded >= 3,
        "polled again after the drop: {forwarded} overview(s)"
    );
    let dom = &rendered.dom;
    assert!(
        dom.contains("id=\"connection\" class=\"badge ok\">live<"),
        "not live again:\n{dom}"
    );
    assert!(dom.contains("<span class=\"plugin-name\">hello-plugin</span>"));
    assert!(
        dom.contains("No channels."),
        "the AsyncAPI document loaded:\n{dom}"
    );
}
