//! The operator page (`/{name}/_service/ui`) in a real browser: headless Chromium opens it
//! against the real host with the bundled plugins on both eventbuses (the machine's RabbitMQ
//! and a private Mosquitto), and the test checks what a person would see:
//!
//! - every plugin listed, the device's gauges plotted with points, the recorded history
//!   plotted;
//! - delivered counts moving after messages are sent;
//! - a routing key `<img src=x onerror=alert(1)>` shown as those characters, never as an
//!   element;
//! - no console message and no error on the page; only GET requests, all to this service;
//! - the page's Content-Security-Policy forbids inline script;
//! - a dropped connection (a proxy in front of the host drops and refuses it for a while)
//!   recovers by itself.
//!
//! A screenshot is kept as an artefact: `<target>/ui-screenshot.png` (path printed).

use std::{
    io::{Read, Write},
    net::{Shutdown, TcpListener, TcpStream},
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use integration_tests::{browser::render, build_dir, mqtt::Mosquitto, wait_until, Host, PluginDir};
use serde_json::{json, Value};

const NAME: &str = "ui_svc";
const HOSTILE: &str = "<img src=x onerror=alert(1)>";
const HOSTILE_SHOWN: &str = "&lt;img src=x onerror=alert(1)&gt;";

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

/// The first number shown in a `delivered` cell of history-plugin's card.
fn shown_delivered(dom: &str) -> f64 {
    let card = dom
        .find("data-plugin=\"history-plugin\"")
        .map(|at| &dom[at..])
        .expect("history-plugin's card");
    let cell = card
        .find("class=\"num delivered\">")
        .map(|at| &card[at + "class=\"num delivered\">".len()..])
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

    // A hostile routing key: recorded by the history plugin, and a host subscription.
    publish(&host, HOSTILE, json!({"data": {"x[degC]": 1.5}}));
    let subscribed = host.post_json(
        "/_debug/subscribe",
        json!({"exchange": "brewcast", "routing": HOSTILE}),
    );
    assert_eq!(subscribed.status(), 200);
    let subscribed = host.post_json("/_debug/subscribe", json!({"topic": "ui/debug/#"}));
    assert_eq!(subscribed.status(), 200);
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
    let url = host.url("/_service/ui");
    let first = render(&url, origin, &["--enable-logging=stderr", "--v=0"]);
    let dom = &first.dom;
    for plugin in ["device-plugin", "history-plugin", "hello-plugin"] {
        assert!(
            dom.contains(&format!("<span class=\"plugin-name\">{plugin}</span>")),
            "{plugin} is not listed:\n{}",
            &dom[..dom.len().min(6000)]
        );
    }
    // Routes link to their operation in the API UI, which opens it.
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
    // The hostile key is shown as text (in the history keys and the host subscriptions),
    // and no element was made of it.
    assert!(dom.matches(HOSTILE_SHOWN).count() >= 2, "{dom}");
    assert!(!dom.contains("<img"), "an element was made from data");
    // The host's own subscriptions, on both buses.
    let host_part = &dom[dom
        .find("id=\"host-subscriptions\"")
        .expect("host subscriptions")..];
    assert!(host_part.contains("ui/debug/#") && host_part.contains(HOSTILE_SHOWN));
    // AsyncAPI channels are listed: the device's retained state topic.
    assert!(dom.contains(&format!("brewcast/state/{NAME}")), "channels");
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

    // Counts move: 5 more messages, then the page shows at least 5 more delivered.
    let before = shown_delivered(dom);
    let wanted = history_delivered(&overview(&host)) + 5.0;
    for n in 0..5 {
        publish(&host, "ui-test", json!({"n": n}));
    }
    assert!(wait_until(Duration::from_secs(10), || history_delivered(
        &overview(&host)
    ) >= wanted));
    let screenshot = build_dir().parent().unwrap().join("ui-screenshot.png");
    let shot = format!("--screenshot={}", screenshot.display());
    let second = render(&url, origin, &[&shot, "--window-size=1280,2600"]);
    let after = shown_delivered(&second.dom);
    assert!(
        after >= before + 5.0,
        "delivered shown: {before} then {after}"
    );
    assert!(screenshot.is_file(), "no screenshot");
    println!("screenshot: {}", screenshot.display());
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
