//! Hot reload: SIGHUP (and `--watch`) start the folder's plugins beside the running ones and
//! switch to them in the same process, on the same socket; a bad new set leaves the old one
//! serving; signals at any moment are answered. The fixture `reload-plugin` takes its
//! behaviour from an `@file` that each test rewrites before a reload.

use std::{
    fs,
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc,
    },
    thread,
    time::{Duration, Instant},
};

use integration_tests::{amqp, plugin_lib, set_mode, wait_until, Host, PluginDir};
use serde_json::{json, Value};

/// A host with `reload-plugin`, its arguments in an `@file`.
struct Kit {
    host: Host,
    dir: PluginDir,
    args: PathBuf,
    _args_dir: tempfile::TempDir,
}

fn write_args(file: &Path, args: &[&str]) {
    fs::write(file, args.join("\n") + "\n").unwrap();
}

fn kit_with(args: &[&str], extra: &[&str], spawn_only: bool) -> Kit {
    let dir = PluginDir::with(&["reload-plugin"]);
    let args_dir = tempfile::tempdir().unwrap();
    let file = args_dir.path().join("args");
    write_args(&file, args);
    let builder = Host::builder(dir.path())
        .arg(&format!("@{}", file.display()))
        .args(extra);
    let host = if spawn_only {
        builder.spawn()
    } else {
        builder.start()
    };
    Kit {
        host,
        dir,
        args: file,
        _args_dir: args_dir,
    }
}

fn kit(args: &[&str]) -> Kit {
    kit_with(args, &[], false)
}

fn tag(host: &Host) -> String {
    let answer: Value = host.get("/reload/tag").json().unwrap();
    answer["tag"].as_str().unwrap_or_default().to_owned()
}

fn reload(kit: &Kit, want: (u64, u64)) {
    kit.host.signal(libc::SIGHUP);
    kit.host.wait_reloads(want);
}

#[test]
fn a_good_reload_switches_to_the_new_plugins_in_the_same_process() {
    let mut kit = kit(&["--reload-tag=a"]);
    let pid = kit.host.pid();
    assert_eq!(tag(&kit.host), "a");
    write_args(&kit.args, &["--reload-tag=b"]);
    reload(&kit, (1, 0));
    assert_eq!(tag(&kit.host), "b", "the new generation serves");
    assert_eq!(kit.host.pid(), pid, "same process");
    let (status, body) = kit.host.health();
    assert_eq!(status, 200);
    assert_eq!(body["reload"]["last"]["ok"], true);
    assert_eq!(body["plugins"][0]["state"], "running");
    assert!(body["plugins"][0]["build"].is_string(), "{body}");
    let log = kit.host.stderr.text();
    assert!(log.contains("Received SIGHUP, reloading"), "{log}");
    assert!(log.contains("Reloaded"), "{log}");
    assert!(kit.host.stop().success());
}

/// Starts a kit tagged `a`, spoils the folder or the arguments with `spoil`, sends SIGHUP,
/// and checks the old generation still serves; returns the host and the reload's error.
fn bad_reload(spoil: impl FnOnce(&Kit)) -> (Kit, String) {
    let kit = kit(&["--reload-tag=a"]);
    spoil(&kit);
    reload(&kit, (0, 1));
    assert_eq!(tag(&kit.host), "a", "the old generation goes on");
    let (status, body) = kit.host.health();
    assert_eq!(
        status, 200,
        "a failed reload is not a failed service: {body}"
    );
    let last = &body["reload"]["last"];
    assert_eq!(last["ok"], false);
    assert!(last["time"].is_string());
    let error = last["error"].as_str().unwrap().to_owned();
    assert!(kit.host.stderr.text().contains(&error), "logged as well");
    (kit, error)
}

#[test]
fn a_half_written_file_leaves_the_old_plugins_serving() {
    let (mut kit, error) = bad_reload(|kit| {
        let bytes = fs::read(plugin_lib("hello-plugin")).unwrap();
        let file = kit.dir.path().join("libhalf.so");
        fs::write(&file, &bytes[..100_000]).unwrap();
        set_mode(&file, 0o644);
    });
    assert!(error.contains("libhalf.so"), "{error}");
    assert!(error.contains("truncated"), "{error}");
    assert!(kit.host.is_running(), "no SIGBUS");
    // Once the file is complete, the next reload takes it.
    fs::copy(
        plugin_lib("hello-plugin"),
        kit.dir.path().join("libhalf.so"),
    )
    .unwrap();
    reload(&kit, (1, 1));
    assert_eq!(kit.host.get("/hello").status(), 200);
    let (_, body) = kit.host.health();
    assert_eq!(body["reload"]["last"]["ok"], true, "the failure is cleared");
}

#[test]
fn an_incompatible_plugin_leaves_the_old_plugins_serving() {
    let (_kit, error) = bad_reload(|kit| {
        kit.dir.add("mismatched-plugin");
    });
    assert!(error.contains("libmismatched_plugin.so"), "{error}");
    assert!(error.contains("incompatible plugin ABI"), "{error}");
}

#[test]
fn a_panicking_startup_leaves_the_old_plugins_serving() {
    let (kit, error) = bad_reload(|kit| {
        write_args(&kit.args, &["--reload-tag=b", "--reload-fail=panic"]);
    });
    assert!(error.contains("reload-plugin"), "{error}");
    assert!(error.contains("panicked"), "{error}");
    // The half-started new set is gone: one plugin, running.
    let (_, body) = kit.host.health();
    assert_eq!(body["plugins"].as_array().unwrap().len(), 1);
    assert_eq!(body["plugins"][0]["state"], "running");
}

#[test]
fn bad_arguments_leave_the_old_plugins_serving() {
    let (_kit, error) = bad_reload(|kit| {
        write_args(&kit.args, &["--reload-startup-ms=soon"]);
    });
    assert!(error.contains("--reload-startup-ms"), "{error}");
}

#[test]
fn a_reload_under_load_fails_no_request() {
    let kit = kit(&["--reload-tag=t0"]);
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let failures = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let clients: Vec<_> = (0..4)
        .map(|index| {
            let (stop, ok, failed, failures) =
                (stop.clone(), ok.clone(), failed.clone(), failures.clone());
            let (tag_url, echo_url) = (kit.host.url("/reload/tag"), kit.host.url("/reload/echo"));
            thread::spawn(move || {
                // Even clients open a connection per request; odd ones keep theirs alive.
                let fresh = index % 2 == 0;
                let mut builder =
                    reqwest::blocking::Client::builder().timeout(Duration::from_secs(10));
                if fresh {
                    builder = builder.pool_max_idle_per_host(0);
                }
                let client = builder.build().unwrap();
                let deadline = Instant::now() + Duration::from_secs(60);
                let mut n = 0u64;
                while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
                    n += 1;
                    let result = if n.is_multiple_of(2) {
                        client.put(&echo_url).json(&json!({"n": n})).send()
                    } else {
                        client.get(&tag_url).send()
                    };
                    match result {
                        Ok(response) if response.status() == 200 => {
                            ok.fetch_add(1, Ordering::SeqCst);
                        }
                        Ok(response) => {
                            failed.fetch_add(1, Ordering::SeqCst);
                            failures
                                .lock()
                                .unwrap()
                                .push(format!("status {}", response.status()));
                        }
                        Err(err) => {
                            failed.fetch_add(1, Ordering::SeqCst);
                            failures.lock().unwrap().push(format!("{err:?}"));
                        }
                    }
                }
            })
        })
        .collect();
    for generation in 1..=5u64 {
        let seen_before = ok.load(Ordering::SeqCst);
        assert!(wait_until(Duration::from_secs(10), || ok
            .load(Ordering::SeqCst)
            > seen_before + 20));
        write_args(&kit.args, &[&format!("--reload-tag=t{generation}")]);
        reload(&kit, (generation, 0));
    }
    let seen_before = ok.load(Ordering::SeqCst);
    assert!(wait_until(Duration::from_secs(10), || ok
        .load(Ordering::SeqCst)
        > seen_before + 20));
    stop.store(true, Ordering::SeqCst);
    for client in clients {
        client.join().unwrap();
    }
    assert_eq!(
        failed.load(Ordering::SeqCst),
        0,
        "failed requests: {:?}",
        failures.lock().unwrap()
    );
    assert!(ok.load(Ordering::SeqCst) > 100);
    assert_eq!(tag(&kit.host), "t5");
}

/// A kit tagged `a` in the middle of a reload to `b` whose startup takes 1.5 s.
fn kit_reloading() -> Kit {
    let kit = kit(&["--reload-tag=a"]);
    write_args(&kit.args, &["--reload-tag=b", "--reload-startup-ms=1500"]);
    kit.host.signal(libc::SIGHUP);
    assert!(kit
        .host
        .stderr
        .wait_for("Received SIGHUP, reloading", Duration::from_secs(10)));
    kit
}

#[test]
fn sighup_during_a_reload_is_coalesced_into_one_more_reload() {
    let kit = kit_reloading();
    kit.host.signal(libc::SIGHUP);
    kit.host.signal(libc::SIGHUP);
    kit.host.wait_reloads((2, 0));
    let log = kit.host.stderr.text();
    assert!(
        log.contains("Received SIGHUP during a reload; reloading after it"),
        "{log}"
    );
    assert_eq!(tag(&kit.host), "b");
}

#[test]
fn sighup_during_startup_reloads_after_it() {
    let mut kit = kit_with(&["--reload-tag=a", "--reload-startup-ms=1500"], &[], true);
    assert!(kit
        .host
        .stderr
        .wait_for("Creating [", Duration::from_secs(10)));
    kit.host.signal(libc::SIGHUP);
    assert!(kit
        .host
        .stderr
        .wait_for("Received SIGHUP during startup", Duration::from_secs(10)));
    write_args(&kit.args, &["--reload-tag=b"]);
    assert!(wait_until(Duration::from_secs(30), || {
        kit.host
            .client
            .get(kit.host.url("/_service/status"))
            .send()
            .is_ok_and(|r| r.status() == 200)
    }));
    kit.host.wait_reloads((1, 0));
    assert_eq!(tag(&kit.host), "b");
    assert!(kit.host.is_running());
}

#[test]
fn sigterm_during_a_reload_stops_cleanly() {
    let mut kit = kit_reloading();
    kit.host.signal(libc::SIGTERM);
    let status = kit.host.wait_exit(Duration::from_secs(30)).expect("exits");
    assert_eq!(status.code(), Some(0), "{}", kit.host.stderr.text());
    let log = kit.host.stderr.text();
    assert!(
        log.contains("Received SIGTERM during a reload; abandoning it and stopping"),
        "{log}"
    );
    assert!(log.contains("Service stopped"), "{log}");
}

#[test]
fn a_second_sigterm_during_the_drain_stops_at_once() {
    let mut kit = kit_with(&["--reload-tag=a"], &["--shutdown-timeout", "60"], false);
    let url = kit.host.url("/reload/sleep/30000");
    let slow = thread::spawn(move || {
        let client = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap();
        let _ = client.get(url).send();
    });
    assert!(kit
        .host
        .stderr
        .wait_for("sleeping 30000 ms", Duration::from_secs(10)));
    let asked = Instant::now();
    kit.host.signal(libc::SIGTERM);
    assert!(kit
        .host
        .stderr
        .wait_for("Received SIGTERM, shutting down", Duration::from_secs(10)));
    kit.host.signal(libc::SIGTERM);
    let status = kit.host.wait_exit(Duration::from_secs(20)).expect("exits");
    assert_eq!(status.code(), Some(0));
    assert!(
        asked.elapsed() < Duration::from_secs(20),
        "did not wait for the drain"
    );
    let log = kit.host.stderr.text();
    assert!(
        log.contains("Received SIGTERM again during the shutdown; stopping at once"),
        "{log}"
    );
    slow.join().unwrap();
}

#[test]
fn watch_reloads_once_a_slowly_copied_file_is_complete() {
    let kit = kit_with(&["--reload-tag=a"], &["--watch"], false);
    let bytes = fs::read(plugin_lib("peer-plugin")).unwrap();
    let file = kit.dir.path().join("libpeer.so");
    fs::write(&file, &bytes[..bytes.len() / 2]).unwrap();
    set_mode(&file, 0o644);
    assert!(
        kit.host
            .stderr
            .wait_for("libpeer.so is not ready", Duration::from_secs(20)),
        "{}",
        kit.host.stderr.text()
    );
    assert_eq!(
        kit.host.reloads(),
        (0, 0),
        "nothing reloaded from a half file"
    );
    let log = kit.host.stderr.text();
    let line = log
        .lines()
        .find(|line| line.contains("libpeer.so is not ready"))
        .unwrap_or_default();
    assert!(
        line.contains("WARNING") && line.contains("is not ready: truncated"),
        "a warning that says the file is short: {line}"
    );
    let (status, body) = kit.host.health();
    assert_eq!(status, 200);
    let waiting = body["reload"]["waiting"].as_str().unwrap_or_default();
    assert!(
        waiting.contains("libpeer.so is not ready: truncated"),
        "{body}"
    );
    use std::io::Write;
    let mut handle = fs::OpenOptions::new().append(true).open(&file).unwrap();
    handle.write_all(&bytes[bytes.len() / 2..]).unwrap();
    drop(handle);
    kit.host.wait_reloads((1, 0));
    assert_eq!(kit.host.get("/peer/missing").status(), 200);
    assert_eq!(tag(&kit.host), "a");
    assert!(kit.host.health().1["reload"]["waiting"].is_null());
}

/// Echoes across one reload. Starts the reload fixture echoing a new exchange as generation
/// `a` (with `first` besides), waits until it echoes, publishes `total` numbered messages 5 ms
/// apart and sends SIGHUP after message `reload_after` (generation `b` echoes without
/// `first`). Returns the tags that echoed each message, once the end marker (published after
/// the reload, echoed by `b`) came; fails if a message got no echo.
fn echoes_across_a_reload(
    first: &[&str],
    host_args: &[&str],
    total: u64,
    reload_after: u64,
) -> std::collections::BTreeMap<u64, Vec<String>> {
    let exchange = amqp::unique("reload");
    let echo_arg = format!("--reload-echo={exchange}");
    let mut args = vec!["--reload-tag=a", echo_arg.as_str()];
    args.extend(first);
    let kit = kit_with(&args, host_args, false);
    let consumer = amqp::SyncPeer::connect();
    consumer.declare_like_original(&format!("{exchange}-echo"), lapin::ExchangeKind::Topic);
    let mut echoes = consumer.consume(&format!("{exchange}-echo"), "#");
    // Wait until the first generation echoes (its subscription is bound).
    let publisher = amqp::SyncPeer::connect();
    publisher.declare_like_original(&exchange, lapin::ExchangeKind::Topic);
    let probed = (0..50).any(|_| {
        publisher.publish_json(&exchange, "probe", &json!("probe"));
        let delivery = echoes.recv(Duration::from_secs(10), "probe echo");
        let body: Value = serde_json::from_slice(&delivery.data).unwrap();
        body["message"] == "probe"
    });
    assert!(probed);

    write_args(&kit.args, &["--reload-tag=b", &echo_arg]);
    for seq in 0..total {
        publisher.publish_json(&exchange, "seq", &json!(seq));
        thread::sleep(Duration::from_millis(5));
        if seq == reload_after {
            kit.host.signal(libc::SIGHUP);
        }
    }
    kit.host.wait_reloads((1, 0));
    publisher.publish_json(&exchange, "end", &json!("end"));
    let mut seen = std::collections::BTreeMap::<u64, Vec<String>>::new();
    // Bounded: each pass takes one echo (or fails after 20 s), and the end marker comes last.
    loop {
        let delivery = echoes.recv(Duration::from_secs(20), "echoes up to the end marker");
        let body: Value = serde_json::from_slice(&delivery.data).unwrap();
        if body["message"] == "end" {
            assert_eq!(body["tag"], "b", "the new generation is the one left");
            break;
        }
        if let Some(seq) = body["message"].as_u64() {
            seen.entry(seq)
                .or_default()
                .push(body["tag"].as_str().unwrap().to_owned());
        }
    }
    let missing: Vec<u64> = (0..total).filter(|seq| !seen.contains_key(seq)).collect();
    assert!(missing.is_empty(), "lost across the reload: {missing:?}");
    seen
}

#[test]
fn no_message_is_lost_across_a_reload() {
    let total = 400;
    let seen = echoes_across_a_reload(&[], &["--eventbus-reconnect-interval", "0.2"], total, 100);
    assert_eq!(seen[&0], ["a"]);
    assert_eq!(seen[&(total - 1)], ["b"]);
}

#[test]
fn a_handler_behind_its_queue_at_a_reload_loses_no_message() {
    // The first generation echoes one message every 20 ms while they arrive every 5 ms: at
    // the switch its queue holds a backlog, and its consumer has taken the next message
    // when the cancel comes. With a prefetch of 2, two more wait in its buffer and the rest
    // of the backlog in the queue itself. All are handled before the queue goes.
    let seen = echoes_across_a_reload(
        &["--reload-echo-ms=20"],
        &["--eventbus-prefetch", "2"],
        120,
        40,
    );
    let tags: std::collections::BTreeSet<&String> = seen.values().flatten().collect();
    assert_eq!(tags.len(), 2, "both generations echoed: {tags:?}");
}

/// Resident memory of a process, in KiB (`VmRSS`).
fn rss_kib(pid: u32) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

fn threads(pid: u32) -> usize {
    fs::read_dir(format!("/proc/{pid}/task")).unwrap().count()
}

#[test]
fn a_hundred_reloads_keep_memory_bounded() {
    let dir = PluginDir::with(&["device-plugin", "history-plugin", "hello-plugin"]);
    let host = Host::builder(dir.path())
        .args(&["--update-interval", "0"])
        .start();
    let pid = host.pid();
    let reload = |n: u64| {
        host.signal(libc::SIGHUP);
        host.wait_reloads((n, 0));
    };
    reload(1);
    let (rss_first, threads_first) = (rss_kib(pid), threads(pid));
    for n in 2..=100 {
        reload(n);
    }
    let (rss_last, threads_last) = (rss_kib(pid), threads(pid));
    eprintln!(
        "RSS after reload 1: {rss_first} KiB, after 100: {rss_last} KiB ({} KiB per reload); threads {threads_first} → {threads_last}",
        (rss_last.saturating_sub(rss_first)) / 99
    );
    assert_eq!(host.get("/hello").status(), 200);
    // Unchanged libraries are reused, not mapped again: what a reload keeps is small.
    assert!(
        rss_last <= rss_first + 8 * 1024,
        "RSS grew from {rss_first} to {rss_last} KiB over 99 reloads"
    );
    assert!(
        threads_last <= threads_first + 2,
        "threads {threads_first} → {threads_last}"
    );
}

#[test]
fn a_client_that_never_finishes_its_headers_does_not_hold_a_reload() {
    use std::io::Write;
    let kit = kit(&["--reload-tag=a"]);
    let mut slow = std::net::TcpStream::connect(("127.0.0.1", kit.host.port)).unwrap();
    slow.write_all(b"GET / HTTP/1.1\r\nHo").unwrap();
    write_args(&kit.args, &["--reload-tag=b"]);
    // Its connection has no request in flight, so nothing waits for it: the reload is done
    // well within `reload`'s 30 s bound (a drain waiting for it would take the shutdown
    // timeout, 60 s).
    reload(&kit, (1, 0));
    assert_eq!(tag(&kit.host), "b");
    drop(slow);
}

#[test]
fn a_reload_whose_startup_hangs_is_refused_after_the_hook_timeout() {
    let kit = kit_with(&["--reload-tag=a"], &["--hook-timeout", "1"], false);
    write_args(&kit.args, &["--reload-tag=b", "--reload-startup-ms=60000"]);
    reload(&kit, (0, 1));
    assert_eq!(tag(&kit.host), "a", "the old generation goes on");
    let (_, body) = kit.host.health();
    let error = body["reload"]["last"]["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("startup did not finish within 1.0 s"),
        "{body}"
    );
}

#[test]
fn sigterm_stops_at_once_whatever_the_reload_is_doing() {
    // Startup of the new plugins takes 60 s and the hooks may take as long: only
    // abandoning the reload lets the stop come in time.
    let mut kit = kit_with(&["--reload-tag=a"], &["--hook-timeout", "60"], false);
    write_args(&kit.args, &["--reload-tag=b", "--reload-startup-ms=60000"]);
    kit.host.signal(libc::SIGHUP);
    // The new generation is starting once its plugin is logged as loaded (the second time).
    assert!(wait_until(Duration::from_secs(10), || kit
        .host
        .stderr
        .count(&["Loaded plugin reload-plugin"])
        >= 2));
    kit.host.signal(libc::SIGTERM);
    let status = kit.host.wait_exit(Duration::from_secs(30));
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(0),
        "{}",
        kit.host.stderr.text()
    );
    assert!(kit.host.stderr.text().contains("Service stopped"));
}

/// Makes a FIFO at `path` (nothing ever writes to it).
fn mkfifo(path: &Path) {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
}

#[test]
fn an_argument_file_replaced_by_a_fifo_refuses_the_reload_and_sigterm_stops() {
    let mut kit = kit(&["--reload-tag=a"]);
    fs::remove_file(&kit.args).unwrap();
    mkfifo(&kit.args);
    reload(&kit, (0, 1));
    assert_eq!(tag(&kit.host), "a", "the old generation goes on");
    let (_, body) = kit.host.health();
    let error = body["reload"]["last"]["error"].as_str().unwrap_or_default();
    assert!(error.contains("not a regular file"), "{body}");
    kit.host.signal(libc::SIGTERM);
    let status = kit.host.wait_exit(Duration::from_secs(30));
    assert_eq!(status.and_then(|s| s.code()), Some(0));
}

#[test]
fn a_fifo_as_argument_file_at_start_is_a_usage_error() {
    let dir = PluginDir::new();
    let args_dir = tempfile::tempdir().unwrap();
    let fifo = args_dir.path().join("args");
    mkfifo(&fifo);
    let exited = Host::builder(dir.path())
        .arg(&format!("@{}", fifo.display()))
        .run_to_exit();
    assert_eq!(exited.code(), Some(2), "{}", exited.stderr);
    assert!(
        exited.stderr.contains("not a regular file"),
        "{}",
        exited.stderr
    );
}

fn count(host: &Host) -> Value {
    host.get("/reload/count").json().unwrap()
}

#[test]
fn a_reload_hands_the_plugins_state_to_the_new_generation() {
    let mut kit = kit(&["--reload-tag=a"]);
    assert_eq!(count(&kit.host)["handed"], "nothing", "the first start");
    for _ in 0..3 {
        let answer = kit.host.post_json("/reload/count", json!(null));
        assert_eq!(answer.status(), 200);
    }
    write_args(&kit.args, &["--reload-tag=b"]);
    reload(&kit, (1, 0));
    let now = count(&kit.host);
    assert_eq!(now["tag"], "b", "the new generation serves");
    assert_eq!(now["count"], 3, "with the old generation's count: {now}");
    assert_eq!(now["handed"], "accepted");
    let (_, body) = kit.host.health();
    let handovers = &body["reload"]["last"]["handovers"];
    assert_eq!(
        handovers,
        &json!([{"plugin": "reload-plugin", "outcome": "accepted", "detail": null}])
    );
    assert!(kit.host.stop().success());
}

#[test]
fn a_new_version_that_cannot_read_the_old_state_starts_empty_and_says_why() {
    let mut kit = kit(&["--reload-tag=a"]);
    kit.host.post_json("/reload/count", json!(null));
    write_args(&kit.args, &["--reload-tag=b", "--reload-state-version=2"]);
    reload(&kit, (1, 0));
    let now = count(&kit.host);
    assert_eq!(
        (now["tag"].as_str(), now["count"].as_u64()),
        (Some("b"), Some(0))
    );
    let why = "state version 1 was handed over; this build reads version 2";
    assert_eq!(now["handed"], format!("refused: {why}"));
    let (status, body) = kit.host.health();
    assert_eq!(
        status, 200,
        "a refused state is not a failed reload: {body}"
    );
    let last = &body["reload"]["last"];
    assert_eq!(last["ok"], true);
    assert_eq!(
        last["handovers"],
        json!([{"plugin": "reload-plugin", "outcome": "refused", "detail": why}])
    );
    let log = kit.host.stderr.text();
    assert!(
        log.contains("refused the previous generation's state") && log.contains(why),
        "{log}"
    );
    assert!(kit.host.stop().success());
}

#[test]
fn a_handover_hook_that_fails_leaves_the_new_generation_empty_and_the_reload_good() {
    for (fault, detail) in [
        ("error", "handover failed: reload-plugin handover refused"),
        ("panic", "reload-plugin handover kaboom"),
    ] {
        let mut kit = kit(&["--reload-tag=a", &format!("--reload-handover={fault}")]);
        kit.host.post_json("/reload/count", json!(null));
        write_args(&kit.args, &["--reload-tag=b"]);
        reload(&kit, (1, 0));
        let now = count(&kit.host);
        assert_eq!(now["tag"], "b", "{fault}: the new generation serves: {now}");
        assert_eq!(now["count"], 0, "{fault}: it starts empty: {now}");
        assert_eq!(now["handed"], "nothing", "{fault}: {now}");
        let (status, body) = kit.host.health();
        assert_eq!(status, 200, "{fault}: {body}");
        let last = &body["reload"]["last"];
        assert_eq!(last["ok"], true, "{fault}: {body}");
        let [report] = last["handovers"].as_array().unwrap().as_slice() else {
            panic!("{fault}: one handover report: {body}");
        };
        assert_eq!(report["plugin"], "reload-plugin", "{fault}: {body}");
        assert_eq!(report["outcome"], "failed", "{fault}: {body}");
        let shown = report["detail"].as_str().unwrap_or_default();
        assert!(shown.contains(detail), "{fault}: {body}");
        let logged = "its next generation starts empty";
        assert!(kit.host.stderr.wait_for(logged, Duration::from_secs(10)));
        assert!(kit.host.stop().success(), "{fault}");
    }
}

#[test]
fn a_failed_reload_leaves_the_old_generation_its_state() {
    let mut kit = kit(&["--reload-tag=a"]);
    kit.host.post_json("/reload/count", json!(null));
    write_args(&kit.args, &["--reload-tag=b", "--reload-fail=panic"]);
    reload(&kit, (0, 1));
    kit.host.post_json("/reload/count", json!(null));
    let now = count(&kit.host);
    assert_eq!(
        (now["tag"].as_str(), now["count"].as_u64()),
        (Some("a"), Some(2))
    );
    write_args(&kit.args, &["--reload-tag=c"]);
    reload(&kit, (1, 1));
    let now = count(&kit.host);
    assert_eq!(
        (now["tag"].as_str(), now["count"].as_u64()),
        (Some("c"), Some(2))
    );
    assert!(kit.host.stop().success());
}

/// Whether health shows an active AMQP subscription to `exchange`.
fn subscribed(host: &Host, exchange: &str) -> bool {
    let (_, body) = host.health();
    body["eventbus"]["subscriptions"]
        .as_array()
        .is_some_and(|subs| {
            subs.iter()
                .any(|s| s["exchange"] == exchange && s["state"] == "active")
        })
}

/// The device's simulated chamber temperature.
fn temperature(host: &Host) -> f64 {
    let device: Value = host.get("/device/state").json().unwrap();
    device["temperature"].as_f64().unwrap()
}

/// Waits (≤ 20 s) until the device's temperature is above `floor`; returns it.
fn temperature_above(host: &Host, floor: f64) -> f64 {
    let mut now = temperature(host);
    let moved = wait_until(Duration::from_secs(20), || {
        now = temperature(host);
        now > floor
    });
    assert!(
        moved,
        "the temperature stayed at {now} °C, not above {floor}"
    );
    now
}

/// `POST /history/subscribe` to every message of `exchange`.
fn history_subscribe(host: &Host, exchange: &str) {
    let answer = host.post_json(
        "/history/subscribe",
        json!({"exchange": exchange, "routing": "#"}),
    );
    assert_eq!(answer.status(), 200);
    assert!(wait_until(Duration::from_secs(20), || subscribed(
        host, exchange
    )));
}

#[test]
fn the_bundled_plugins_keep_their_state_across_a_hot_swap() {
    let exchange = amqp::unique("handover");
    let added = amqp::unique("handover-added");
    let dir = PluginDir::with(&["history-plugin", "device-plugin"]);
    let args_dir = tempfile::tempdir().unwrap();
    let file = args_dir.path().join("args");
    let history = format!("--history-exchange={exchange}");
    // Updates every 0.1 s: the heater (setpoint above ambient) moves the temperature.
    write_args(&file, &[&history, "--update-interval=0.1"]);
    let mut host = Host::builder(dir.path())
        .arg(&format!("@{}", file.display()))
        .start();
    assert!(wait_until(Duration::from_secs(20), || subscribed(
        &host, &exchange
    )));
    history_subscribe(&host, &added);
    let peer = amqp::SyncPeer::connect();
    peer.publish_json(&exchange, "fermenter", &json!({"t": 20}));
    peer.publish_json(&exchange, "kettle", &json!({"t": 70}));
    let last = || -> Value { host.get("/history/last").json().unwrap() };
    assert!(wait_until(Duration::from_secs(10), || last()
        .as_object()
        .unwrap()
        .len()
        == 2));
    let put = host
        .client
        .put(host.url("/device/setpoint"))
        .json(&json!({"setpoint": 25.5}))
        .send()
        .unwrap();
    assert_eq!(put.status(), 200);
    let recent_before: Value = host.get("/history/recent/kettle").json().unwrap();
    let subscriptions: Value = host.get("/history/subscriptions").json().unwrap();
    // A new chamber starts at the ambient 20 °C; from there the heater needs 3.6 s to reach
    // 20.15 °C, far longer than a reload, so only a handed-over temperature is this warm.
    let warmed = temperature_above(&host, 20.15);

    host.signal(libc::SIGHUP);
    host.wait_reloads((1, 0));
    let (_, body) = host.health();
    let mut handovers: Vec<Value> = body["reload"]["last"]["handovers"]
        .as_array()
        .unwrap()
        .clone();
    handovers.sort_by_key(|h| h["plugin"].as_str().unwrap_or_default().to_owned());
    assert_eq!(
        handovers,
        [
            json!({"plugin": "device-plugin", "outcome": "accepted", "detail": null}),
            json!({"plugin": "history-plugin", "outcome": "accepted", "detail": null}),
        ]
    );
    assert_eq!(last(), json!({"fermenter": {"t": 20}, "kettle": {"t": 70}}));
    let recent_after: Value = host.get("/history/recent/kettle").json().unwrap();
    assert_eq!(
        recent_after, recent_before,
        "with the times it was received"
    );
    let device: Value = host.get("/device/state").json().unwrap();
    assert_eq!(device["setpoint"], 25.5);
    // The heater runs on from the temperature handed over, in the new generation too.
    let handed = temperature(&host);
    assert!(
        handed >= warmed,
        "{handed} °C after {warmed} °C: not handed over"
    );
    temperature_above(&host, handed);
    // The new generation records as the old one did, on the subscription added over HTTP
    // too.
    let now: Value = host.get("/history/subscriptions").json().unwrap();
    assert_eq!(now, subscriptions, "the added subscription is kept");
    assert!(wait_until(Duration::from_secs(20), || subscribed(
        &host, &added
    )));
    peer.publish_json(&exchange, "mash", &json!({"t": 65}));
    peer.publish_json(&added, "boil", &json!({"t": 100}));
    assert!(wait_until(Duration::from_secs(10), || last()
        .as_object()
        .unwrap()
        .len()
        == 4));
    assert_eq!(last()["boil"], json!({"t": 100}));
    assert!(host.stop().success());
}

/// From the moment a reload takes its state, the old generation's repeaters stop: the beats
/// it publishes end with the one it counted when it handed over (one run already past its
/// check may finish), although the new generation takes 1.5 s to start — without the pause
/// the old one would beat ~150 more times meanwhile.
#[test]
fn a_retiring_generations_repeaters_stop_publishing() {
    let exchange = amqp::unique("beat");
    let beat = format!("--reload-beat={exchange}");
    let consumer = amqp::SyncPeer::connect();
    consumer.declare_like_original(&exchange, lapin::ExchangeKind::Topic);
    let mut beats = consumer.consume(&exchange, "#");
    let mut kit = kit(&["--reload-tag=a", &beat]);
    // The first generation beats.
    let first = beats.recv(Duration::from_secs(10), "a first beat");
    assert_eq!(
        serde_json::from_slice::<Value>(&first.data).unwrap()["tag"],
        "a"
    );
    write_args(
        &kit.args,
        &["--reload-tag=b", &beat, "--reload-startup-ms=1500"],
    );
    reload(&kit, (1, 0));
    let handed = count(&kit.host)["handed_beats"].as_u64().unwrap();
    assert!(handed >= 1);
    // A marker after the reload: every beat of the old generation came before it.
    consumer.publish_json(&exchange, "marker", &json!({"tag": "marker"}));
    let mut last_a = 0;
    let mut b_beats = 0;
    for _ in 0..10_000 {
        let delivery = beats.recv(Duration::from_secs(10), "beats up to the marker");
        let body: Value = serde_json::from_slice(&delivery.data).unwrap();
        match body["tag"].as_str() {
            Some("a") => last_a = last_a.max(body["n"].as_u64().unwrap()),
            Some("b") => b_beats += 1,
            _ => break,
        }
    }
    assert!(
        last_a <= handed + 1,
        "the old generation beat on: {last_a} after handing over at {handed}"
    );
    assert!(b_beats > 0 || count(&kit.host)["tag"] == "b");
    assert!(kit.host.stop().success());
}
