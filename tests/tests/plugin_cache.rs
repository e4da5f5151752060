//! The cache of private copies: a restart with unchanged plugins maps the copies the last
//! start kept; a changed file, a damaged entry or a folder others may enter is never mapped.

use std::{
    fs,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    time::{Duration, SystemTime},
};

use integration_tests::{plugin_lib, set_mode, Host, PluginDir};

/// How old a file's last change must be before the host caches its copy (the host's
/// `copy_cache::SETTLE`), with a margin.
const SETTLED: Duration = Duration::from_millis(2_300);

/// Waits (at most [`SETTLED`]) until every file in `dir` changed at least [`SETTLED`] ago: a
/// precondition of caching, not an assertion.
fn settle(dir: &Path) {
    for entry in fs::read_dir(dir).unwrap() {
        let meta = entry.unwrap().metadata().unwrap();
        let changed = (SystemTime::UNIX_EPOCH
            + Duration::new(meta.ctime() as u64, meta.ctime_nsec() as u32))
        .max(meta.modified().unwrap());
        let age = SystemTime::now()
            .duration_since(changed)
            .unwrap_or_default();
        if let Some(left) = SETTLED.checked_sub(age) {
            std::thread::sleep(left);
        }
    }
}

/// The `(found, kept)` counts of a start's debug line "… (N copies from the cache, M new
/// ones kept)". The new copies are stored by the time the host has stopped.
fn cache_counts(host: &Host) -> (usize, usize) {
    assert!(
        host.stderr
            .wait_for("copies from the cache", Duration::from_secs(10)),
        "{}",
        host.stderr.text()
    );
    let text = host.stderr.text();
    let line = text
        .lines()
        .find(|line| line.contains("copies from the cache"))
        .unwrap();
    let counts = line.rsplit_once('(').unwrap().1;
    let numbers: Vec<usize> = counts
        .split(|c: char| !c.is_ascii_digit())
        .filter(|part| !part.is_empty())
        .map(|part| part.parse().unwrap())
        .collect();
    (numbers[0], numbers[1])
}

/// The entries in the cache folder; none of its files may be a temporary one by the time a
/// host has ended, whatever way.
fn entries(cache: &Path) -> Vec<PathBuf> {
    let found: Vec<PathBuf> = fs::read_dir(cache)
        .map(|listing| listing.map(|entry| entry.unwrap().path()).collect())
        .unwrap_or_default();
    let (entries, others): (Vec<PathBuf>, Vec<PathBuf>) = found
        .into_iter()
        .partition(|path| path.extension().is_some_and(|ext| ext == "so"));
    assert_eq!(others, Vec::<PathBuf>::new(), "temporary files left");
    entries
}

fn start(dir: &PluginDir, cache: &Path) -> Host {
    Host::builder(dir.path())
        .args(&["--plugin-cache", cache.to_str().unwrap()])
        .env("RUST_LOG", "brewblox_host=debug")
        .start()
}

/// Settles `dir`'s files and runs a first start with a new cache folder, which keeps one
/// copy: the folder (inside a temporary one, to be kept as long as the folder is used).
fn first_start(dir: &PluginDir) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    settle(dir.path());
    let mut host = start(dir, &cache);
    assert_eq!(cache_counts(&host), (0, 1));
    assert!(host.stop().success());
    (tmp, cache)
}

/// A host whose runtime and temporary folders are `home` (where a default cache would lie).
fn start_at_home(dir: &PluginDir, home: &Path, args: &[&str]) -> Host {
    let home = home.to_str().unwrap();
    Host::builder(dir.path())
        .args(args)
        .env("TMPDIR", home)
        .env("XDG_RUNTIME_DIR", home)
        .env("RUST_LOG", "brewblox_host=debug")
        .start()
}

#[test]
fn a_restart_maps_the_copy_the_last_start_kept_until_the_file_changes() {
    let dir = PluginDir::with(&["hello-plugin"]);
    let file = dir.path().join(
        plugin_lib("hello-plugin")
            .file_name()
            .unwrap()
            .to_str()
            .unwrap(),
    );
    let (_tmp, cache) = first_start(&dir);
    let kept = entries(&cache);
    assert_eq!(kept.len(), 1, "{kept:?}");
    let meta = fs::metadata(&kept[0]).unwrap();
    assert_eq!(meta.mode() & 0o777, 0o400, "read-only");
    assert_eq!(
        fs::metadata(&cache).unwrap().mode() & 0o777,
        0o700,
        "nobody else may enter"
    );

    let mut host = start(&dir, &cache);
    assert_eq!(cache_counts(&host), (1, 0));
    assert_eq!(host.get("/hello").status(), 200);
    // The running host maps the cached copy: the plugins folder is still free to change.
    fs::copy(plugin_lib("peer-plugin"), &file).unwrap();
    assert_eq!(host.get("/hello").status(), 200);
    assert!(host.stop().success());

    // Changed a moment ago: copied privately, not cached, and the old entry is not used.
    let mut host = start(&dir, &cache);
    assert_eq!(cache_counts(&host), (0, 0));
    assert_eq!(host.get("/hello").status(), 404);
    assert_eq!(
        host.get("/peer/missing").status(),
        200,
        "the new file serves"
    );
    assert!(host.stop().success());

    // Settled: cached, replacing the entry of the file's earlier content.
    settle(dir.path());
    let mut host = start(&dir, &cache);
    assert_eq!(cache_counts(&host), (0, 1));
    assert_eq!(host.get("/peer/missing").status(), 200);
    assert!(host.stop().success());
    let now_kept = entries(&cache);
    assert_eq!(now_kept.len(), 1, "{now_kept:?}");
    assert_ne!(now_kept, kept);
}

#[test]
fn a_start_that_refuses_a_plugin_still_keeps_the_copies_it_wrote() {
    let dir = PluginDir::with(&["hello-plugin", "mismatched-plugin"]);
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    settle(dir.path());
    let out = Host::builder(dir.path())
        .args(&["--plugin-cache", cache.to_str().unwrap()])
        .run_to_exit();
    assert_eq!(out.code(), Some(1), "{}", out.stderr);
    // hello loaded before the refusal: its copy is stored, nothing is left half-kept.
    assert_eq!(entries(&cache).len(), 1);
}

#[test]
fn a_damaged_entry_is_copied_anew() {
    let dir = PluginDir::with(&["hello-plugin"]);
    let (_tmp, cache) = first_start(&dir);

    // Truncated (a disk that filled, a careless hand): mapping it would crash the host.
    let entry = entries(&cache).remove(0);
    set_mode(&entry, 0o600);
    fs::OpenOptions::new()
        .write(true)
        .open(&entry)
        .unwrap()
        .set_len(4096)
        .unwrap();
    let mut host = start(&dir, &cache);
    assert_eq!(cache_counts(&host), (0, 1));
    assert_eq!(host.get("/hello").status(), 200);
    assert!(host.stop().success());
    assert!(fs::metadata(&entry).unwrap().len() > 4096, "replaced whole");
}

#[test]
fn a_cache_folder_others_may_enter_is_not_used_and_said_so() {
    let dir = PluginDir::with(&["hello-plugin"]);
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    fs::create_dir(&cache).unwrap();
    set_mode(&cache, 0o777);
    settle(dir.path());
    let mut host = start(&dir, &cache);
    assert_eq!(host.get("/hello").status(), 200);
    assert!(
        host.stderr.wait_for(
            "is not used: other users may enter it (mode 777)",
            Duration::from_secs(10)
        ),
        "{}",
        host.stderr.text()
    );
    assert_eq!(cache_counts(&host), (0, 0));
    assert!(host.stop().success());
    assert_eq!(entries(&cache), Vec::<PathBuf>::new());

    // A symlink is not followed either: someone else could retarget it.
    let target = tmp.path().join("target");
    fs::create_dir(&target).unwrap();
    set_mode(&target, 0o700);
    let link = tmp.path().join("link");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let mut host = start(&dir, &link);
    assert!(
        host.stderr
            .wait_for("is not a folder", Duration::from_secs(10)),
        "{}",
        host.stderr.text()
    );
    assert_eq!(cache_counts(&host), (0, 0));
    assert!(host.stop().success());
    let written: Vec<_> = fs::read_dir(&target).unwrap().collect();
    assert!(written.is_empty(), "{written:?}");
}

#[test]
fn the_cache_lies_in_the_users_runtime_folder_and_off_or_check_write_nothing() {
    let dir = PluginDir::with(&["hello-plugin"]);
    let home = tempfile::tempdir().unwrap();
    settle(dir.path());
    for (args, kept) in [(&["--plugin-cache", "off"][..], 0), (&[][..], 1)] {
        let mut host = start_at_home(&dir, home.path(), args);
        assert_eq!(cache_counts(&host), (0, kept), "{args:?}");
        assert!(host.stop().success());
    }
    // Only the default start left something: its copy, in the runtime folder.
    let left: Vec<_> = fs::read_dir(home.path()).unwrap().collect();
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!(entries(&home.path().join("brewblox-host")).len(), 1);

    let empty = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(integration_tests::host_bin())
        .args(["check", "--plugins", dir.path().to_str().unwrap()])
        .env("TMPDIR", empty.path())
        .env("XDG_RUNTIME_DIR", empty.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let left: Vec<_> = fs::read_dir(empty.path()).unwrap().collect();
    assert!(left.is_empty(), "{left:?}");
}
