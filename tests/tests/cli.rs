//! The command line: names, exit codes, `@file` arguments, the environment.

use std::time::Duration;

use integration_tests::{free_port, Host, PluginDir};

#[test]
fn bad_and_unknown_arguments_exit_2_with_a_message() {
    let dir = PluginDir::new();
    for args in [
        &["--port", "http"][..],
        &["--nonsense"],
        &["--eventbus-port", "-1"],
        &["--name", "trail/"],
    ] {
        let out = Host::builder(dir.path()).args(args).run_to_exit();
        assert_eq!(out.code(), Some(2), "{args:?}: {}", out.stderr);
        assert!(out.stderr.contains("error:"), "{args:?}: {}", out.stderr);
    }
}

#[test]
fn help_lists_every_option_and_exits_0() {
    let dir = PluginDir::new();
    let out = Host::builder(dir.path()).arg("--help").run_to_exit();
    assert_eq!(out.code(), Some(0));
    for needle in [
        "-H, --host",
        "-p, --port",
        "-o, --output",
        "-n, --name",
        "--debug",
        "--eventbus-host",
        "--eventbus-port",
        "--plugins",
        "--watch",
        "--http-header-timeout",
        "--http-idle-timeout",
        "Host to which the app binds. [0.0.0.0]",
        "Port to which the app binds. [5000]",
        "BREWBLOX_NAME",
    ] {
        assert!(out.stdout.contains(needle), "{needle}:\n{}", out.stdout);
    }
}

#[test]
fn argument_files_expand_one_argument_per_line() {
    let dir = PluginDir::with(&["hello-plugin"]);
    let file = dir.path().join("args.txt");
    std::fs::write(&file, "--name\nfrom_file\n").unwrap();
    let host = Host::builder(dir.path())
        .name("ignored")
        .arg(&format!("@{}", file.display()))
        .name("from_file")
        .start();
    assert_eq!(host.get("/hello").status(), 200);
    assert_eq!(
        host.client
            .get(host.raw_url("/from_file/hello"))
            .send()
            .unwrap()
            .status(),
        200
    );

    let out = Host::builder(dir.path())
        .arg("@/no/such/file")
        .run_to_exit();
    assert_eq!(out.code(), Some(2));
    assert!(
        out.stderr.contains("cannot read argument file"),
        "{}",
        out.stderr
    );
}

#[test]
fn options_come_from_the_environment_and_the_command_line_wins() {
    let dir = PluginDir::with(&["hello-plugin"]);
    // The harness passes --name and --port; the environment supplies what it does not.
    let port = free_port();
    let mut child = std::process::Command::new(integration_tests::host_bin())
        .env("BREWBLOX_PLUGINS", dir.path())
        .env("BREWBLOX_NAME", "env_name")
        .env("BREWBLOX_PORT", port.to_string())
        .env("BREWBLOX_HOST", "127.0.0.1")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let client = reqwest::blocking::Client::new();
    let url = format!("http://127.0.0.1:{port}/env_name/hello");
    let ok = integration_tests::wait_until(Duration::from_secs(20), || {
        client.get(&url).send().is_ok_and(|r| r.status() == 200)
    });
    let _ = child.kill();
    let _ = child.wait();
    assert!(ok, "BREWBLOX_PLUGINS/NAME/PORT/HOST were used");

    let host = Host::builder(dir.path())
        .name("cli_name")
        .env("BREWBLOX_NAME", "env_name")
        .start();
    assert_eq!(
        host.client
            .get(host.raw_url("/cli_name/hello"))
            .send()
            .unwrap()
            .status(),
        200
    );
}

#[test]
fn repeated_options_take_the_last_value_as_argparse_does() {
    let dir = PluginDir::with(&["hello-plugin"]);
    let host = Host::builder(dir.path())
        .name("second")
        .args(&["-n", "first", "--name", "second"])
        .start();
    assert_eq!(
        host.client
            .get(host.raw_url("/second/hello"))
            .send()
            .unwrap()
            .status(),
        200
    );
}

#[test]
fn argument_files_that_never_end_are_usage_errors() {
    let dir = PluginDir::new();
    let looping = dir.path().join("a");
    std::fs::write(&looping, format!("@{}\n", looping.display())).unwrap();
    // run_to_exit gives up after 30 s: a host that spins or fills memory fails the test.
    for (arg, expected) in [
        (format!("@{}", looping.display()), "nested more than"),
        ("@/dev/zero".to_owned(), "not a regular file"),
    ] {
        let out = Host::builder(dir.path()).arg(&arg).run_to_exit();
        assert_eq!(out.code(), Some(2), "{arg}: {}", out.stderr);
        assert!(out.stderr.contains(expected), "{arg}: {}", out.stderr);
    }
}

#[test]
fn names_no_client_or_peer_can_use_are_usage_errors() {
    let dir = PluginDir::new();
    let long = "s".repeat(256);
    for name in ["new\nline", "esc\u{1b}[31m", "sp ace", "caf\u{e9}", &long] {
        let out = Host::builder(dir.path()).name(name).run_to_exit();
        assert_eq!(out.code(), Some(2), "{name:?}: {}", out.stderr);
        assert!(
            out.stderr
                .contains("(accepted: 1 to 255 bytes of ASCII letters"),
            "{name:?}: {}",
            out.stderr
        );
    }
    let out = Host::builder(dir.path()).arg("--help").run_to_exit();
    assert!(
        out.stdout.contains("1 to 255 bytes of ASCII letters"),
        "help says which names are accepted:\n{}",
        out.stdout
    );
    // The longest name serves.
    let dir = PluginDir::with(&["hello-plugin"]);
    let host = Host::builder(dir.path()).name(&"s".repeat(255)).start();
    assert_eq!(host.get("/hello").status(), 200);
}

#[test]
fn flags_from_the_environment_accept_what_containers_write() {
    let dir = PluginDir::with(&["testkit-plugin"]);
    for (value, on) in [
        ("1", true),
        ("yes", true),
        ("On", true),
        ("TRUE", true),
        ("0", false),
        ("off", false),
    ] {
        let host = Host::builder(dir.path())
            .env("BREWBLOX_DEBUG", value)
            .env("BREWBLOX_TESTKIT_VERBOSE", value)
            .start();
        let config: serde_json::Value = host.get("/kit/config").json().unwrap();
        assert_eq!(config["debug"], on, "BREWBLOX_DEBUG={value}");
        assert_eq!(config["verbose"], on, "BREWBLOX_TESTKIT_VERBOSE={value}");
    }
    for var in ["BREWBLOX_DEBUG", "BREWBLOX_TESTKIT_VERBOSE"] {
        let out = Host::builder(dir.path()).env(var, "maybe").run_to_exit();
        assert_eq!(out.code(), Some(2), "{var}: {}", out.stderr);
        let expected =
            format!("{var}=\"maybe\" is not a flag value: use 1/0, true/false, yes/no or on/off");
        assert!(out.stderr.contains(&expected), "{var}: {}", out.stderr);
    }
}

#[test]
fn a_malformed_eventbus_url_is_a_usage_error_that_does_not_print_the_password() {
    let dir = PluginDir::new();
    for url in [
        "amqp://guest:S3cr/etX@[::1:5672/%2f",
        "http://guest:S3cr/etX@127.0.0.1:5672/",
        "amqp://guest:S3cr/etX@127.0.0.1:99999/",
    ] {
        let out = Host::builder(dir.path())
            .args(&["--eventbus-url", url])
            .run_to_exit();
        assert_eq!(out.code(), Some(2), "{url}: {}", out.stderr);
        assert!(
            out.stderr.contains("invalid eventbus settings"),
            "{}",
            out.stderr
        );
        assert!(!out.stderr.contains("S3cr"), "{}", out.stderr);
        assert!(!out.stdout.contains("S3cr"), "{}", out.stdout);
    }
}

#[test]
fn an_argument_file_content_is_never_echoed() {
    let dir = PluginDir::new();
    // The environment as a file: NUL-separated, with a secret in it.
    let out = Host::builder(dir.path())
        .env("BREWBLOX_TEST_SECRET", "hunter2")
        .arg("@/proc/self/environ")
        .run_to_exit();
    assert_eq!(out.code(), Some(2), "{}", out.stderr);
    assert!(
        out.stderr.contains("/proc/self/environ line 1"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("hunter2"), "{}", out.stderr);
    // A line the parser refuses is named by its file and line, never shown.
    let file = dir.path().join("secret-args");
    std::fs::write(&file, "--mqtt-port\nhunter2\n").unwrap();
    let out = Host::builder(dir.path())
        .arg(&format!("@{}", file.display()))
        .run_to_exit();
    assert_eq!(out.code(), Some(2), "{}", out.stderr);
    assert!(out.stderr.contains("secret-args line 2"), "{}", out.stderr);
    assert!(!out.stderr.contains("hunter2"), "{}", out.stderr);
    std::fs::write(&file, "--bogus=hunter3\n").unwrap();
    let out = Host::builder(dir.path())
        .arg(&format!("@{}", file.display()))
        .run_to_exit();
    assert_eq!(out.code(), Some(2), "{}", out.stderr);
    // clap names only the option here (`'--bogus'`), never its value.
    assert!(out.stderr.contains("'--bogus'"), "{}", out.stderr);
    assert!(!out.stderr.contains("hunter3"), "{}", out.stderr);
}

/// Lines of an argument file that carry a secret as the value of an option, in each form
/// clap takes, and the line number of the secret.
const SECRET_VALUE_LINES: [(&str, &str, usize); 3] = [
    ("--debug\n--mqtt-port=hunter2\n", "hunter2", 2),
    ("-phunter3\n", "hunter3", 1),
    ("--watch\n--debug\n-p=hunter4\n", "hunter4", 3),
];

#[test]
fn the_value_of_an_option_line_in_an_argument_file_is_never_echoed() {
    let dir = PluginDir::new();
    let file = dir.path().join("secret-args");
    for (lines, secret, line) in SECRET_VALUE_LINES {
        std::fs::write(&file, lines).unwrap();
        let out = Host::builder(dir.path())
            .arg(&format!("@{}", file.display()))
            .run_to_exit();
        assert_eq!(out.code(), Some(2), "{lines:?}: {}", out.stderr);
        let origin = format!("secret-args line {line}");
        assert!(out.stderr.contains(&origin), "{lines:?}: {}", out.stderr);
        assert!(out.stderr.contains("invalid value"), "{}", out.stderr);
        assert!(!out.stderr.contains(secret), "{lines:?}: {}", out.stderr);
    }
}

#[test]
fn the_value_of_an_option_line_is_never_echoed_by_a_reload() {
    let dir = PluginDir::with(&["hello-plugin"]);
    let file = dir.path().join("secret-args");
    std::fs::write(&file, "--debug\n").unwrap();
    let host = Host::builder(dir.path())
        .arg(&format!("@{}", file.display()))
        .start();
    for (failed, (lines, secret, line)) in (1..).zip(SECRET_VALUE_LINES) {
        std::fs::write(&file, lines).unwrap();
        host.signal(libc::SIGHUP);
        host.wait_reloads((0, failed));
        let (_, body) = host.health();
        let error = body["reload"]["last"]["error"].as_str().unwrap_or_default();
        let origin = format!("secret-args line {line}");
        assert!(error.contains(&origin), "{lines:?}: {body}");
        assert!(!body.to_string().contains(secret), "{lines:?}: {body}");
        // The logged error is the sentinel: once it is in, so is any secret it would show.
        let logged = host.stderr.wait_for(&origin, Duration::from_secs(10));
        let log = host.stderr.text();
        assert!(logged, "{lines:?}: {log}");
        assert!(!log.contains(secret), "{lines:?}: {log}");
    }
    assert_eq!(host.get("/hello").status(), 200, "the old plugins serve");
}

#[test]
fn a_variable_that_is_not_utf8_is_named() {
    use std::os::unix::ffi::OsStrExt;
    let dir = PluginDir::new();
    let out = std::process::Command::new(integration_tests::host_bin())
        .args(["--plugins", &dir.path().display().to_string()])
        .env(
            "BREWBLOX_MQTT_HOST",
            std::ffi::OsStr::from_bytes(b"broker\xff"),
        )
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("environment variable BREWBLOX_MQTT_HOST is not valid UTF-8"),
        "{stderr}"
    );
}

#[test]
fn ports_0_and_a_path_without_websockets_are_usage_errors() {
    let dir = PluginDir::new();
    for (args, expected) in [
        (&["--mqtt-port", "0"][..], "port 0 reaches no broker"),
        (&["--eventbus-port", "0"], "port 0 reaches no broker"),
        (
            &["--mqtt-protocol", "ws", "--mqtt-path", "eventbus"],
            "must start with '/'",
        ),
        (
            &["--mqtt-path", "/eventbus"],
            "needs --mqtt-protocol ws or wss",
        ),
    ] {
        let out = Host::builder(dir.path()).args(args).run_to_exit();
        assert_eq!(out.code(), Some(2), "{args:?}: {}", out.stderr);
        assert!(out.stderr.contains(expected), "{args:?}: {}", out.stderr);
    }
}
