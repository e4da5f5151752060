//! What a plugin causes in the log: one line per panic, whatever its message, the plugin's
//! name on every line, and which build of the plugin runs (the load line and health).

use std::time::Duration;

use integration_tests::{gnu_build_id, plugin_lib, Host, PluginDir};

const PLUGIN: &str = "plugin testkit-plugin: ";

/// The testkit plugin's log from start to a clean stop ("Service stopped" is the last line,
/// so every line the plugin caused before is in).
fn kit_log(requests: impl FnOnce(&Host)) -> String {
    let dir = PluginDir::with(&["testkit-plugin"]);
    let mut host = Host::builder(dir.path()).start();
    requests(&host);
    assert!(host.stop().success());
    assert!(host
        .stderr
        .wait_for("Service stopped", Duration::from_secs(5)));
    host.stderr.text()
}

/// The one line holding `needle`, asserting there is exactly one.
fn only_line<'a>(log: &'a str, needle: &str) -> &'a str {
    let lines: Vec<&str> = log.lines().filter(|l| l.contains(needle)).collect();
    assert_eq!(lines.len(), 1, "lines with {needle:?}:\n{log}");
    lines[0]
}

/// The location the fixture's panics report.
const AT: &str = "(at tests/fixtures/testkit-plugin/src/";

#[test]
fn a_panic_is_one_line_naming_the_plugin_and_where_it_happened() {
    let log = kit_log(|host| {
        assert_eq!(host.get("/kit/panic").status(), 500);
        // The thread's panic happens at startup, on its own thread: wait for it.
        assert!(host
            .stderr
            .wait_for("kit thread kaboom", Duration::from_secs(5)));
    });
    // Caught by the SDK's guard: the host's line says it, with the location, once.
    let route = only_line(&log, "second line of the route panic");
    assert!(
        route.contains(&format!(
            " ERROR    ...ox_host::http::plugin_route  {PLUGIN}GET /test_svc/kit/panic failed: \
             panicked: kaboom second line of the route panic {AT}"
        )),
        "{route}"
    );
    let task = only_line(&log, "kit task kaboom");
    assert!(
        task.contains(&format!(
            "{PLUGIN}task kit-panicker failed: panicked: kit task kaboom {AT}"
        )),
        "{task}"
    );
    // Caught by nothing: the plugin's panic hook logs it, through the host, once.
    let thread = only_line(&log, "second line of the thread panic");
    assert!(
        thread.contains(&format!(
            " ERROR    testkit_plugin::panic           {PLUGIN}thread 'kit-thread' panicked: \
             kit thread kaboom second line of the thread panic {AT}"
        )),
        "{thread}"
    );
    // Nothing of std's own panic report reaches stderr.
    assert!(!log.contains("panicked at"), "{log}");
    assert!(!log.contains("RUST_BACKTRACE"), "{log}");
}

#[test]
fn every_line_of_the_plugin_names_it() {
    let log = kit_log(|host| {
        assert!(host.stderr.wait_for(
            "kit-failing-repeater error during runtime",
            Duration::from_secs(5)
        ));
    });
    let repeater = only_line(&log, "kit-failing-repeater error during runtime");
    // Under the plugin's target, testkit_plugin::plugin_api::repeater (the log's target
    // column shortens it to its end), so that RUST_LOG=testkit_plugin=… shows it.
    assert!(
        repeater.contains(" ERROR    ...lugin::plugin_api::repeater  ")
            && repeater.contains(&format!(
                "{PLUGIN}kit-failing-repeater error during runtime: always failing"
            )),
        "{repeater}"
    );
    let own = only_line(&log, "kit info line");
    assert!(
        own.contains(&format!(
            " INFO     testkit_plugin                  {PLUGIN}kit info line"
        )),
        "{own}"
    );
    // Every record the plugin sends through its logger (its module's, the SDK's) names it.
    let forwarded: Vec<&str> = log
        .lines()
        .filter(|l| {
            l.get(29..).is_some_and(|rest| {
                rest.starts_with("testkit_plugin") || rest.starts_with("...lugin::plugin_api")
            })
        })
        .collect();
    assert!(forwarded.len() >= 5, "{log}");
    for line in forwarded {
        assert!(line.contains(PLUGIN), "{line}");
    }
}

#[test]
fn health_and_the_load_line_show_the_build_of_the_library() {
    let expected = gnu_build_id(&plugin_lib("testkit-plugin"));
    assert_eq!(expected.len(), 40, "a 160-bit id: {expected}");
    let dir = PluginDir::with(&["testkit-plugin"]);
    let mut builds = Vec::new();
    for _ in 0..2 {
        let mut host = Host::builder(dir.path()).start();
        let (status, health) = host.health();
        assert_eq!(status, 200, "{health}");
        let plugin = &health["plugins"][0];
        assert_eq!(plugin["name"], "testkit-plugin");
        assert_eq!(plugin["version"], "0.1.0");
        builds.push(plugin["build"].as_str().unwrap().to_owned());
        assert!(host.stop().success());
        let log = host.stderr.text();
        let loaded = only_line(&log, "Loaded plugin testkit-plugin");
        assert!(
            loaded.contains(&format!(
                "Loaded plugin testkit-plugin 0.1.0 (build {expected}) from "
            )),
            "{loaded}"
        );
    }
    assert_eq!(builds, [expected.clone(), expected]);
}

#[test]
fn rust_log_for_the_plugin_shows_the_sdks_lines_on_its_behalf() {
    let dir = PluginDir::with(&["testkit-plugin"]);
    // Everything off but the plugin's own target.
    let mut host = Host::builder(dir.path())
        .env("RUST_LOG", "off,testkit_plugin=error")
        .start();
    assert!(
        host.stderr.wait_for(
            "kit-failing-repeater error during runtime",
            Duration::from_secs(5)
        ),
        "{}",
        host.stderr.text()
    );
    assert!(host.stop().success());
    let log = host.stderr.text();
    assert!(!log.contains("kit info line"), "info is off: {log}");
}
