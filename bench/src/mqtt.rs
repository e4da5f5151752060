//! The MQTT bench rows: a private Mosquitto (free loopback port, its own config) for the host
//! to connect to.

use std::{
    net::TcpStream,
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};

use crate::util;

/// A private Mosquitto, killed when dropped.
pub struct Broker {
    pub port: u16,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Broker {
    /// Starts `mosquitto` (`$MOSQUITTO` or `/usr/sbin/mosquitto`) and waits (≤ 5 s) for it.
    pub fn start() -> Result<Broker> {
        let dir = tempfile::tempdir()?;
        let port = util::free_port();
        let conf = dir.path().join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!("listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"),
        )?;
        let binary = std::env::var("MOSQUITTO").unwrap_or_else(|_| "/usr/sbin/mosquitto".into());
        let child = Command::new(&binary)
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("start {binary}"))?;
        let broker = Broker {
            port,
            child,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                bail!("mosquitto did not listen on {port} within 5 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(broker)
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The host with MQTT only (no AMQP option), on `broker`.
pub fn host_command(
    binary: &Path,
    plugins: &Path,
    name: &str,
    port: u16,
    broker: &Broker,
) -> Command {
    let mut cmd = Command::new(binary);
    cmd.arg("--plugins")
        .arg(plugins)
        .args([
            "--name",
            name,
            "--host",
            "127.0.0.1",
            "--port",
            &port.to_string(),
        ])
        .args([
            "--mqtt-host",
            "127.0.0.1",
            "--mqtt-port",
            &broker.port.to_string(),
        ]);
    cmd
}
