//! A throw-away 3-node RabbitMQ cluster for one test, run by `scripts/rabbitmq-cluster` on
//! loopback ports outside the kernel's ephemeral range (so that no client socket can take one
//! while a node restarts its listener). Stopped, by PID, when dropped; the machine's broker on
//! 5672 is never touched.

use std::{
    net::TcpListener,
    process::{Command, Stdio},
    time::{SystemTime, UNIX_EPOCH},
};

/// A running cluster: nodes 1..3 on `ports[0..3]`.
pub struct RabbitCluster {
    pub ports: [u16; 3],
    dir: tempfile::TempDir,
    env: Vec<(&'static str, String)>,
}

/// Seven ports that are free now, from 10000 to 32000 (below the ephemeral range), from a
/// start that differs between processes.
fn free_low_ports() -> Vec<u16> {
    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos())
        ^ std::process::id();
    let mut port = 10_000 + (seed % 22_000) as u16;
    let mut ports = Vec::new();
    for _ in 0..2000 {
        port = if port >= 32_000 { 10_000 } else { port + 1 };
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            ports.push(port);
            if ports.len() == 7 {
                break;
            }
        }
    }
    assert_eq!(ports.len(), 7, "no free ports below 32000");
    ports
}

impl RabbitCluster {
    /// Starts one (about 15 to 30 s; the script bounds each wait).
    pub fn start() -> RabbitCluster {
        let dir = tempfile::tempdir().expect("temp dir");
        let ports = free_low_ports();
        let list = |p: &[u16]| p.iter().map(u16::to_string).collect::<Vec<_>>().join(" ");
        let cluster = RabbitCluster {
            ports: [ports[0], ports[1], ports[2]],
            dir,
            env: vec![
                ("AMQP_PORTS", list(&ports[0..3])),
                ("DIST_PORTS", list(&ports[3..6])),
                ("EPMD_PORT", ports[6].to_string()),
            ],
        };
        let out = cluster.script(&["start"]);
        assert!(
            out.status.success(),
            "scripts/rabbitmq-cluster start failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        cluster
    }

    /// `amqp://guest:guest@127.0.0.1:<port>/%2f` of node `n` (1..3).
    pub fn url(&self, n: usize) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.ports[n - 1])
    }

    /// Kills node `n` (1..3) with SIGKILL, as a crash would.
    pub fn kill(&self, n: usize) {
        let out = self.script(&["kill", &n.to_string()]);
        assert!(out.status.success(), "kill node {n}");
    }

    fn script(&self, args: &[&str]) -> std::process::Output {
        let mut cmd = Command::new(crate::workspace_root().join("scripts/rabbitmq-cluster"));
        cmd.arg(args[0]).arg(self.dir.path()).args(&args[1..]);
        for (key, value) in &self.env {
            cmd.env(key, value);
        }
        cmd.stdin(Stdio::null())
            .output()
            .expect("run scripts/rabbitmq-cluster")
    }
}

impl Drop for RabbitCluster {
    fn drop(&mut self) {
        let _ = self.script(&["stop"]);
    }
}
