//! Plugin files the host must refuse, and plugin files it must survive losing.

use std::{fs, time::Duration};

use integration_tests::{plugin_lib, set_mode, Host, PluginDir};

fn refused(dir: &PluginDir) -> integration_tests::Exited {
    let out = Host::builder(dir.path()).run_to_exit();
    assert_eq!(out.code(), Some(1), "expected exit 1:\n{}", out.stderr);
    out
}

/// The line of a refused start that names `file`, and the whole output.
fn refusal_of(dir: &PluginDir, file: &str) -> (String, integration_tests::Exited) {
    let out = refused(dir);
    let line = out
        .stderr
        .lines()
        .find(|l| l.contains(file))
        .unwrap_or_else(|| panic!("no line names {file}:\n{}", out.stderr))
        .to_owned();
    (line, out)
}

#[test]
fn text_file_named_like_a_plugin_is_refused() {
    let dir = PluginDir::with(&["hello-plugin"]);
    let bad = dir.path().join("libbroken_plugin.so");
    fs::write(&bad, "this is not a library\n").unwrap();
    set_mode(&bad, 0o644);
    let (line, out) = refusal_of(&dir, "libbroken_plugin.so");
    assert!(line.contains("not a shared library"), "{line}");
    assert!(!out.stderr.contains("Running on"), "must not serve");
}

#[test]
fn shared_library_that_is_not_a_plugin_is_refused() {
    let dir = PluginDir::with(&["not-a-plugin"]);
    let (line, _) = refusal_of(&dir, "libnot_a_plugin.so");
    assert!(line.contains("not a brewblox-host plugin"), "{line}");
}

#[test]
fn plugin_for_an_incompatible_api_version_is_refused() {
    let dir = PluginDir::with(&["incompatible-plugin"]);
    let (line, _) = refusal_of(&dir, "libincompatible_plugin.so");
    assert!(line.contains("built against plugin-api 0.0.9"), "{line}");
    assert!(line.contains("rebuild the plugin"), "{line}");
}

#[test]
fn plugin_with_an_incompatible_layout_is_refused_with_a_summary() {
    let dir = PluginDir::with(&["mismatched-plugin"]);
    let (line, out) = refusal_of(&dir, "libmismatched_plugin.so");
    assert!(line.contains("incompatible plugin ABI"), "{line}");
    assert!(
        line.len() < 600,
        "a summary, not a layout dump: {} chars",
        line.len()
    );
    assert!(
        out.stderr.lines().count() < 10,
        "no layout dump without --debug:\n{}",
        out.stderr
    );
}

#[test]
fn two_plugins_with_the_same_name_are_refused() {
    let dir = PluginDir::new();
    dir.add_as("hello-plugin", "liba_hello.so");
    dir.add_as("hello-plugin", "libb_hello.so");
    let out = refused(&dir);
    let line = out
        .stderr
        .lines()
        .find(|l| l.contains("libb_hello.so"))
        .expect("names the second file");
    assert!(
        line.contains("\"hello-plugin\" is already used by"),
        "{line}"
    );
    assert!(line.contains("liba_hello.so"), "{line}");
}

#[test]
fn every_bad_file_gets_its_own_line() {
    let dir = PluginDir::with(&["not-a-plugin", "incompatible-plugin"]);
    let out = refused(&dir);
    assert!(out.stderr.contains("libnot_a_plugin.so"));
    assert!(out.stderr.contains("libincompatible_plugin.so"));
    assert!(
        out.stderr.contains("2 plugin file(s) refused"),
        "{}",
        out.stderr
    );
}

#[test]
fn folder_writable_by_others_is_refused() {
    let dir = PluginDir::with(&["hello-plugin"]);
    set_mode(dir.path(), 0o777);
    let out = refused(&dir);
    assert!(
        out.stderr.contains("writable by other users"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("chmod go-w"), "{}", out.stderr);
}

#[test]
fn plugin_file_writable_by_others_is_refused() {
    let dir = PluginDir::new();
    let file = dir.add("hello-plugin");
    set_mode(&file, 0o666);
    let out = refused(&dir);
    assert!(
        out.stderr
            .contains("libhello_plugin.so is writable by other users"),
        "{}",
        out.stderr
    );
}

#[test]
fn missing_plugins_folder_named_explicitly_is_an_error() {
    let dir = PluginDir::new();
    let missing = dir.path().join("nope");
    let out = Host::builder(&missing).run_to_exit();
    assert_eq!(out.code(), Some(1));
    assert!(
        out.stderr.contains("cannot open plugins folder"),
        "{}",
        out.stderr
    );
}

#[test]
fn other_files_are_ignored_and_plugins_load_in_name_order() {
    let dir = PluginDir::new();
    dir.add_as("testkit-plugin", "10-testkit.so");
    dir.add_as("peer-plugin", "20-peer.so");
    fs::write(dir.path().join("README.txt"), "not a plugin").unwrap();
    fs::write(dir.path().join("libsomething.so.bak"), "not a plugin").unwrap();
    fs::create_dir(dir.path().join("sub.so")).unwrap();
    let mut host = Host::builder(dir.path()).start();
    let log = host.stderr.text();
    let kit = log
        .find("Loaded plugin testkit-plugin")
        .expect("testkit loaded");
    let peer = log.find("Loaded plugin peer-plugin").expect("peer loaded");
    assert!(kit < peer, "file-name order:\n{log}");
    assert_eq!(log.matches("Loaded plugin").count(), 2, "{log}");
    assert!(host.stop().success());
}

/// The names of the host's threads, as `ps -L` shows them.
fn thread_names(pid: u32) -> Vec<String> {
    let tasks = fs::read_dir(format!("/proc/{pid}/task")).unwrap();
    tasks
        .filter_map(|task| fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .map(|name| name.trim_end().to_owned())
        .collect()
}

#[test]
fn each_plugins_runtime_thread_carries_the_plugins_name() {
    let dir = PluginDir::new();
    dir.add_as("hello-plugin", "10-hello.so");
    dir.add_as("peer-plugin", "20-peer.so");
    let mut host = Host::builder(dir.path()).start();
    let names = thread_names(host.pid());
    // The kernel keeps 15 bytes of a thread's name.
    for expected in ["hello-plugin-rt", "peer-plugin-rt"] {
        assert!(names.iter().any(|n| n == expected), "{expected}: {names:?}");
    }
    // Named before the plugin's name was known, a runtime's thread would be `plugin-rt`.
    assert!(!names.iter().any(|n| n == "plugin-rt"), "{names:?}");
    assert!(host.stop().success());
}

/// A `/proc/PID/status` field of `pid`, as a number.
fn status_field(pid: u32, field: &str) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let value = status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .unwrap_or_else(|| panic!("no {field} in {status}"));
    value.trim().parse().unwrap()
}

#[test]
fn the_descriptor_table_has_room_for_many_plugins_from_the_start() {
    // With threads running, each growth of the table waits for the kernel: the host grows it
    // to 1,024 slots (`fd_table::SLOTS`) first, capped by its soft limit on open files, which
    // is this process's.
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    assert_eq!(
        unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) },
        0
    );
    let expected = limit.rlim_cur.min(1024);
    let dir = PluginDir::new();
    dir.add("hello-plugin");
    let mut host = Host::builder(dir.path()).start();
    // One plugin's host holds a few dozen descriptors: a table grown only as they are opened
    // would have 64 slots.
    let slots = status_field(host.pid(), "FDSize");
    assert!(slots >= expected, "{slots} slots, not {expected}");
    assert!(host.stop().success());
}

#[test]
fn a_symlink_to_a_loaded_plugin_is_loaded_once() {
    let dir = PluginDir::new();
    let file = dir.add("hello-plugin");
    std::os::unix::fs::symlink(&file, dir.path().join("libzz_link.so")).unwrap();
    let mut host = Host::builder(dir.path()).start();
    assert_eq!(host.stderr.text().matches("Loaded plugin").count(), 1);
    assert!(host.stop().success());
}

/// Starts a host serving hello from `libswap.so`, changes the file with `change`, checks the
/// running host still serves hello, then restarts and checks what serves now.
fn hot_swap(change: impl FnOnce(&PluginDir, &std::path::Path)) -> (Host, PluginDir) {
    let dir = PluginDir::new();
    let file = dir.add_as("hello-plugin", "libswap.so");
    let mut host = Host::builder(dir.path()).start();
    assert_eq!(host.get("/hello").status(), 200);
    change(&dir, &file);
    // The running host is unaffected: it loaded a private copy.
    for _ in 0..20 {
        assert_eq!(host.get("/hello").status(), 200);
    }
    assert!(host.is_running());
    assert!(host.stop().success(), "{}", host.stderr.text());
    let restarted = Host::builder(dir.path()).start();
    (restarted, dir)
}

#[test]
fn hot_swap_by_copying_over_the_file() {
    let (host, _dir) = hot_swap(|_, file| {
        fs::copy(plugin_lib("peer-plugin"), file).unwrap();
    });
    assert_eq!(host.get("/hello").status(), 404);
    assert_eq!(
        host.get("/peer/missing").status(),
        200,
        "the new file serves"
    );
}

#[test]
fn hot_swap_by_renaming_over_the_file() {
    let (host, _dir) = hot_swap(|dir, file| {
        let staged = dir.path().join("staged.tmp");
        fs::copy(plugin_lib("peer-plugin"), &staged).unwrap();
        set_mode(&staged, 0o644);
        fs::rename(&staged, file).unwrap();
    });
    assert_eq!(host.get("/hello").status(), 404);
    assert_eq!(host.get("/peer/missing").status(), 200);
}

#[test]
fn hot_swap_by_deleting_the_file() {
    let (host, _dir) = hot_swap(|_, file| {
        fs::remove_file(file).unwrap();
    });
    assert_eq!(host.get("/hello").status(), 404, "no plugin after restart");
    assert_eq!(host.get("/_service/status").status(), 200);
}

#[test]
fn debug_shows_the_full_layout_report() {
    let dir = PluginDir::with(&["mismatched-plugin"]);
    let out = Host::builder(dir.path()).arg("--debug").run_to_exit();
    assert_eq!(out.code(), Some(1));
    assert!(out.stderr.lines().count() > 10, "full report with --debug");
    let _ = Duration::from_secs(0);
}

#[test]
fn plugin_built_with_panic_abort_is_refused() {
    // A real artifact: the fixture compiled with `-C panic=abort` (its dependencies keep
    // unwinding, which rustc allows for the final crate).
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let built = std::process::Command::new(cargo)
        .args([
            "rustc",
            "-q",
            "-p",
            "abort-plugin",
            "--crate-type",
            "cdylib",
            "--",
            "-C",
            "panic=abort",
        ])
        .current_dir(integration_tests::workspace_root())
        .status()
        .expect("run cargo");
    assert!(built.success(), "building the abort fixture");
    let dir = PluginDir::with(&["abort-plugin"]);
    let (line, _) = refusal_of(&dir, "libabort_plugin.so");
    assert!(line.contains("built with panic = \"abort\""), "{line}");
}

#[test]
fn sighup_reloads_the_plugins_folder_in_the_same_process() {
    let dir = PluginDir::new();
    let file = dir.add_as("hello-plugin", "libswap.so");
    let mut host = Host::builder(dir.path()).start();
    let pid = host.pid();
    assert_eq!(host.get("/hello").status(), 200);
    let staged = dir.path().join("staged.tmp");
    fs::copy(plugin_lib("peer-plugin"), &staged).unwrap();
    set_mode(&staged, 0o644);
    fs::rename(&staged, &file).unwrap();
    host.signal(libc::SIGHUP);
    let reloaded = integration_tests::wait_until(Duration::from_secs(30), || {
        host.client
            .get(host.url("/peer/missing"))
            .send()
            .is_ok_and(|r| r.status() == 200)
    });
    assert!(
        reloaded,
        "new plugin serves after SIGHUP:\n{}",
        host.stderr.text()
    );
    assert_eq!(host.pid(), pid, "same process");
    assert!(host.is_running());
    assert_eq!(host.get("/hello").status(), 404);
    assert!(host.stderr.text().contains("Received SIGHUP, reloading"));
    assert!(host.stop().success());
}

#[test]
fn a_truncated_plugin_is_refused_naming_the_file() {
    let dir = PluginDir::new();
    let bytes = fs::read(plugin_lib("device-plugin")).unwrap();
    let file = dir.path().join("libdevice_plugin.so");
    fs::write(&file, &bytes[..100_000]).unwrap();
    set_mode(&file, 0o644);
    let (line, _) = refusal_of(&dir, "libdevice_plugin.so");
    assert!(line.contains("truncated or still being written"), "{line}");
}

#[test]
fn a_library_that_is_not_a_plugin_is_refused_before_its_code_runs() {
    // The fixture prints from a constructor (`.init_array`) when it is loaded.
    let dir = PluginDir::with(&["not-a-plugin"]);
    let out = refused(&dir);
    assert!(
        out.stderr.contains("not a brewblox-host plugin"),
        "{}",
        out.stderr
    );
    assert!(
        !out.stderr.contains("not-a-plugin constructor ran"),
        "{}",
        out.stderr
    );
}

#[test]
fn a_large_sparse_file_is_refused() {
    let dir = PluginDir::new();
    let file = fs::File::create(dir.path().join("x.so")).unwrap();
    file.set_len(1 << 30).unwrap();
    drop(file);
    set_mode(&dir.path().join("x.so"), 0o644);
    let out = refused(&dir);
    assert!(
        out.stderr.contains("x.so: not a shared library"),
        "{}",
        out.stderr
    );
}

#[test]
fn control_characters_in_a_file_name_cannot_forge_a_log_line() {
    let dir = PluginDir::new();
    // A file name cannot hold `/`, so the forged line cannot start with a date; it would
    // still be a line of its own.
    let name = "lib\nERROR    forged \u{1b}[31m.so";
    let file = dir.path().join(name);
    fs::write(&file, "not a library").unwrap();
    set_mode(&file, 0o644);
    let out = refused(&dir);
    assert!(
        out.stderr
            .lines()
            .all(|l| !l.starts_with("ERROR    forged")),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("lib\\nERROR    forged \\u{1b}[31m.so"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains('\u{1b}'), "{}", out.stderr);
}

/// Runs the host with its own temporary folder; returns what is left in it afterwards.
/// `RUST_BACKTRACE=full` makes whole private copies, which are never cached: the cache of
/// copies, kept on purpose, has tests of its own (`plugin_cache.rs`).
fn leftovers(args: &[&str], dir: &PluginDir, stop: bool) -> Vec<String> {
    let tmp = tempfile::tempdir().unwrap();
    let builder = Host::builder(dir.path())
        .args(args)
        .env("TMPDIR", tmp.path().to_str().unwrap())
        .env("RUST_BACKTRACE", "full");
    if stop {
        let mut host = builder.start();
        host.signal(libc::SIGHUP);
        assert!(host.stderr.wait_for("Reloaded", Duration::from_secs(30)));
        assert!(host.stop().success());
    } else {
        builder.run_to_exit();
    }
    fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

#[test]
fn no_private_copy_outlives_the_process() {
    let good = PluginDir::with(&["hello-plugin"]);
    for args in [
        &["--help"][..],
        &["--version"],
        &["--no-such-option"],
        &["--port", "x"],
    ] {
        assert_eq!(
            leftovers(args, &good, false),
            Vec::<String>::new(),
            "{args:?}"
        );
    }
    assert_eq!(
        leftovers(&[], &good, true),
        Vec::<String>::new(),
        "stop after a reload"
    );
    let bad = PluginDir::with(&["hello-plugin", "mismatched-plugin"]);
    assert_eq!(
        leftovers(&[], &bad, false),
        Vec::<String>::new(),
        "refused start"
    );
}

#[test]
fn check_describes_every_plugin_without_starting_any() {
    let dir = PluginDir::with(&["device-plugin", "hello-plugin"]);
    let out = std::process::Command::new(integration_tests::host_bin())
        .args(["check", "--plugins"])
        .arg(dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("ok       device-plugin 0.1.0"), "{stdout}");
    assert!(stdout.contains("ok       hello-plugin 0.1.0"), "{stdout}");
    assert!(stdout.contains("build id: "), "{stdout}");
    assert!(!stdout.contains("build id: none"), "{stdout}");
    assert!(
        stdout.contains("ABI fingerprint matches this host's"),
        "{stdout}"
    );
    assert!(stdout.contains("--device-id (string"), "{stdout}");
    assert!(stdout.contains("2 plugin(s)"), "{stdout}");
    // No startup ran: the device plugin logs when it starts, and nothing was logged.
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn check_refuses_what_the_host_would_refuse() {
    let dir = PluginDir::with(&["hello-plugin", "mismatched-plugin"]);
    let bytes = fs::read(plugin_lib("device-plugin")).unwrap();
    fs::write(dir.path().join("libhalf.so"), &bytes[..50_000]).unwrap();
    set_mode(&dir.path().join("libhalf.so"), 0o644);
    let out = std::process::Command::new(integration_tests::host_bin())
        .args(["check", "--plugins"])
        .arg(dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("libhalf.so: truncated"), "{stdout}");
    assert!(
        stdout.contains("libmismatched_plugin.so: incompatible plugin ABI"),
        "{stdout}"
    );
    assert!(
        stdout.contains("2 plugin file(s) would be refused"),
        "{stdout}"
    );
}

/// A folder of `*.so` entries that are no regular file: a symlink loop, a dangling symlink,
/// a FIFO and a link to a device.
fn odd_entries(dir: &PluginDir) {
    let path = dir.path();
    std::os::unix::fs::symlink(path.join("b-loop.so"), path.join("a-loop.so")).unwrap();
    std::os::unix::fs::symlink(path.join("a-loop.so"), path.join("b-loop.so")).unwrap();
    std::os::unix::fs::symlink(path.join("gone"), path.join("dangling.so")).unwrap();
    std::os::unix::fs::symlink("/dev/null", path.join("device.so")).unwrap();
    let fifo = std::ffi::CString::new(path.join("fifo.so").as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
}

#[test]
fn check_names_every_skipped_file_and_fails_when_nothing_loads() {
    let dir = PluginDir::new();
    odd_entries(&dir);
    let check = || {
        std::process::Command::new(integration_tests::host_bin())
            .args(["check", "--plugins"])
            .arg(dir.path())
            .output()
            .unwrap()
    };
    let out = check();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    for (file, reason) in [
        ("a-loop.so", "a symlink loop"),
        ("b-loop.so", "a symlink loop"),
        ("dangling.so", "a dangling symlink"),
        ("device.so", "a device"),
        ("fifo.so", "a FIFO"),
    ] {
        assert!(
            stdout.contains(&format!("{file}: not a regular file ({reason})")),
            "{file}: {stdout}"
        );
    }
    assert!(
        stdout.contains("0 plugin(s)") && stdout.contains("5 file(s) skipped"),
        "{stdout}"
    );
    // With a plugin beside them: it loads, they are still named, and the check passes.
    dir.add("hello-plugin");
    let out = check();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.contains("skipped") && stdout.contains("fifo.so"),
        "{stdout}"
    );
}

#[test]
fn the_start_log_names_every_skipped_file() {
    let dir = PluginDir::with(&["hello-plugin"]);
    odd_entries(&dir);
    let mut host = Host::builder(dir.path()).start();
    assert!(host
        .stderr
        .wait_for("Loaded plugin hello-plugin", Duration::from_secs(10)));
    let log = host.stderr.text();
    assert_eq!(log.matches("Skipped ").count(), 5, "{log}");
    assert!(
        log.contains("fifo.so: not a regular file (a FIFO)"),
        "{log}"
    );
    assert!(host.stop().success());
}
