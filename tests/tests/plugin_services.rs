//! What a plugin can do through the SDK, observed through the real host.

use std::time::{Duration, Instant};

use integration_tests::{urlencode, wait_until, Host, PluginDir};
use serde_json::{json, Value};

fn kit_and_peer() -> (Host, PluginDir) {
    let dir = PluginDir::with(&["peer-plugin", "testkit-plugin"]);
    let host = Host::builder(dir.path()).start();
    (host, dir)
}

fn get_json(host: &Host, path: &str) -> Value {
    let res = host.get(path);
    assert_eq!(res.status(), 200, "{path}");
    res.json().unwrap()
}

#[test]
fn declared_arguments_reach_the_plugin_typed() {
    let dir = PluginDir::with(&["testkit-plugin"]);
    let host = Host::builder(dir.path())
        .args(&[
            "--testkit-count",
            "7",
            "--testkit-ratio",
            "0.25",
            "--testkit-verbose",
        ])
        .env("BREWBLOX_TESTKIT_LABEL", "from-env")
        .start();
    let config = get_json(&host, "/kit/config");
    assert_eq!(config["count"], 7);
    assert_eq!(config["ratio"], 0.25);
    assert_eq!(config["label"], "from-env");
    assert_eq!(config["verbose"], true);
    assert_eq!(config["optional"], Value::Null);
    assert_eq!(config["name"], "test_svc");
    assert_eq!(config["port"], host.port);
    assert_eq!(config["debug"], false);
    assert_eq!(config["eventbus_host"], "127.0.0.1");
    assert_eq!(config["eventbus_port"], 5672);
}

#[test]
fn defaults_apply_and_the_command_line_beats_the_environment() {
    let dir = PluginDir::with(&["testkit-plugin"]);
    let host = Host::builder(dir.path())
        .args(&["--testkit-label", "from-cli"])
        .env("BREWBLOX_TESTKIT_LABEL", "from-env")
        .start();
    let config = get_json(&host, "/kit/config");
    assert_eq!(config["label"], "from-cli");
    assert_eq!(config["count"], 3);
    assert_eq!(config["ratio"], 0.5);
    assert_eq!(config["verbose"], false);
}

#[test]
fn plugin_arguments_show_in_help_and_are_validated() {
    let dir = PluginDir::with(&["testkit-plugin"]);
    let out = Host::builder(dir.path()).arg("--help").run_to_exit();
    assert_eq!(out.code(), Some(0));
    for needle in [
        "--testkit-count",
        "--testkit-ratio",
        "--testkit-verbose",
        "A float",
        "BREWBLOX_TESTKIT_COUNT",
        "--eventbus-host",
    ] {
        assert!(
            out.stdout.contains(needle),
            "{needle} missing from help:\n{}",
            out.stdout
        );
    }
    let out = Host::builder(dir.path())
        .args(&["--testkit-count", "many"])
        .run_to_exit();
    assert_eq!(out.code(), Some(2));
    assert!(out.stderr.contains("--testkit-count"), "{}", out.stderr);
}

#[test]
fn tokio_timers_spawn_and_tokio_crates_work_inside_plugins() {
    let (host, _dir) = kit_and_peer();
    assert_eq!(get_json(&host, "/kit/sleep?ms=30"), json!({"slept": 30}));
    assert_eq!(get_json(&host, "/kit/spawn"), json!({"spawned": 42}));
    // An HTTP client (reqwest, on the plugin's tokio) fetching from this very host.
    let status_url = host.url("/_service/status");
    let fetched = get_json(&host, &format!("/kit/fetch?url={}", urlencode(&status_url)));
    assert_eq!(fetched, json!({"fetched": {"status": "ok"}}));
}

#[test]
fn task_failures_are_logged_with_the_plugin_name() {
    let (host, _dir) = kit_and_peer();
    let log = &host.stderr;
    assert!(
        log.wait_for(
            "plugin testkit-plugin: task kit-panicker panicked",
            Duration::from_secs(10)
        ) || log
            .text()
            .contains("task kit-panicker failed: panicked: kit task kaboom"),
        "{}",
        log.text()
    );
    assert!(
        log.wait_for(
            "plugin testkit-plugin: task kit-failer failed: kit task failed on purpose",
            Duration::from_secs(10)
        ),
        "{}",
        log.text()
    );
    // Other plugins are unaffected.
    assert_eq!(
        get_json(&host, "/peer/missing")["error"],
        "No feature found for \"no-such-feature\""
    );
}

#[test]
fn repeaters_prepare_run_resume_and_back_off() {
    let started = Instant::now();
    let (host, _dir) = kit_and_peer();
    let ok = wait_until(Duration::from_secs(10), || {
        get_json(&host, "/kit/tasks")["repeater_runs"]
            .as_u64()
            .unwrap_or(0)
            > 3
    });
    assert!(ok, "repeater keeps running after a failure");
    let tasks = get_json(&host, "/kit/tasks");
    assert_eq!(tasks["repeater_prepared"], true);
    assert!(
        host.stderr.wait_for(
            "kit-repeater error during runtime: repeater fails once",
            Duration::from_secs(5)
        ),
        "{}",
        host.stderr.text()
    );
    assert!(host
        .stderr
        .wait_for("kit-repeater resumed OK", Duration::from_secs(5)));
    assert!(host.stderr.wait_for(
        "kit-stopping-repeater cancelled during runtime.",
        Duration::from_secs(5)
    ));

    // An instantly failing run backs off instead of spinning: 100 ms doubling per failure,
    // so the fifth attempt comes 100 + 200 + 400 + 800 ms after the first, and the sixth
    // 1.6 s after that. A hot loop would be at thousands by the time this looks.
    let mut attempts = 0;
    let fifth = wait_until(Duration::from_secs(10), || {
        attempts = get_json(&host, "/kit/tasks")["failing_attempts"]
            .as_u64()
            .unwrap();
        attempts >= 5
    });
    assert!(fifth, "attempts: {attempts}");
    assert!(attempts <= 6, "attempts: {attempts}");
    assert!(
        started.elapsed() >= Duration::from_millis(1500),
        "five attempts within {:?}",
        started.elapsed()
    );
    // The fifth attempt began, so the first four failures were handled (logged or not).
    // A host log line made after that marks the end of what to read.
    assert_eq!(host.get("/kit/panic").status(), 500);
    assert!(
        host.stderr.wait_for(
            "plugin testkit-plugin: GET /test_svc/kit/panic ",
            Duration::from_secs(5)
        ),
        "{}",
        host.stderr.text()
    );
    assert_eq!(
        host.stderr
            .text()
            .matches("kit-failing-repeater error during runtime")
            .count(),
        1,
        "logged once per series:\n{}",
        host.stderr.text()
    );
    assert_eq!(get_json(&host, "/kit/tasks")["sleeper_finished"], false);
}

#[test]
fn features_are_shared_between_plugins() {
    let (host, _dir) = kit_and_peer();
    assert_eq!(
        get_json(&host, "/peer/call-kit"),
        json!({"echo": {"from": "peer"}})
    );
    let res = host.get("/kit/feature/nope");
    assert_eq!(res.status(), 404);
    assert_eq!(
        res.json::<Value>().unwrap()["error"],
        "No feature found for \"nope\""
    );
}

#[test]
fn feature_errors_cross_plugins_as_errors() {
    let (host, _dir) = kit_and_peer();
    // The peer answers an `Invalid` error: the caller's route answers with its status.
    let res = host.get("/kit/feature/peer-double");
    assert_eq!(res.status(), 400);
    assert!(res.text().unwrap().contains("n missing"));
    // The peer's `Error::bad_request` reaches the caller as an `Invalid` error, not just text.
    let err = get_json(&host, "/kit/feature-error/peer-double");
    assert_eq!(err["kind"], "Invalid", "{err}");
    assert_eq!(err["error"], "feature \"peer-double\": n missing");
}

#[test]
fn registration_errors_are_reported_to_the_plugin() {
    let (host, _dir) = kit_and_peer();
    let errors = get_json(&host, "/kit/startup-errors");
    let errors: Vec<&str> = errors
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap())
        .collect();
    assert!(
        errors[0].contains("Feature \"kit-echo\" already registered"),
        "{errors:?}"
    );
    assert_eq!(errors[1], "exist_ok kept the original");
    assert!(errors[2].contains("/kit/echo/{other}"), "{errors:?}");
    assert!(errors[3].contains("reserved for the host"), "{errors:?}");
    assert!(errors[4].contains("must start with '/'"), "{errors:?}");
    let late = get_json(&host, "/kit/late-route");
    assert!(
        late["error"].as_str().unwrap().contains("during startup"),
        "{late}"
    );
}
