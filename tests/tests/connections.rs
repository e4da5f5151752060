//! Clients that never finish, file-descriptor exhaustion, and the listening address: the
//! server bounds every wait on a client and keeps accepting whatever clients do.

use std::{io::Write, net::TcpStream, time::Duration};

use integration_tests::{read_until_closed, wait_until, Host, PluginDir};

fn host_with(args: &[&str]) -> (Host, PluginDir) {
    let dir = PluginDir::new();
    let host = Host::builder(dir.path()).args(args).start();
    (host, dir)
}

#[test]
fn a_client_that_never_finishes_its_headers_is_closed() {
    let (host, _dir) = host_with(&["--http-header-timeout", "0.5"]);
    let mut stream = TcpStream::connect(("127.0.0.1", host.port)).unwrap();
    stream.write_all(b"GET / HTTP/1.1\r\nHo").unwrap();
    let answer = read_until_closed(&mut stream, Duration::from_secs(10))
        .expect("the server closes the connection, well before 10 s");
    assert_eq!(answer, "", "closed without an answer");
}

#[test]
fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout() {
    let (host, _dir) = host_with(&["--http-idle-timeout", "0.5", "--http-header-timeout", "60"]);
    let mut stream = TcpStream::connect(("127.0.0.1", host.port)).unwrap();
    let request = format!(
        "GET /{}/_service/status HTTP/1.1\r\nHost: x\r\n\r\n",
        host.name
    );
    stream.write_all(request.as_bytes()).unwrap();
    let answer = read_until_closed(&mut stream, Duration::from_secs(10))
        .expect("closed once idle, well before 10 s");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with("{\"status\": \"ok\"}"), "{answer}");
}

#[test]
fn a_slow_request_is_not_cut_by_the_idle_timeout() {
    let dir = PluginDir::with(&["reload-plugin"]);
    let host = Host::builder(dir.path())
        .args(&["--http-idle-timeout", "0.3", "--http-header-timeout", "0.3"])
        .start();
    // The handler takes longer than both limits: they apply only while waiting for a request.
    let response = host.get("/reload/sleep/1000");
    assert_eq!(response.status(), 200);
}

#[test]
fn accepting_goes_on_through_file_descriptor_exhaustion() {
    let dir = PluginDir::new();
    let host = Host::builder(dir.path())
        .fd_limit(64)
        .args(&["--http-header-timeout", "60"])
        .start();
    // Idle clients until the host runs out of descriptors.
    let mut idle = Vec::new();
    for _ in 0..100 {
        if let Ok(stream) = TcpStream::connect(("127.0.0.1", host.port)) {
            idle.push(stream);
        }
    }
    assert!(
        host.stderr
            .wait_for("Cannot accept connections", Duration::from_secs(10)),
        "{}",
        host.stderr.text()
    );
    drop(idle);
    let served = wait_until(Duration::from_secs(20), || {
        host.client
            .get(host.url("/_service/status"))
            .send()
            .is_ok_and(|r| r.status() == 200)
    });
    assert!(served, "{}", host.stderr.text());
    assert!(host
        .stderr
        .wait_for("Accepting connections again", Duration::from_secs(10)));
    // Logged once per episode: each "Cannot accept" is followed by its "again" before the
    // next one. (A descriptor the host frees on its own can end an episode early and a
    // pending client start another, so the number of episodes is not fixed.)
    let text = host.stderr.text();
    let episodes: Vec<bool> = text
        .lines()
        .filter_map(|line| {
            if line.contains("Cannot accept connections") {
                Some(true)
            } else if line.contains("Accepting connections again") {
                Some(false)
            } else {
                None
            }
        })
        .collect();
    let alternating = episodes
        .iter()
        .enumerate()
        .all(|(i, cannot)| *cannot == (i % 2 == 0));
    assert!(alternating, "logged once per episode: {episodes:?}\n{text}");
}

#[test]
fn port_0_prints_the_port_it_bound() {
    let dir = PluginDir::new();
    let host = Host::builder(dir.path()).args(&["--port", "0"]).spawn();
    assert!(host.stdout.wait_for(
        "======== Running on http://127.0.0.1:",
        Duration::from_secs(30)
    ));
    let banner = host.stdout.text();
    let port: u16 = banner
        .split("http://127.0.0.1:")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|port| port.parse().ok())
        .expect("a port in the banner");
    assert_ne!(port, 0);
    let url = format!("http://127.0.0.1:{port}/{}/_service/status", host.name);
    assert_eq!(reqwest::blocking::get(url).unwrap().status(), 200);
}

#[test]
fn errors_hyper_answers_itself_are_bare() {
    // A request line that cannot be parsed never reaches the app: hyper answers it, without
    // CORS headers or the "<code>: <reason>" body (docs/operating.md says so).
    let (host, _dir) = host_with(&[]);
    let mut stream = TcpStream::connect(("127.0.0.1", host.port)).unwrap();
    stream.write_all(b"NOT A REQUEST\r\n\r\n").unwrap();
    let answer = read_until_closed(&mut stream, Duration::from_secs(10)).unwrap();
    assert!(
        answer.starts_with("HTTP/1.1 400 Bad Request\r\n"),
        "{answer}"
    );
    assert!(!answer.contains("access-control-allow-origin"), "{answer}");
}
