//! A password in `--eventbus-url` is never printed: not in the log, not in
//! `/_service/health`, not in the `/_debug/publish` 503 body, whatever characters it holds.

use std::time::Duration;

use integration_tests::{amqp, wait_until, Host, PluginDir};
use serde_json::{json, Value};

#[test]
fn a_password_with_url_delimiters_is_never_printed() {
    let dir = PluginDir::with(&["testkit-plugin"]);
    // '/', '@', ':', '?' and '#' percent-encoded; a wrong password, so the broker refuses
    // it and the host reports that failure everywhere it reports anything.
    let password = "S3cr%2FetX%40%3A%3F%23";
    let url = format!("amqp://guest:{password}@127.0.0.1:5672/%2f");
    let host = Host::builder(dir.path())
        .name(&amqp::unique("svc"))
        .args(&["--debug", "--testkit-exchange", &amqp::unique("ex-pw")])
        .args(&["--eventbus-url", &url, "--eventbus-publish-timeout", "3"])
        .start();
    let ok = wait_until(Duration::from_secs(15), || {
        let health: Value = host.get("/_service/health").json().unwrap();
        !health["eventbus"]["last_error"].is_null()
    });
    let health = host.get("/_service/health").text().unwrap();
    assert!(ok, "{health}");
    let res = host
        .client
        .post(host.url("/_debug/publish"))
        .json(&json!({"exchange": "e", "routing": "r", "message": 1}))
        .send()
        .unwrap();
    assert_eq!(res.status(), 503);
    let body = res.text().unwrap();
    let log = host.stderr.text();
    assert!(log.contains("guest:***@127.0.0.1:5672"), "{log}");
    for (what, text) in [("health", &health), ("publish", &body), ("log", &log)] {
        for secret in ["S3cr", "etX"] {
            assert!(!text.contains(secret), "{what}: {text}");
        }
    }
}
