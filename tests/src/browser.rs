//! Headless Chromium for the tests of the service's pages (the API UI, the operator page):
//! Debian's `chromium` run with `--dump-dom`, its net log read back, every helper process
//! killed at the end.

use std::{
    fs::File,
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Duration,
};

use serde_json::Value;

use crate::wait_until;

/// Debian's Chromium, or a clear failure: CI installs it (`.ci/run`).
pub fn chromium() -> PathBuf {
    let candidates = [
        PathBuf::from("/usr/bin/chromium"),
        PathBuf::from("/usr/bin/chromium-browser"),
    ];
    let on_path = std::env::var_os("PATH")
        .map(|paths| {
            std::env::split_paths(&paths)
                .flat_map(|dir| [dir.join("chromium"), dir.join("chromium-browser")])
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    candidates
        .into_iter()
        .chain(on_path)
        .find(|path| path.is_file())
        .unwrap_or_else(|| {
            panic!(
                "headless Chromium is needed for this test and was not found (looked for \
                 /usr/bin/chromium and chromium or chromium-browser on PATH). Install Debian's \
                 package: `apt-get update && apt-get install -y chromium` (.ci/run does this)"
            )
        })
}

/// What Chromium did with one page.
pub struct Rendered {
    pub dom: String,
    /// URLs the page itself requested (initiator = the page's origin), from the net log.
    pub page_requests: Vec<String>,
    /// Every URL any part of the browser requested.
    pub all_requests: Vec<String>,
    /// The methods of the page's requests, in the order of `page_requests`.
    pub page_methods: Vec<String>,
    /// What the browser wrote on stderr (with `--enable-logging=stderr`, the page's console
    /// messages as `CONSOLE(…)` lines).
    pub stderr: String,
}

/// Opens `url` in headless Chromium, lets the page run (10 s of virtual time, at most 120 s
/// of real time) and returns the DOM and the requests. The browser and its helper processes
/// run in their own process group, killed at the end whatever happens.
pub fn render(url: &str, origin: &str, extra: &[&str]) -> Rendered {
    let work = tempfile::tempdir().expect("temp dir");
    let profile = work.path().join("profile");
    let net_log = work.path().join("net-log.json");
    let dom_file = work.path().join("dom.html");
    let err_file = work.path().join("stderr.txt");
    let mut child = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--disable-dev-shm-usage",
            // The browser's own calls home (update checks, accounts) go nowhere.
            "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("--log-net-log={}", net_log.display()))
        .args(extra)
        .args(["--dump-dom", "--virtual-time-budget=10000", url])
        .stdin(Stdio::null())
        .stdout(File::create(&dom_file).unwrap())
        .stderr(File::create(&err_file).unwrap())
        .process_group(0)
        .spawn()
        .unwrap_or_else(|err| panic!("cannot start Chromium: {err}"));
    let group = child.id() as i32;
    let kill_group = || {
        // SAFETY: kill(2) on the process group we created.
        unsafe {
            libc::kill(-group, libc::SIGKILL);
        }
    };
    let mut status = None;
    let finished = wait_until(Duration::from_secs(120), || {
        status = child.try_wait().ok().flatten();
        status.is_some()
    });
    kill_group();
    let _ = child.wait();
    let stderr = std::fs::read_to_string(&err_file).unwrap_or_default();
    let tail: String = stderr
        .lines()
        .rev()
        .take(20)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect::<Vec<_>>()
        .join("\n");
    assert!(finished, "Chromium did not finish within 120 s:\n{tail}");
    let dom = std::fs::read_to_string(&dom_file).unwrap_or_default();
    assert!(
        status.is_some_and(|s| s.success()) && !dom.is_empty(),
        "Chromium failed ({status:?}):\n{tail}"
    );
    let (page, all_requests) = requests(&net_log, origin);
    let (page_requests, page_methods) = page.into_iter().unzip();
    Rendered {
        dom,
        page_requests,
        all_requests,
        page_methods,
        stderr,
    }
}

/// The URLs of the net log's requests: those the page made (with their method), and all.
fn requests(net_log: &Path, origin: &str) -> (Vec<(String, String)>, Vec<String>) {
    let text = std::fs::read_to_string(net_log).expect("Chromium wrote a net log");
    let log: Value = serde_json::from_str(&text).expect("the net log is JSON");
    let start_job = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"].clone();
    let (mut page, mut all) = (Vec::new(), Vec::new());
    for event in log["events"].as_array().into_iter().flatten() {
        if event["type"] != start_job {
            continue;
        }
        let Some(url) = event["params"]["url"].as_str() else {
            continue;
        };
        all.push(url.to_owned());
        if event["params"]["initiator"] == origin {
            let method = event["params"]["method"].as_str().unwrap_or("GET");
            page.push((url.to_owned(), method.to_owned()));
        }
    }
    (page, all)
}
