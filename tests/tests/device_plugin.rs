//! The device plugin, run for real: the built `libdevice_plugin.so` loaded by the built
//! `brewblox-host`, spoken to over HTTP.

use std::time::Duration;

use integration_tests::{free_port, wait_until, Host, PluginDir};
use serde_json::{json, Value};

/// `PUT /device/setpoint` with a raw body; the status and the parsed JSON answer.
fn put_setpoint(host: &Host, body: &str) -> (u16, Value) {
    let response = host
        .client
        .put(host.url("/device/setpoint"))
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .expect("PUT");
    let status = response.status().as_u16();
    let text = response.text().expect("body");
    let value = serde_json::from_str(&text)
        .unwrap_or_else(|err| panic!("answer to {body} is not JSON ({err}): {text}"));
    (status, value)
}

fn state(host: &Host) -> Value {
    let response = host.get("/device/state");
    assert_eq!(response.status(), 200);
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(
        content_type.starts_with("application/json"),
        "{content_type}"
    );
    response.json().expect("state JSON")
}

/// Asserts a 400 whose JSON body has an error message and names `setpoint`.
fn assert_rejected(host: &Host, body: &str) {
    let (status, answer) = put_setpoint(host, body);
    assert_eq!(status, 400, "{body} → {answer}");
    assert_eq!(answer["field"], "setpoint", "{body} → {answer}");
    assert!(
        answer["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{body} → {answer}"
    );
}

/// A host whose simulation does not move on its own, so values compare exactly.
fn still_host(plugins: &PluginDir, extra: &[&str]) -> Host {
    Host::builder(plugins.path())
        .args(&["--update-interval", "0"])
        .args(extra)
        .start()
}

#[test]
fn state_reports_the_device() {
    let plugins = PluginDir::with(&["device-plugin"]);
    let mut host = still_host(&plugins, &["--device-id", "chamber-a"]);
    let state = state(&host);
    assert_eq!(state["device_id"], "chamber-a");
    assert!(state["setpoint"].is_f64(), "{state}");
    assert!(state["temperature"].is_f64(), "{state}");
    assert!(state["ambient"].is_f64(), "{state}");
    assert!(state["heater"].is_boolean(), "{state}");
    assert!(state["cooler"].is_boolean(), "{state}");
    let updated = state["updated"].as_str().expect("updated is a string");
    assert!(
        updated.len() >= 20 && updated.as_bytes()[10] == b'T' && updated.ends_with('Z'),
        "RFC 3339 UTC: {updated}"
    );
    assert!(host.stop().success());
}

#[test]
fn default_device_id() {
    let plugins = PluginDir::with(&["device-plugin"]);
    let host = still_host(&plugins, &[]);
    assert_eq!(state(&host)["device_id"], "fermenter-1");
}

#[test]
fn put_setpoint_changes_the_state() {
    let plugins = PluginDir::with(&["device-plugin"]);
    let host = still_host(&plugins, &[]);
    let before = state(&host);

    let (status, answer) = put_setpoint(&host, r#"{"setpoint": 24.5}"#);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["setpoint"], json!(24.5));
    assert_eq!(answer["device_id"], before["device_id"]);
    // Well below the new setpoint: the controller switched the heater on at once.
    assert_eq!(answer["heater"], true, "{answer}");
    assert_eq!(answer["cooler"], false, "{answer}");

    let after = state(&host);
    assert_eq!(after, answer, "GET shows what PUT answered");

    // Integers are numbers too.
    let (status, answer) = put_setpoint(&host, r#"{"setpoint": 12}"#);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["setpoint"], json!(12.0));
    assert_eq!(state(&host)["setpoint"], json!(12.0));
}

#[test]
fn wrong_type_is_400_naming_the_field() {
    let plugins = PluginDir::with(&["device-plugin"]);
    let host = still_host(&plugins, &[]);
    let before = state(&host);
    for body in [
        r#"{"setpoint": "20"}"#,
        r#"{"setpoint": true}"#,
        r#"{"setpoint": null}"#,
        r#"{"setpoint": [20]}"#,
        r#"{"setpoint": {"value": 20}}"#,
    ] {
        assert_rejected(&host, body);
    }
    assert_eq!(state(&host), before, "rejected requests changed nothing");
}

#[test]
fn missing_field_is_400_naming_the_field() {
    let plugins = PluginDir::with(&["device-plugin"]);
    let host = still_host(&plugins, &[]);
    for body in ["{}", r#"{"temperature": 20}"#, r#"{"Setpoint": 20}"#] {
        let (status, answer) = put_setpoint(&host, body);
        assert_eq!(status, 400, "{body} → {answer}");
        assert_eq!(answer["field"], "setpoint", "{body} → {answer}");
        let error = answer["error"].as_str().unwrap_or_default();
        assert!(error.contains("setpoint"), "{body} → {answer}");
    }
}

#[test]
fn malformed_json_is_400_json() {
    let plugins = PluginDir::with(&["device-plugin"]);
    let host = still_host(&plugins, &[]);
    let before = state(&host);
    for body in [
        "",
        "{not json",
        r#"{"setpoint": 20"#,
        "20",
        r#"{"setpoint": 20} x"#,
    ] {
        let (status, answer) = put_setpoint(&host, body);
        assert_eq!(status, 400, "{body:?} → {answer}");
        assert!(
            answer["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{body:?} → {answer}"
        );
    }
    assert_eq!(state(&host), before);
}

#[test]
fn absurd_setpoints_are_400() {
    let plugins = PluginDir::with(&["device-plugin"]);
    let host = still_host(&plugins, &[]);
    let before = state(&host);
    // JSON has no NaN or Infinity; these are the ways a client gets close.
    for body in [
        r#"{"setpoint": 1e400}"#,
        r#"{"setpoint": -1e400}"#,
        r#"{"setpoint": NaN}"#,
        r#"{"setpoint": Infinity}"#,
        r#"{"setpoint": 120.5}"#,
        r#"{"setpoint": -20.5}"#,
        r#"{"setpoint": 293.15}"#,
        r#"{"setpoint": 1e300}"#,
    ] {
        assert_rejected(&host, body);
    }
    assert_eq!(state(&host), before);
    // The edges of the range are fine.
    for edge in [-20.0, 120.0] {
        let (status, answer) = put_setpoint(&host, &json!({ "setpoint": edge }).to_string());
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["setpoint"], json!(edge));
    }
}

#[test]
fn repeater_advances_the_simulation() {
    let plugins = PluginDir::with(&["device-plugin"]);
    let mut host = Host::builder(plugins.path())
        .args(&["--update-interval", "0.05"])
        .start();
    // Far above ambient: the heater runs and the temperature must climb.
    let (status, start) = put_setpoint(&host, r#"{"setpoint": 40}"#);
    assert_eq!(status, 200, "{start}");
    let t0 = start["temperature"].as_f64().expect("temperature");
    let mut last = start.clone();
    let moved = wait_until(Duration::from_secs(5), || {
        last = state(&host);
        last["updated"] != start["updated"] && last["temperature"].as_f64().is_some_and(|t| t > t0)
    });
    assert!(moved, "no update within 5 s: {start} → {last}");
    assert_eq!(last["heater"], true);
    assert_eq!(last["setpoint"], json!(40.0));
    assert!(host.stop().success());
}

#[test]
fn zero_interval_disables_updates() {
    let plugins = PluginDir::with(&["device-plugin"]);
    let host = Host::builder(plugins.path())
        .args(&["--update-interval", "0"])
        .start();
    assert!(
        host.stderr
            .wait_for("cancelled during setup", Duration::from_secs(5)),
        "{}",
        host.stderr.text()
    );
    let first = state(&host);
    // Nothing to wait for here: the repeater has ended, so any later read must match.
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(state(&host), first);
}

#[test]
fn help_lists_the_arguments() {
    let plugins = PluginDir::with(&["device-plugin"]);
    let exited = Host::builder(plugins.path()).arg("--help").run_to_exit();
    assert_eq!(exited.code(), Some(0), "{exited:?}");
    for arg in ["--device-id", "--update-interval", "--device-exchange"] {
        assert!(
            exited.stdout.contains(arg),
            "{arg} missing:\n{}",
            exited.stdout
        );
    }
    assert!(
        exited.stdout.contains("fermenter-1"),
        "default shown:\n{}",
        exited.stdout
    );
}

#[test]
fn device_id_from_environment_and_command_line_wins() {
    let plugins = PluginDir::with(&["device-plugin"]);
    let from_env = Host::builder(plugins.path())
        .args(&["--update-interval", "0"])
        .env("BREWBLOX_DEVICE_ID", "x")
        .start();
    assert_eq!(state(&from_env)["device_id"], "x");
    drop(from_env);

    let both = Host::builder(plugins.path())
        .args(&["--update-interval", "0", "--device-id", "from-cli"])
        .env("BREWBLOX_DEVICE_ID", "x")
        .start();
    assert_eq!(state(&both)["device_id"], "from-cli");
}

#[test]
fn bad_update_interval_refuses_to_start() {
    let plugins = PluginDir::with(&["device-plugin"]);
    for bad in ["NaN", "inf", "1e300"] {
        let exited = Host::builder(plugins.path())
            .args(&["--update-interval", bad])
            .run_to_exit();
        assert_ne!(exited.code(), Some(0), "{bad}: {exited:?}");
        assert!(
            exited.stderr.contains("--update-interval"),
            "{bad}: {}",
            exited.stderr
        );
    }
}

#[test]
fn device_feature_answers_with_the_state() {
    let plugins = PluginDir::with(&["device-plugin", "testkit-plugin"]);
    let host = Host::builder(plugins.path())
        .args(&["--update-interval", "0", "--device-id", "shared"])
        .start();
    let response = host.get("/kit/feature/device");
    assert_eq!(response.status(), 200);
    let via_feature: Value = response.json().expect("JSON");
    assert_eq!(via_feature, state(&host));
    assert_eq!(via_feature["device_id"], "shared");
}

/// An unreachable eventbus must cost one warning, not one per update, and must not stop
/// the simulation or the HTTP routes.
#[test]
fn unreachable_eventbus_warns_once_and_keeps_simulating() {
    const WARNING: &str = "Cannot publish device state";
    let plugins = PluginDir::with(&["device-plugin"]);
    let dead_port = free_port().to_string();
    let mut host = Host::builder(plugins.path())
        .args(&["--update-interval", "0.05", "--eventbus-port", &dead_port])
        .start();
    assert!(
        host.stderr.wait_for(WARNING, Duration::from_secs(15)),
        "no warning:\n{}",
        host.stderr.text()
    );
    // Many more updates (and failed publishes) happen while we watch.
    let mut seen = Vec::new();
    let advanced = wait_until(Duration::from_secs(10), || {
        let updated = state(&host)["updated"].clone();
        if seen.last() != Some(&updated) {
            seen.push(updated);
        }
        seen.len() >= 10
    });
    assert!(advanced, "simulation stalled: {seen:?}");
    let log = host.stderr.text();
    assert_eq!(log.matches(WARNING).count(), 1, "{log}");
    assert!(log.contains("WARN"), "{log}");
    assert!(host.stop().success());
}
