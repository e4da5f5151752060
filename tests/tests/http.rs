//! The HTTP surface: prefix, status, CORS, error bodies, limits, plugin routes (the original's
//! behaviour and where we differ: `docs/brewblox-service-0.20.0.md`).

use integration_tests::{Host, PluginDir};
use reqwest::{blocking::Response, Method};
use serde_json::{json, Value};

fn kit() -> (Host, PluginDir) {
    let dir = PluginDir::with(&["testkit-plugin"]);
    let host = Host::builder(dir.path())
        .args(&["--max-body-size", "4096"])
        .start();
    (host, dir)
}

fn assert_cors(res: &Response) {
    let h = res.headers();
    assert_eq!(h["access-control-allow-origin"], "*");
    assert_eq!(h["access-control-allow-credentials"], "true");
    assert!(h.contains_key("access-control-allow-methods"));
    assert!(h.contains_key("access-control-allow-headers"));
}

fn text(res: Response) -> String {
    res.text().unwrap()
}

#[test]
fn status_get_and_head() {
    let (host, _dir) = kit();
    let res = host.get("/_service/status");
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.headers()["content-type"],
        "application/json; charset=utf-8"
    );
    assert_cors(&res);
    assert_eq!(text(res), r#"{"status": "ok"}"#);

    let res = host
        .client
        .head(host.url("/_service/status"))
        .send()
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-length"], "16");
    assert_eq!(text(res), "");
}

#[test]
fn wrong_method_is_405_with_allow_and_cors() {
    let (host, _dir) = kit();
    let res = host
        .client
        .post(host.url("/_service/status"))
        .send()
        .unwrap();
    assert_eq!(res.status(), 405);
    assert_eq!(res.headers()["allow"], "GET,HEAD");
    assert_cors(&res);
    assert_eq!(text(res), "405: Method Not Allowed");
}

#[test]
fn unprefixed_and_trailing_slash_paths_are_404() {
    let (host, _dir) = kit();
    for path in [
        "/_service/status",
        "/test_svc/_service/status/",
        "/other/kit/config",
    ] {
        let res = host.client.get(host.raw_url(path)).send().unwrap();
        assert_eq!(res.status(), 404, "{path}");
        assert_cors(&res);
        assert_eq!(text(res), "404: Not Found");
    }
}

#[test]
fn options_on_any_path_is_200_with_echoed_cors() {
    let (host, _dir) = kit();
    let res = host
        .client
        .request(Method::OPTIONS, host.raw_url("/totally/unknown"))
        .header("Access-Control-Request-Method", "PUT")
        .header("Access-Control-Request-Headers", "X-Foo, Content-Type")
        .send()
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["access-control-allow-methods"], "PUT");
    assert_eq!(
        res.headers()["access-control-allow-headers"],
        "X-Foo, Content-Type"
    );
    assert_eq!(res.headers()["access-control-allow-origin"], "*");

    let res = host
        .client
        .request(Method::OPTIONS, host.url("/_service/status"))
        .send()
        .unwrap();
    assert_eq!(res.status(), 200);
    let methods: std::collections::BTreeSet<_> = res.headers()["access-control-allow-methods"]
        .to_str()
        .unwrap()
        .split(',')
        .map(str::to_owned)
        .collect();
    let all = [
        "CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "TRACE",
    ];
    assert_eq!(methods, all.iter().map(|m| m.to_string()).collect());
    assert_eq!(res.headers()["access-control-allow-headers"], "*");
}

#[test]
fn handler_error_is_500_with_a_one_line_reason() {
    let (host, _dir) = kit();
    let res = host.get("/kit/error");
    assert_eq!(res.status(), 500);
    assert_cors(&res);
    assert_eq!(res.headers()["content-type"], "text/plain; charset=utf-8");
    assert_eq!(text(res), "500: RuntimeError(kaboom) second line");
}

#[test]
fn handler_panic_is_500_and_the_host_keeps_serving() {
    let (mut host, _dir) = kit();
    for _ in 0..3 {
        let res = host.get("/kit/panic");
        assert_eq!(res.status(), 500);
        assert_cors(&res);
        let body = text(res);
        assert!(body.starts_with("500: "), "{body}");
        assert!(body.contains("kaboom"), "{body}");
    }
    assert_eq!(host.get("/_service/status").status(), 200);
    assert_eq!(host.get("/kit/sleep?ms=1").status(), 200);
    assert!(host.is_running());
    assert!(host
        .stderr
        .wait_for("panicked", std::time::Duration::from_secs(5)));
}

#[test]
fn oversized_body_is_413() {
    let (host, _dir) = kit();
    let res = reqwest::blocking::Client::new()
        .post(host.url("/kit/json"))
        .body(vec![b' '; 5000])
        .send()
        .unwrap();
    assert_eq!(res.status(), 413);
    assert_cors(&res);
    assert_eq!(text(res), "413: Payload Too Large");
    // Streaming (no content-length) bodies are cut off too.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..10).map(|_| Ok(vec![b' '; 1000])).collect();
    let body = reqwest::blocking::Body::new(std::io::Cursor::new(
        chunks
            .into_iter()
            .flat_map(|c| c.unwrap())
            .collect::<Vec<u8>>(),
    ));
    let res = reqwest::blocking::Client::new()
        .post(host.url("/kit/json"))
        .body(body)
        .send()
        .unwrap();
    assert_eq!(res.status(), 413);
    // Within the limit it works. (A fresh client, so this does not depend on whether a client
    // reuses the connection of an upload refused halfway.)
    let res = reqwest::blocking::Client::new()
        .post(host.url("/kit/json"))
        .json(&json!({"value": 21}))
        .send()
        .unwrap();
    assert_eq!(res.json::<Value>().unwrap(), json!({"doubled": 42}));
}

#[test]
fn malformed_json_is_400_with_a_json_error() {
    let (host, _dir) = kit();
    let res = host
        .client
        .post(host.url("/kit/json"))
        .body("{not json")
        .send()
        .unwrap();
    assert_eq!(res.status(), 400);
    assert_cors(&res);
    assert!(res.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/json"));
    let body: Value = res.json().unwrap();
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .starts_with("invalid JSON body"),
        "{body}"
    );

    let res = host
        .client
        .post(host.url("/kit/json"))
        .json(&json!({"value": "x"}))
        .send()
        .unwrap();
    assert_eq!(res.status(), 400);
    assert_eq!(res.json::<Value>().unwrap()["field"], "value");
}

#[test]
fn plugin_routes_get_method_params_query_headers_body() {
    let (host, _dir) = kit();
    let res = host
        .client
        .patch(host.url("/kit/echo/42?q=a%20b&x=1"))
        .header("X-Custom", "yes")
        .body("payload")
        .send()
        .unwrap();
    assert_eq!(res.status(), 200);
    let body: Value = res.json().unwrap();
    assert_eq!(body["method"], "PATCH");
    assert_eq!(body["path"], "/test_svc/kit/echo/42");
    assert_eq!(body["query"], "q=a%20b&x=1");
    assert_eq!(body["q"], "a b");
    assert_eq!(body["id"], "42");
    assert_eq!(body["headers"]["x-custom"], "yes");
    assert_eq!(body["body"], "payload");
}

#[test]
fn plugin_chooses_status_and_headers() {
    let (host, _dir) = kit();
    for code in [201, 202, 302, 401, 404, 418, 503] {
        let res = reqwest::blocking::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap()
            .get(host.url(&format!("/kit/status/{code}")))
            .send()
            .unwrap();
        assert_eq!(res.status(), code);
        assert_eq!(res.headers()["x-kit"], "yes");
        assert_cors(&res);
        assert_eq!(
            text(res),
            format!("status {code}"),
            "plugin bodies are kept"
        );
    }
}

#[test]
fn get_routes_answer_head() {
    let (host, _dir) = kit();
    let res = host.client.head(host.url("/kit/config")).send().unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(text(res), "");
}

#[test]
fn plugin_statuses_outside_200_to_599_are_a_500_with_the_json_error_body() {
    let (host, _dir) = kit();
    let client = reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    for code in [100, 101, 103, 600, 999] {
        let res = client
            .get(host.url(&format!("/kit/status/{code}")))
            .send()
            .unwrap();
        assert_eq!(res.status(), 500, "{code}");
        assert_cors(&res);
        let body: Value = res.json().unwrap();
        let error = body["error"].as_str().unwrap_or_default();
        assert!(error.contains(&format!("status {code}")), "{code}: {body}");
    }
    assert!(host.stderr.wait_for(
        "invalid response: status 999",
        std::time::Duration::from_secs(5)
    ));
    for code in [204, 304] {
        let res = client
            .get(host.url(&format!("/kit/status/{code}")))
            .send()
            .unwrap();
        assert_eq!(res.status(), code);
        assert_cors(&res);
        let length = res.headers().get("content-length").cloned();
        assert!(
            length.is_none() || length.as_ref().is_some_and(|l| l == "0"),
            "{code}: {length:?}"
        );
        assert_eq!(text(res), "", "{code}");
    }
}

#[test]
fn a_path_that_is_not_utf8_once_decoded_is_the_json_400() {
    let (host, _dir) = kit();
    for path in ["/kit/echo/%FF", "/api/doc/swagger_static/%FF"] {
        let res = host.get(path);
        assert_eq!(res.status(), 400, "{path}");
        assert_cors(&res);
        let body: Value = res.json().unwrap();
        let error = body["error"].as_str().unwrap_or_default();
        assert!(error.starts_with("path: "), "{path}: {body}");
    }
    // A valid path goes on working.
    assert_eq!(host.get("/kit/echo/%C3%A9").status(), 200);
}

/// A host with the bundled plugins, at the default body limit (1 MiB).
fn bundled() -> (Host, PluginDir) {
    let dir = PluginDir::with(&["device-plugin", "history-plugin"]);
    let host = Host::builder(dir.path())
        .args(&["--update-interval", "0"])
        .start();
    (host, dir)
}

/// Sends `body` to `path` with `method` as JSON: the status and the answer's text.
fn send_json(host: &Host, method: Method, path: &str, body: String) -> (u16, String) {
    let res = host
        .client
        .request(method, host.url(path))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .unwrap();
    (res.status().as_u16(), text(res))
}

/// JSON bombs, each within the default body limit: arrays nested 100k deep (open, closed,
/// and as an unknown field's value, which the decoder skips) and objects of 60k keys.
fn json_bombs() -> Vec<(&'static str, String)> {
    let open = "[".repeat(100_000);
    let closed = format!("{open}{}", "]".repeat(100_000));
    let keys = |last: &str| {
        let keys: Vec<String> = (0..60_000).map(|n| format!("\"k{n}\":{n}")).collect();
        format!("{{{}{last}}}", keys.join(","))
    };
    vec![
        ("100k open arrays", open.clone()),
        ("100k nested arrays", closed.clone()),
        ("100k arrays in a field", format!("{{\"x\":{closed}}}")),
        ("100k open arrays in a field", format!("{{\"x\":{open}")),
        ("60k keys", keys("")),
        ("60k keys, one repeated", keys(",\"k0\":0")),
    ]
}

#[test]
fn json_bombs_to_a_bundled_plugin_are_refused_and_the_server_goes_on() {
    let (mut host, _dir) = bundled();
    let routes = [
        (Method::PUT, "/device/setpoint"),
        (Method::POST, "/history/subscribe"),
    ];
    for (method, path) in routes {
        for (what, body) in json_bombs() {
            assert!(body.len() < 1 << 20, "{what}: within the body limit");
            let (status, answer) = send_json(&host, method.clone(), path, body);
            assert_eq!(status, 400, "{method} {path}, {what}: {answer}");
            let answer: Value = serde_json::from_str(&answer).unwrap();
            assert!(answer["error"].is_string(), "{path}, {what}: {answer}");
            assert_eq!(host.get("/_service/status").status(), 200, "{what}");
        }
    }
    // (Over the body limit a bomb is a 413 before any decoding: `oversized_body_is_413`.)
    let (status, answer) = send_json(
        &host,
        Method::PUT,
        "/device/setpoint",
        r#"{"setpoint": 21.5}"#.into(),
    );
    assert_eq!(status, 200, "{answer}");
    assert!(host.is_running());
}

/// Sends a raw request head on a fresh connection and returns what came back before the
/// server closed it. Writing may fail once the server refused the head and closed.
fn raw_head(host: &Host, head: &[u8]) -> String {
    use std::io::Write;
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", host.port)).unwrap();
    stream
        .set_write_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    let _ = stream.write_all(head);
    integration_tests::read_until_closed(&mut stream, std::time::Duration::from_secs(10))
        .expect("the server answers and closes within 10 s")
}

#[test]
fn headers_over_the_limits_are_431_and_the_server_goes_on() {
    let (mut host, _dir) = bundled();
    let path = format!("/{}/_service/status", host.name);
    let one_big = format!(
        "GET {path} HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(500 * 1024)
    );
    let many: String = (0..200).map(|n| format!("X-H{n}: {n}\r\n")).collect();
    let many = format!("GET {path} HTTP/1.1\r\nHost: x\r\n{many}\r\n");
    for (what, head) in [("one 500 KB header", one_big), ("200 headers", many)] {
        let answer = raw_head(&host, head.as_bytes());
        assert!(
            answer.starts_with("HTTP/1.1 431 Request Header Fields Too Large"),
            "{what}: {answer:.200}"
        );
        assert_eq!(host.get("/_service/status").status(), 200, "{what}");
    }
    // Within the limits, the same kind of request is served.
    let fine: String = (0..50).map(|n| format!("X-H{n}: {n}\r\n")).collect();
    let fine = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{fine}\r\n");
    let answer = raw_head(&host, fine.as_bytes());
    assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer:.200}");
    assert!(host.is_running());
}
