//! Startup, signals and shutdown (the original's lifecycle, see
//! `docs/brewblox-service-0.20.0.md`), with misbehaving plugins.

use std::{
    io::{Read, Write},
    net::{TcpListener, TcpStream},
    thread,
    time::{Duration, Instant},
};

use integration_tests::{urlencode, wait_until, Host, PluginDir};

fn position(log: &str, needle: &str) -> usize {
    log.find(needle)
        .unwrap_or_else(|| panic!("{needle:?} not in log:\n{log}"))
}

#[test]
fn sigterm_runs_hooks_in_order_and_exits_0() {
    let dir = PluginDir::with(&["peer-plugin", "testkit-plugin"]);
    let mut host = Host::builder(dir.path()).start();
    assert!(host.stdout.wait_for(
        "======== Running on http://127.0.0.1:",
        Duration::from_secs(5)
    ));
    assert!(host.stdout.text().contains("(Press CTRL+C to quit)"));
    let status = host.stop();
    assert_eq!(status.code(), Some(0));
    let log = host.stderr.text();
    // startup in load order, shutdown in reverse.
    assert!(position(&log, "peer started") < position(&log, "kit started"));
    let kit_before = position(&log, "kit before_shutdown");
    let peer_before = position(&log, "peer before_shutdown");
    let kit_down = position(&log, "kit shutdown");
    let peer_down = position(&log, "peer shutdown");
    assert!(
        kit_before.max(peer_before) < kit_down.min(peer_down),
        "before_shutdown first:\n{log}"
    );
    assert!(
        kit_down < peer_down,
        "shutdown in reverse load order:\n{log}"
    );
    assert!(log.contains("Service stopped"));
}

#[test]
fn sigint_exits_0() {
    let dir = PluginDir::with(&["hello-plugin"]);
    let mut host = Host::builder(dir.path()).start();
    host.signal(libc::SIGINT);
    let status = host.wait_exit(Duration::from_secs(30)).expect("exits");
    assert_eq!(status.code(), Some(0));
    assert!(host.stderr.text().contains("Received SIGINT"));
}

#[test]
fn panic_in_startup_refuses_to_start_naming_plugin_and_message() {
    let dir = PluginDir::with(&["peer-plugin", "testkit-plugin"]);
    let out = Host::builder(dir.path())
        .args(&["--testkit-fail", "startup-panic"])
        .run_to_exit();
    assert_eq!(out.code(), Some(1), "{}", out.stderr);
    assert!(
        out.stderr
            .contains("plugin testkit-plugin: startup failed: panicked: kit startup kaboom"),
        "{}",
        out.stderr
    );
    assert!(!out.stdout.contains("Running on"));
    // The plugin started before it is shut down again.
    assert!(out.stderr.contains("peer shutdown"), "{}", out.stderr);
}

#[test]
fn error_in_startup_refuses_to_start() {
    let dir = PluginDir::with(&["testkit-plugin"]);
    let out = Host::builder(dir.path())
        .args(&["--testkit-fail", "startup-error"])
        .run_to_exit();
    assert_eq!(out.code(), Some(1));
    assert!(
        out.stderr
            .contains("plugin testkit-plugin: startup failed: kit startup refused"),
        "{}",
        out.stderr
    );
}

#[test]
fn panics_in_shutdown_hooks_are_logged_and_others_still_stop() {
    for mode in ["before-shutdown-panic", "shutdown-panic"] {
        let dir = PluginDir::with(&["peer-plugin", "testkit-plugin"]);
        let mut host = Host::builder(dir.path())
            .args(&["--testkit-fail", mode])
            .start();
        assert_eq!(host.stop().code(), Some(0), "{mode}");
        let log = host.stderr.text();
        let hook = if mode == "shutdown-panic" {
            "shutdown"
        } else {
            "before_shutdown"
        };
        assert!(
            log.contains(&format!(
                "plugin testkit-plugin: {hook} failed: panicked: kit {hook} kaboom"
            )),
            "{mode}:\n{log}"
        );
        assert!(log.contains("peer shutdown"), "{log}");
    }
}

#[test]
fn a_hanging_shutdown_is_abandoned_after_the_timeout() {
    let dir = PluginDir::with(&["peer-plugin", "testkit-plugin"]);
    let mut host = Host::builder(dir.path())
        .args(&["--testkit-fail", "shutdown-hang", "--hook-timeout", "0.5"])
        .start();
    let started = Instant::now();
    assert_eq!(host.stop().code(), Some(0));
    assert!(started.elapsed() < Duration::from_secs(20));
    let log = host.stderr.text();
    assert!(
        log.contains(
            "plugin testkit-plugin: shutdown did not finish within 0.5 s and was abandoned"
        ),
        "{log}"
    );
    assert!(log.contains("peer shutdown"));
}

/// A request held inside a plugin handler: the testkit's `/kit/fetch` calls back to a
/// listener of the test's own, so the test knows the request is in flight once that call
/// arrives, and it ends when the test answers it.
struct HeldRequest {
    listener: TcpListener,
    request: thread::JoinHandle<Option<u16>>,
}

impl HeldRequest {
    fn start(host: &Host) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let callback = format!("http://{}/", listener.local_addr().unwrap());
        let url = host.url(&format!("/kit/fetch?url={}", urlencode(&callback)));
        let client = host.client.clone();
        let request =
            thread::spawn(move || client.get(url).send().ok().map(|r| r.status().as_u16()));
        HeldRequest { listener, request }
    }

    /// Waits (≤ 10 s) until the plugin handler's call arrives: the request is in flight.
    fn in_flight(&self) -> TcpStream {
        self.listener.set_nonblocking(true).unwrap();
        let mut stream = None;
        let arrived = wait_until(Duration::from_secs(10), || {
            stream = self.listener.accept().ok().map(|(s, _)| s);
            stream.is_some()
        });
        assert!(arrived, "the request did not reach the plugin handler");
        let stream = stream.unwrap();
        stream.set_nonblocking(false).unwrap();
        stream
    }
}

/// Answers the plugin handler's call with `{}`.
fn answer(mut call: TcpStream) {
    call.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut head = [0u8; 1024];
    let _ = call.read(&mut head);
    call.write_all(
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\
          connection: close\r\n\r\n{}",
    )
    .unwrap();
}

#[test]
fn in_flight_requests_finish_during_shutdown() {
    let dir = PluginDir::with(&["testkit-plugin"]);
    let mut host = Host::builder(dir.path()).start();
    let held = HeldRequest::start(&host);
    let call = held.in_flight();
    host.signal(libc::SIGTERM);
    // Shutdown has begun (before_shutdown runs once the server stops accepting) while the
    // request is still in the handler; only now does the handler get its answer.
    assert!(
        host.stderr
            .wait_for("kit before_shutdown", Duration::from_secs(10)),
        "{}",
        host.stderr.text()
    );
    answer(call);
    assert_eq!(held.request.join().unwrap(), Some(200));
    assert_eq!(
        host.wait_exit(Duration::from_secs(30))
            .and_then(|s| s.code()),
        Some(0)
    );
}

#[test]
fn drain_is_bounded_by_the_shutdown_timeout() {
    let dir = PluginDir::with(&["testkit-plugin"]);
    let mut host = Host::builder(dir.path())
        .args(&["--shutdown-timeout", "0.5"])
        .start();
    let held = HeldRequest::start(&host);
    // Never answered: the request stays in the handler until the host gives up on it.
    let _call = held.in_flight();
    let started = Instant::now();
    assert_eq!(host.stop().code(), Some(0));
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
    assert!(host.stderr.text().contains("did not finish within 0.5 s"));
    assert_ne!(held.request.join().unwrap(), Some(200));
}

#[test]
fn port_in_use_is_a_clear_error() {
    let dir = PluginDir::with(&["hello-plugin"]);
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let out = Host::builder(dir.path())
        .args(&["--port", &port])
        .run_to_exit();
    assert_eq!(out.code(), Some(1));
    assert!(
        out.stderr.contains("cannot listen on 127.0.0.1:"),
        "{}",
        out.stderr
    );
}

/// A task spawned in `startup` that awaits `ctx.serving()` reaches the service's own routes:
/// the listener is bound and the generation's routes are served by then.
#[test]
fn a_task_that_awaits_serving_reaches_the_services_own_routes() {
    let dir = PluginDir::with(&["testkit-plugin"]);
    let mut host = Host::builder(dir.path()).start();
    let mut probe = serde_json::Value::Null;
    let done = wait_until(Duration::from_secs(10), || {
        probe = host.get("/kit/self-probe").json().unwrap();
        probe.get("pending").is_none()
    });
    assert!(done, "{probe}");
    assert_eq!(probe, serde_json::json!({"status": 200}));
    assert_eq!(host.stop().code(), Some(0));
}
