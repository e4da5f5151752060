//! Paths, child processes, RSS and statistics.

use std::{
    fs::File,
    io::{Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("bench/ lives in the workspace")
        .to_owned()
}

/// cargo's target folder.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"))
}

/// Where the built artefacts of one profile are.
#[derive(Clone, Debug)]
pub struct Builds {
    pub profile: String,
}

impl Builds {
    pub fn dir(&self) -> PathBuf {
        target_dir().join(&self.profile)
    }

    /// The ordinary host binary.
    pub fn host(&self) -> PathBuf {
        self.dir().join("brewblox-host")
    }

    /// The host built with `--features bench-native --target-dir target/bench`, if any.
    pub fn native_host(&self) -> Option<PathBuf> {
        let path = target_dir()
            .join("bench")
            .join(&self.profile)
            .join("brewblox-host");
        path.exists().then_some(path)
    }

    pub fn plugin(&self, crate_name: &str) -> PathBuf {
        self.dir()
            .join(format!("lib{}.so", crate_name.replace('-', "_")))
    }

    /// Folder of the generated plugin workspace (see `generate`).
    pub fn generated_root() -> PathBuf {
        target_dir().join("bench-plugins")
    }

    pub fn generated(&self, index: usize) -> PathBuf {
        Self::generated_root()
            .join("target")
            .join(&self.profile)
            .join(format!("libbench_gen_{index:02}.so"))
    }

    pub fn require(path: &Path) -> Result<PathBuf> {
        if !path.exists() {
            bail!(
                "{} is missing: build first (see BENCHMARKS.md: `cargo build --release --workspace`)",
                path.display()
            );
        }
        Ok(path.to_owned())
    }
}

/// A private plugins folder (0700) with plugin files (0644), as the host demands.
pub struct PluginDir {
    dir: tempfile::TempDir,
}

impl PluginDir {
    pub fn new(files: &[PathBuf]) -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("bench-plugins-")
            .tempdir()?;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700))?;
        for file in files {
            let name = file.file_name().context("plugin file name")?;
            let target = dir.path().join(name);
            std::fs::copy(file, &target).with_context(|| format!("copy {}", file.display()))?;
            std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o644))?;
        }
        Ok(PluginDir { dir })
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The folder once its files are old enough for the host to cache their copies (it
    /// caches none of a file changed less than 2 s ago): waits at most 2.3 s.
    pub fn settled(self) -> Self {
        std::thread::sleep(std::time::Duration::from_millis(2_300));
        self
    }
}

/// A free loopback port.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// A child process (host or baseline server); SIGTERM then SIGKILL when dropped.
pub struct Proc {
    pub child: Child,
    pub port: u16,
    pub name: String,
    pub log: PathBuf,
    _log_dir: tempfile::TempDir,
}

impl Proc {
    /// Starts `cmd` (already given its arguments) with output to a log file.
    pub fn spawn(mut cmd: Command, port: u16, name: &str) -> Result<Proc> {
        let log_dir = tempfile::Builder::new().prefix("bench-log-").tempdir()?;
        let log = log_dir.path().join("output.log");
        let file = File::create(&log)?;
        cmd.stdin(Stdio::null())
            .stdout(Stdio::from(file.try_clone()?))
            .stderr(Stdio::from(file))
            .env_remove("RUST_LOG")
            // As deployed: `RUST_BACKTRACE=full` makes the host copy whole plugin files.
            .env_remove("RUST_BACKTRACE");
        let child = cmd.spawn().context("start child process")?;
        Ok(Proc {
            child,
            port,
            name: name.to_owned(),
            log,
            _log_dir: log_dir,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// Waits (≤ `timeout`) for the first 200 on the status route; returns when it came.
    pub fn wait_ready(&mut self, timeout: Duration) -> Result<Instant> {
        let deadline = Instant::now() + timeout;
        let path = format!("/{}/_service/status", self.name);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                bail!("process exited with {status}:\n{}", self.log_tail());
            }
            if status_ok(self.addr(), &path) {
                return Ok(Instant::now());
            }
            if Instant::now() >= deadline {
                bail!("no 200 within {timeout:?}:\n{}", self.log_tail());
            }
            std::thread::sleep(Duration::from_micros(500));
        }
    }

    /// Resident set size in KiB.
    pub fn rss_kib(&self) -> Result<u64> {
        rss_kib(self.pid())
    }

    /// SIGTERM and a bounded wait, then SIGKILL.
    pub fn stop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            // SAFETY: kill(2) on our own child.
            unsafe {
                libc::kill(self.child.id() as i32, libc::SIGTERM);
            }
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = self.child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One blocking GET of the status route on a fresh connection: 200 or not.
pub fn status_ok(addr: SocketAddr, path: &str) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.1 200")
}

pub fn rss_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("VmRSS not found")
}

pub fn median(values: &[f64]) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(|a, b| a.total_cmp(b));
    let mid = sorted.len() / 2;
    if sorted.len() % 2 == 1 {
        sorted[mid]
    } else {
        (sorted[mid - 1] + sorted[mid]) / 2.0
    }
}

/// The `p` quantile (0..=1) of sorted values.
pub fn quantile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let index = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

pub fn unix_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}
