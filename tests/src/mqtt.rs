//! MQTT test helpers: a private Mosquitto per test (its own config, a free loopback port, so
//! a test may stop and start it without disturbing anyone), and an independent MQTT client
//! (rumqttc used directly, not through the host) for interop checks.

use std::{
    io::Write,
    net::TcpStream,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

pub use rumqttc;
use rumqttc::{AsyncClient, Event, Incoming, MqttOptions, QoS};
use tokio::sync::mpsc;

/// The Mosquitto binary: `MOSQUITTO` or `/usr/sbin/mosquitto`.
pub fn mosquitto_bin() -> String {
    std::env::var("MOSQUITTO").unwrap_or_else(|_| "/usr/sbin/mosquitto".into())
}

/// A private Mosquitto on 127.0.0.1, killed when dropped.
pub struct Mosquitto {
    pub port: u16,
    /// The websocket listener's port, for a broker made with [`Mosquitto::websockets`].
    pub ws_port: Option<u16>,
    dir: tempfile::TempDir,
    child: Option<Child>,
    /// Extra lines for the listener (TLS files), or a second listener after it.
    listener: String,
    /// Keep the user the test runs as (started as root, Mosquitto otherwise switches to its
    /// own user, which cannot read the private key in the test's private folder).
    keep_user: bool,
}

impl Mosquitto {
    /// Starts one on a free port and waits (at most 5 s) until it accepts connections.
    pub fn start() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut broker = Mosquitto {
            port: crate::free_port(),
            ws_port: None,
            dir,
            child: None,
            listener: String::new(),
            keep_user: false,
        };
        broker.up();
        broker
    }

    /// One whose listener speaks TLS with a fresh self-signed certificate (made with the
    /// `openssl` command).
    pub fn tls() -> Self {
        let mut broker = Self::later();
        let (cert, key) = (
            broker.dir.path().join("cert.pem"),
            broker.dir.path().join("key.pem"),
        );
        let status = Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "1",
                "-subj",
                "/CN=localhost",
            ])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("openssl");
        assert!(status.success(), "openssl req failed");
        broker.listener = format!("certfile {}\nkeyfile {}\n", cert.display(), key.display());
        broker.keep_user = true;
        broker.up();
        broker
    }

    /// One with a second listener that speaks MQTT over websockets (any path), on
    /// 127.0.0.1:`ws_port`, beside the plain one on `port`. Debian's Mosquitto 2.0.11 has
    /// websockets built in, but refuses to start with a websocket listener alone ("Unable to
    /// start any listening sockets"); `socket_domain ipv4` keeps it on 127.0.0.1 rather than
    /// every interface.
    pub fn websockets() -> Self {
        let mut broker = Self::later();
        let ws_port = crate::free_port();
        broker.ws_port = Some(ws_port);
        broker.listener =
            format!("listener {ws_port} 127.0.0.1\nprotocol websockets\nsocket_domain ipv4\n");
        broker.up();
        if let Some(ws_port) = broker.ws_port {
            wait_listening(ws_port);
        }
        broker
    }

    /// A port nothing listens on yet, for a broker started later with [`Mosquitto::up`].
    pub fn later() -> Self {
        Mosquitto {
            port: crate::free_port(),
            ws_port: None,
            dir: tempfile::tempdir().expect("temp dir"),
            child: None,
            listener: String::new(),
            keep_user: false,
        }
    }

    /// Starts the broker (again) on the same port.
    pub fn up(&mut self) {
        assert!(self.child.is_none(), "already running");
        let conf = self.dir.path().join("mosquitto.conf");
        let mut file = std::fs::File::create(&conf).expect("conf");
        writeln!(
            file,
            "{}listener {} 127.0.0.1\n{}allow_anonymous true\npersistence false\nlog_dest stderr\nlog_type error\nlog_type warning",
            if self.keep_user { "user root\n" } else { "" },
            self.port,
            self.listener
        )
        .expect("write conf");
        let child = Command::new(mosquitto_bin())
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start mosquitto (apt-get install mosquitto)");
        self.child = Some(child);
        wait_listening(self.port);
    }

    /// Stops the broker at once (SIGKILL): every client sees its connection drop.
    pub fn down(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Freezes the broker (SIGSTOP): connections stay open but nothing answers, as with a
    /// dead peer behind a live network.
    pub fn freeze(&self) {
        self.signal(libc::SIGSTOP);
    }

    /// Lets a frozen broker go on (SIGCONT).
    pub fn thaw(&self) {
        self.signal(libc::SIGCONT);
    }

    fn signal(&self, signal: i32) {
        if let Some(child) = &self.child {
            // SAFETY: kill(2) on our own child.
            unsafe {
                libc::kill(child.id() as i32, signal);
            }
        }
    }

    pub fn is_up(&self) -> bool {
        self.child.is_some()
    }
}

/// Waits (at most 5 s) until something accepts connections on 127.0.0.1:`port`.
fn wait_listening(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "mosquitto did not start on {port}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        self.down();
    }
}

/// An independent MQTT client: every message on its subscriptions arrives in `messages`.
pub struct Peer {
    pub client: AsyncClient,
    pub messages: mpsc::UnboundedReceiver<rumqttc::Publish>,
    task: tokio::task::JoinHandle<()>,
}

impl Peer {
    /// Connects to 127.0.0.1:`port`, subscribes to `filters` and waits (at most 5 s) for the
    /// broker's acknowledgements.
    pub async fn connect(port: u16, filters: &[&str]) -> Peer {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Self::connect_as(
            &format!("test-peer-{}-{n}", std::process::id()),
            port,
            filters,
        )
        .await
    }

    /// [`Peer::connect`] with a chosen client id.
    pub async fn connect_as(id: &str, port: u16, filters: &[&str]) -> Peer {
        let mut options = MqttOptions::new(id, "127.0.0.1", port);
        options.set_keep_alive(Duration::from_secs(5));
        let (client, mut eventloop) = AsyncClient::new(options, 100);
        let (tx, messages) = mpsc::unbounded_channel();
        let (acked_tx, mut acked) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Incoming::Publish(p))) => {
                        let _ = tx.send(p);
                    }
                    Ok(Event::Incoming(Incoming::SubAck(_))) => {
                        let _ = acked_tx.send(());
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
        });
        for filter in filters {
            client
                .subscribe(*filter, QoS::AtLeastOnce)
                .await
                .expect("peer subscribe");
        }
        for _ in filters {
            tokio::time::timeout(Duration::from_secs(5), acked.recv())
                .await
                .expect("peer subscription acknowledged in time");
        }
        Peer {
            client,
            messages,
            task,
        }
    }

    /// The next message, waiting at most `timeout`.
    pub async fn next(&mut self, timeout: Duration) -> Option<rumqttc::Publish> {
        tokio::time::timeout(timeout, self.messages.recv())
            .await
            .ok()
            .flatten()
    }

    /// Messages until one on `topic` arrives (included), at most `timeout` in all.
    pub async fn until(&mut self, topic: &str, timeout: Duration) -> Vec<rumqttc::Publish> {
        let deadline = Instant::now() + timeout;
        let mut seen = Vec::new();
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.next(left).await {
                Some(p) => {
                    let done = p.topic == topic;
                    seen.push(p);
                    if done {
                        return seen;
                    }
                }
                None => break,
            }
        }
        panic!("no message on {topic} within {timeout:?}; got {seen:?}");
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Publishes `topic` on `broker` from a fresh client and waits (at most `timeout`) until the
/// history plugin of `host` holds it.
pub fn reaches_history(
    rt: &tokio::runtime::Runtime,
    broker: &Mosquitto,
    host: &crate::Host,
    topic: &str,
    timeout: Duration,
) {
    let peer = rt.block_on(Peer::connect(broker.port, &[]));
    rt.block_on(async {
        peer.client
            .publish(topic, QoS::AtLeastOnce, false, "1")
            .await
            .expect("publish")
    });
    assert!(
        crate::wait_until(timeout, || host
            .get("/history/last")
            .json::<serde_json::Value>()
            .is_ok_and(|last| last.get(topic).is_some())),
        "{topic} never reached the history:\n{}",
        host.stderr.text()
    );
}
