//! Test harness: runs the real `brewblox-host` binary against real plugin libraries.
//!
//! Build everything first (`cargo build --workspace`); the README's test command does.
//! Every wait here is bounded: a latch with a deadline, never a sleep that hopes.

pub mod amqp;
pub mod browser;
pub mod cluster;
pub mod mqtt;

use std::{
    io::{BufRead, BufReader},
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex, MutexGuard,
    },
    thread,
    time::{Duration, Instant},
};

pub use reqwest::blocking::Client;

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ lives in the workspace")
        .to_owned()
}

/// Where cargo put the debug build.
pub fn build_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
        .join("debug")
}

fn built(path: PathBuf) -> PathBuf {
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --workspace` before the tests",
        path.display()
    );
    path
}

/// The host binary.
pub fn host_bin() -> PathBuf {
    built(build_dir().join("brewblox-host"))
}

/// The library built from crate `crate_name` (e.g. `hello-plugin`).
pub fn plugin_lib(crate_name: &str) -> PathBuf {
    built(build_dir().join(format!("lib{}.so", crate_name.replace('-', "_"))))
}

/// The GNU build id of a library, read from its section headers (not the program headers
/// the host reads), in hex: a check of the host's build ids independent of its loader.
pub fn gnu_build_id(library: &Path) -> String {
    use object::read::elf::ElfFile64;
    let data = std::fs::read(library).unwrap();
    let elf = ElfFile64::<object::Endianness>::parse(&*data).unwrap();
    let id = object::Object::build_id(&elf)
        .unwrap()
        .expect("the linker wrote a build id");
    id.iter().map(|b| format!("{b:02x}")).collect()
}

/// Broker lists for both buses whose first entry nothing listens on, the machine's RabbitMQ
/// and a given MQTT port second: for what a host shows of the broker it really uses.
pub struct DeadFirstLists {
    pub dead_amqp: u16,
    pub dead_mqtt: u16,
    args: [String; 4],
}

impl DeadFirstLists {
    pub fn new(mqtt_port: u16) -> Self {
        let (dead_amqp, dead_mqtt) = (free_port(), free_port());
        let args = [
            "--eventbus-host".to_owned(),
            format!("127.0.0.1:{dead_amqp},127.0.0.1:5672"),
            "--mqtt-host".to_owned(),
            format!("127.0.0.1:{dead_mqtt},127.0.0.1:{mqtt_port}"),
        ];
        DeadFirstLists {
            dead_amqp,
            dead_mqtt,
            args,
        }
    }

    /// The host's arguments for the two lists.
    pub fn args(&self) -> Vec<&str> {
        self.args.iter().map(String::as_str).collect()
    }
}

/// A private plugins folder (mode 0700, as the host demands).
pub struct PluginDir {
    dir: tempfile::TempDir,
}

impl Default for PluginDir {
    fn default() -> Self {
        Self::new()
    }
}

impl PluginDir {
    pub fn new() -> Self {
        PluginDir {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    /// Folder with these plugin crates copied in.
    pub fn with(crates: &[&str]) -> Self {
        let dir = Self::new();
        for name in crates {
            dir.add(name);
        }
        dir
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Copies the library of `crate_name` in under its own file name.
    pub fn add(&self, crate_name: &str) -> PathBuf {
        let lib = plugin_lib(crate_name);
        let name = lib.file_name().expect("file name").to_owned();
        self.add_as(crate_name, name.to_str().expect("utf-8"))
    }

    /// Copies the library of `crate_name` in as `file_name`.
    pub fn add_as(&self, crate_name: &str, file_name: &str) -> PathBuf {
        let target = self.dir.path().join(file_name);
        std::fs::copy(plugin_lib(crate_name), &target).expect("copy plugin");
        set_mode(&target, 0o644);
        target
    }
}

/// chmod.
pub fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// A free loopback port.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Lines a child process wrote, collected by a reader thread.
#[derive(Clone, Default)]
pub struct Lines {
    lines: Arc<Mutex<Vec<String>>>,
    /// Set when the reader reached the end of the stream: every line is in.
    closed: Arc<AtomicBool>,
}

impl Lines {
    fn spawn<R: std::io::Read + Send + 'static>(reader: R) -> Self {
        let lines = Lines::default();
        let sink = lines.clone();
        thread::spawn(move || {
            for line in BufReader::new(reader).lines().map_while(Result::ok) {
                sink.lock().push(line);
            }
            sink.closed.store(true, Ordering::SeqCst);
        });
        lines
    }

    /// The lines, whatever a panicking test thread left behind.
    fn lock(&self) -> MutexGuard<'_, Vec<String>> {
        self.lines.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Everything so far, one string.
    pub fn text(&self) -> String {
        self.lock().join("\n")
    }

    /// How many lines contain every one of `needles`.
    pub fn count(&self, needles: &[&str]) -> usize {
        self.lock()
            .iter()
            .filter(|line| needles.iter().all(|n| line.contains(n)))
            .count()
    }

    /// Waits until a line contains `needle`.
    pub fn wait_for(&self, needle: &str, timeout: Duration) -> bool {
        wait_until(timeout, || self.text().contains(needle))
    }

    /// Waits until the stream has ended (the process exited and its pipe is drained), so
    /// that [`text`](Lines::text) is the whole output; panics after 10 s.
    fn wait_closed(&self) {
        assert!(
            wait_until(Duration::from_secs(10), || self
                .closed
                .load(Ordering::SeqCst)),
            "the output pipe stayed open 10 s after the process exited"
        );
    }
}

/// Polls `check` every 20 ms until it holds or `timeout` passes.
pub fn wait_until(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if check() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// How to start a host.
pub struct HostBuilder {
    plugins: PathBuf,
    name: String,
    port: u16,
    args: Vec<String>,
    envs: Vec<(String, String)>,
    fd_limit: Option<u64>,
    amqp: bool,
}

impl HostBuilder {
    /// Uses the MQTT broker on 127.0.0.1:`port` (a private Mosquitto's).
    pub fn mqtt(self, port: u16) -> Self {
        self.args(&["--mqtt-host", "127.0.0.1", "--mqtt-port", &port.to_string()])
    }

    /// Leaves out the `--eventbus-host` the builder gives by default, so that only the
    /// options the test gives choose the eventbus.
    pub fn without_amqp(mut self) -> Self {
        self.amqp = false;
        self
    }

    /// Runs the host with at most `limit` open file descriptors (`RLIMIT_NOFILE`).
    pub fn fd_limit(mut self, limit: u64) -> Self {
        self.fd_limit = Some(limit);
        self
    }

    pub fn name(mut self, name: &str) -> Self {
        self.name = name.to_owned();
        self
    }

    pub fn arg(mut self, arg: &str) -> Self {
        self.args.push(arg.to_owned());
        self
    }

    pub fn args(mut self, args: &[&str]) -> Self {
        self.args.extend(args.iter().map(|a| a.to_string()));
        self
    }

    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.envs.push((key.to_owned(), value.to_owned()));
        self
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new(host_bin());
        cmd.arg("--plugins")
            .arg(&self.plugins)
            .args([
                "--name",
                &self.name,
                "--host",
                "127.0.0.1",
                "--port",
                &self.port.to_string(),
            ])
            .args(if self.amqp {
                &["--eventbus-host", "127.0.0.1"][..]
            } else {
                &[]
            })
            .args(&self.args)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (key, value) in &self.envs {
            cmd.env(key, value);
        }
        // A host must not outlive its test, even when the test process is killed.
        // SAFETY: prctl and setrlimit are async-signal-safe; nothing else runs between fork
        // and exec.
        let fd_limit = self.fd_limit;
        unsafe {
            use std::os::unix::process::CommandExt;
            cmd.pre_exec(move || {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                if let Some(limit) = fd_limit {
                    let limit = libc::rlimit {
                        rlim_cur: limit,
                        rlim_max: limit,
                    };
                    libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
                }
                Ok(())
            });
        }
        cmd
    }

    /// Starts the host and waits (≤ 30 s) until its status endpoint answers 200.
    pub fn start(self) -> Host {
        let mut host = self.spawn();
        let url = host.url("/_service/status");
        let client = Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .expect("client");
        let ready = wait_until(Duration::from_secs(30), || {
            if let Ok(Some(status)) = host.child.try_wait() {
                panic!(
                    "host exited with {status} before serving:\n{}",
                    host.stderr.text()
                );
            }
            client.get(&url).send().is_ok_and(|r| r.status() == 200)
        });
        assert!(
            ready,
            "host did not serve within 30 s:\n{}",
            host.stderr.text()
        );
        host
    }

    /// Starts the host without waiting for it to serve.
    pub fn spawn(self) -> Host {
        let mut child = self.command().spawn().expect("start brewblox-host");
        let stdout = Lines::spawn(child.stdout.take().expect("stdout"));
        let stderr = Lines::spawn(child.stderr.take().expect("stderr"));
        Host {
            child,
            port: self.port,
            name: self.name.clone(),
            stdout,
            stderr,
            client: Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("client"),
        }
    }

    /// Runs the host expecting it to exit by itself (≤ 30 s); returns its output.
    pub fn run_to_exit(self) -> Exited {
        let mut child = self.command().spawn().expect("start brewblox-host");
        let stdout = Lines::spawn(child.stdout.take().expect("stdout"));
        let stderr = Lines::spawn(child.stderr.take().expect("stderr"));
        let mut status = None;
        let exited = wait_until(Duration::from_secs(30), || {
            status = child.try_wait().ok().flatten();
            status.is_some()
        });
        if !exited {
            let _ = child.kill();
            panic!("host did not exit within 30 s:\n{}", stderr.text());
        }
        stdout.wait_closed();
        stderr.wait_closed();
        Exited {
            status: status.expect("exit status"),
            stdout: stdout.text(),
            stderr: stderr.text(),
        }
    }
}

/// A finished host process.
#[derive(Debug)]
pub struct Exited {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Exited {
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }
}

/// A running host; killed when dropped.
pub struct Host {
    child: Child,
    pub port: u16,
    pub name: String,
    pub stdout: Lines,
    pub stderr: Lines,
    pub client: Client,
}

impl Host {
    pub fn builder(plugins: &Path) -> HostBuilder {
        HostBuilder {
            plugins: plugins.to_owned(),
            name: "test_svc".to_owned(),
            port: free_port(),
            args: Vec::new(),
            envs: Vec::new(),
            fd_limit: None,
            amqp: true,
        }
    }

    /// `http://127.0.0.1:<port>/<name><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}/{}{}", self.port, self.name, path)
    }

    /// `http://127.0.0.1:<port><path>`, without the service prefix.
    pub fn raw_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.port, path)
    }

    pub fn get(&self, path: &str) -> reqwest::blocking::Response {
        self.client.get(self.url(path)).send().expect("GET")
    }

    /// `POST` of `body` as JSON.
    pub fn post_json(&self, path: &str, body: serde_json::Value) -> reqwest::blocking::Response {
        self.client
            .post(self.url(path))
            .json(&body)
            .send()
            .expect("POST")
    }

    /// `POST` of `body`'s JSON text, with no content type (as the original's clients send
    /// it): the status code and the answer's text.
    pub fn post_text(&self, path: &str, body: serde_json::Value) -> (u16, String) {
        let response = self
            .client
            .post(self.url(path))
            .body(body.to_string())
            .send()
            .expect("POST");
        let status = response.status().as_u16();
        (status, response.text().expect("an answer's text"))
    }

    /// `GET /_service/health`: its status code and its report.
    pub fn health(&self) -> (u16, serde_json::Value) {
        let response = self.get("/_service/health");
        let status = response.status().as_u16();
        (status, response.json().expect("health JSON"))
    }

    /// (succeeded, failed) reloads so far, from the health report.
    pub fn reloads(&self) -> (u64, u64) {
        let (_, body) = self.health();
        let report = &body["reload"];
        (
            report["succeeded"].as_u64().unwrap_or(0),
            report["failed"].as_u64().unwrap_or(0),
        )
    }

    /// Waits (≤ 30 s) until the reload counts are `want`; fails with the host's log if not.
    pub fn wait_reloads(&self, want: (u64, u64)) {
        let reached = wait_until(Duration::from_secs(30), || self.reloads() == want);
        assert!(
            reached,
            "reloads {:?}, wanted {want:?}:\n{}",
            self.reloads(),
            self.stderr.text()
        );
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal` (e.g. `libc::SIGTERM`).
    pub fn signal(&self, signal: i32) {
        // SAFETY: plain kill(2) on our own child.
        unsafe {
            libc::kill(self.child.id() as i32, signal);
        }
    }

    /// Waits (≤ `timeout`) for the process to exit; once it has, its whole output is in
    /// [`stdout`](Host::stdout) and [`stderr`](Host::stderr).
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let mut status = None;
        wait_until(timeout, || {
            status = self.child.try_wait().ok().flatten();
            status.is_some()
        });
        if status.is_some() {
            self.stdout.wait_closed();
            self.stderr.wait_closed();
        }
        status
    }

    /// SIGTERM, then wait ≤ 30 s for the exit.
    pub fn stop(&mut self) -> ExitStatus {
        self.signal(libc::SIGTERM);
        match self.wait_exit(Duration::from_secs(30)) {
            Some(status) => status,
            None => {
                let _ = self.child.kill();
                panic!("host did not stop within 30 s:\n{}", self.stderr.text());
            }
        }
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        if self.is_running() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A host with the testkit plugin, subscribed at startup to `exchange` with `#` (no
/// subscription when it is empty), retrying the broker every 0.2 s; `extra` arguments last.
/// Keep the folder alive as long as the host.
pub fn testkit_host(exchange: &str, extra: &[&str]) -> (Host, PluginDir) {
    let dir = PluginDir::with(&["testkit-plugin"]);
    let host = Host::builder(dir.path())
        .name(&amqp::unique("svc"))
        .args(&[
            "--testkit-exchange",
            exchange,
            "--eventbus-reconnect-interval",
            "0.2",
        ])
        .args(extra)
        .start();
    (host, dir)
}

/// What the testkit plugin's bus handlers recorded, in order (`GET /kit/bus/received`).
pub fn testkit_received(host: &Host) -> Vec<serde_json::Value> {
    host.get("/kit/bus/received")
        .json()
        .expect("testkit's received messages")
}

/// The `n` of each `{"n": …}` message in `entries` (what [`testkit_received`] returned), in
/// order.
pub fn testkit_numbers(entries: &[serde_json::Value]) -> Vec<u64> {
    entries
        .iter()
        .filter_map(|entry| entry["message"]["n"].as_u64())
        .collect()
}

/// Messages delivered to the subscription on `bus` with `routing` (its routing key or MQTT
/// filter) among `subscriptions` (an overview's or a plugin's list); -1 when there is none.
pub fn delivered(subscriptions: &serde_json::Value, bus: &str, routing: &str) -> f64 {
    subscriptions
        .as_array()
        .into_iter()
        .flatten()
        .find(|s| s["bus"] == bus && s["routing"] == routing)
        .and_then(|s| s["delivered"].as_f64())
        .unwrap_or(-1.0)
}

/// Percent-encodes everything but unreserved characters, for a value in a query string.
pub fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A multi-threaded tokio runtime for a test's async peers (MQTT clients, AMQP consumers),
/// beside the synchronous host harness.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a test's tokio runtime")
}

/// Reads from a raw client connection until the server closes it (`Ok` with what came) or
/// `limit` passes (`Err`).
pub fn read_until_closed(
    stream: &mut std::net::TcpStream,
    limit: Duration,
) -> std::io::Result<String> {
    use std::io::Read;
    stream.set_read_timeout(Some(limit))?;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return Ok(String::from_utf8_lossy(&got).into_owned()),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(err) if err.kind() == std::io::ErrorKind::ConnectionReset => {
                return Ok(String::from_utf8_lossy(&got).into_owned())
            }
            Err(err) => return Err(err),
        }
    }
}
