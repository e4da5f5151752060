//! The log format (the original's, one plain line per record) and the filters.

use std::time::Duration;

use integration_tests::{Host, PluginDir};

/// `YYYY/MM/DD HH:MM:SS LEVEL    target(30 wide)  message`
fn assert_format(line: &str) {
    let bytes = line.as_bytes();
    assert!(line.len() > 60, "{line}");
    for (i, c) in line[..19].char_indices() {
        let expected_digit = !matches!(i, 4 | 7 | 10 | 13 | 16);
        assert_eq!(
            c.is_ascii_digit(),
            expected_digit,
            "position {i} of {line:?}"
        );
    }
    assert_eq!(bytes[19], b' ');
    assert_eq!(bytes[28], b' ', "level padded to 8: {line:?}");
    assert_eq!(
        &line[59..61],
        "  ",
        "target padded to 30 then two spaces: {line:?}"
    );
}

#[test]
fn host_and_plugin_lines_share_the_format() {
    let dir = PluginDir::with(&["testkit-plugin"]);
    let mut host = Host::builder(dir.path())
        .env("SERVICE_INFO", "v1.2.3-test")
        .start();
    assert!(host.stop().success());
    let log = host.stderr.text();
    let creating = log
        .lines()
        .find(|l| l.contains("Creating [test_svc] application"))
        .expect("creating line");
    assert_format(creating);
    assert!(
        creating.contains(" INFO     brewblox_host::service "),
        "{creating}"
    );
    let kit = log
        .lines()
        .find(|l| l.contains("kit info line"))
        .expect("plugin info line");
    assert_format(kit);
    assert!(
        kit.contains(" INFO     testkit_plugin "),
        "plugin target is its module path: {kit}"
    );
    let warn = log.lines().find(|l| l.contains("kit warn line")).unwrap();
    assert!(warn.contains(" WARNING  testkit_plugin"), "{warn}");
    assert!(log.contains("Service info: v1.2.3-test"), "{log}");
    assert!(!log.contains("kit debug line"), "INFO by default");
}

#[test]
fn debug_enables_debug_lines_and_the_access_log() {
    let dir = PluginDir::with(&["testkit-plugin"]);
    let host = Host::builder(dir.path()).arg("--debug").start();
    assert!(host
        .stderr
        .wait_for("kit debug line", Duration::from_secs(5)));
    assert_eq!(host.get("/kit/config").status(), 200);
    assert!(
        host.stderr.wait_for(
            "\"GET /test_svc/kit/config HTTP/1.1\" 200",
            Duration::from_secs(5)
        ),
        "{}",
        host.stderr.text()
    );
    assert!(host
        .stderr
        .text()
        .contains("Endpoint [GET] /test_svc/kit/config (plugin testkit-plugin)"));
    let mut without = Host::builder(dir.path()).start();
    assert_eq!(without.get("/kit/config").status(), 200);
    // The sentinel: the last line of a stop comes after any access line of that request.
    assert!(without.stop().success());
    assert!(without
        .stderr
        .wait_for("Service stopped", Duration::from_secs(5)));
    assert!(
        !without.stderr.text().contains("HTTP/1.1\" 200"),
        "no access log without --debug"
    );
}

#[test]
fn rust_log_filters_plugin_targets() {
    let dir = PluginDir::with(&["testkit-plugin"]);
    let mut host = Host::builder(dir.path())
        .env("RUST_LOG", "testkit_plugin=warn")
        .start();
    assert!(host
        .stderr
        .wait_for("kit warn line", Duration::from_secs(5)));
    assert!(host.stop().success());
    let log = host.stderr.text();
    assert!(!log.contains("kit info line"), "{log}");
    assert!(
        log.contains("Creating [test_svc]"),
        "other targets keep INFO"
    );

    let mut host = Host::builder(dir.path())
        .env("RUST_LOG", "testkit_plugin=trace")
        .start();
    assert!(
        host.stderr
            .wait_for("kit trace line", Duration::from_secs(5)),
        "{}",
        host.stderr.text()
    );
    assert!(host.stop().success());
}

#[test]
fn output_file_gets_the_same_lines() {
    let dir = PluginDir::with(&["testkit-plugin"]);
    let logs = tempfile::tempdir().unwrap();
    let path = logs.path().join("service.log");
    let mut host = Host::builder(dir.path())
        .args(&["-o", path.to_str().unwrap()])
        .start();
    assert!(host.stop().success());
    let files: Vec<_> = std::fs::read_dir(logs.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    let name = files[0].file_name().unwrap().to_str().unwrap().to_owned();
    assert!(name.starts_with("service.log."), "dated daily file: {name}");
    let text = std::fs::read_to_string(&files[0]).unwrap();
    assert!(text.contains("kit info line"));
    assert!(text.contains("Creating [test_svc] application"));
    assert!(!text.contains('\u{1b}'), "no colour codes in files");
}

#[test]
fn dependency_records_are_one_plain_line_with_their_fields() {
    // stderr is a pipe here: no terminal escape codes, and a dependency's fields follow its
    // message as key=value, as ours do. lapin logs "create channel" with an `id` field.
    let dir = PluginDir::new();
    let mut host = Host::builder(dir.path()).arg("--debug").start();
    let exchange = integration_tests::amqp::unique("logging-fields");
    let res = host
        .client
        .post(host.url("/_debug/subscribe"))
        .json(&serde_json::json!({"exchange": exchange, "routing": "k"}))
        .send()
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(
        host.stderr
            .wait_for("create channel id=", Duration::from_secs(10)),
        "{}",
        host.stderr.text()
    );
    assert!(host.stop().success());
    let log = host.stderr.text();
    assert!(!log.contains('\u{1b}'), "no escape codes in a pipe:\n{log}");
    let line = log
        .lines()
        .find(|l| l.contains("create channel id="))
        .unwrap();
    assert_format(line);
    assert!(line.contains(" DEBUG    lapin::channels "), "{line}");
}

#[test]
fn a_message_cannot_split_or_forge_a_line() {
    // Any AMQP peer chooses the routing key, and `_debug/subscribe` logs every message it
    // gets with its key: a key holding a newline and a whole log line of its own.
    let dir = PluginDir::new();
    let mut host = Host::builder(dir.path()).start();
    let exchange = integration_tests::amqp::unique("logging-forge");
    let forged = "2026/01/01 00:00:00 ERROR    brewblox_host::service          forged";
    let post = |path: &str, body: serde_json::Value| {
        let res = host.client.post(host.url(path)).json(&body).send().unwrap();
        assert_eq!(res.status(), 200, "{path}");
    };
    post(
        "/_debug/subscribe",
        serde_json::json!({"exchange": exchange, "routing": "#"}),
    );
    // The subscription is bound once a publish to the exchange arrives: retry a marker.
    let arrived = integration_tests::wait_until(Duration::from_secs(10), || {
        post(
            "/_debug/publish",
            serde_json::json!({"exchange": exchange, "routing": "marker", "message": 1}),
        );
        host.stderr
            .wait_for("key=marker", Duration::from_millis(200))
    });
    assert!(arrived, "{}", host.stderr.text());
    // From another peer: the host itself refuses to send a name with control characters.
    let peer = integration_tests::amqp::SyncPeer::connect();
    peer.publish(&exchange, &format!("k\n{forged}\r\u{1b}[2K"), b"2");
    assert!(
        host.stderr.wait_for("message=2", Duration::from_secs(10)),
        "{}",
        host.stderr.text()
    );
    assert!(host.stop().success());
    let log = host.stderr.text();
    let line = log
        .lines()
        .find(|l| l.contains("message=2"))
        .expect("the message is logged");
    assert_format(line);
    assert!(
        line.contains(&format!("key=k\\n{forged}\\r\\u{{1b}}[2K, message=2")),
        "{line}"
    );
    assert!(!log.lines().any(|l| l.starts_with(forged)), "{log}");
    assert!(!log.contains(['\r', '\u{1b}']), "{log:?}");
}
