//! Keeps the harness working: a `--quick` run against the debug builds must print its table.
//! No timing is asserted (CI machines are noisy); build first with `cargo build --workspace`.

use std::{
    io::Read,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

#[test]
fn quick_run_prints_the_table() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_bench"))
        .args(["--quick", "--profile", "debug"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start bench");
    let mut stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let out = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });
    let err = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let deadline = Instant::now() + Duration::from_secs(300);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let (stdout, stderr) = (
        out.join().unwrap_or_default(),
        err.join().unwrap_or_default(),
    );
    let status =
        status.unwrap_or_else(|| panic!("bench --quick ran over 300 s:\n{stdout}\n{stderr}"));
    assert!(
        status.success(),
        "bench --quick failed ({status}):\n{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains("| # | measurement |"),
        "no table:\n{stdout}\n{stderr}"
    );
    for row in [
        "| 1", "| 2 |", "| 3a |", "| 3d |", "| 3e |", "| 4a |", "| 5 |", "| 6a |", "| 7 |",
        "| 10a |", "| 10c |", "| 11b |",
    ] {
        assert!(stdout.contains(row), "row {row} missing:\n{stdout}");
    }
}
