//! The MQTT bench rows: a private Mosquitto (free loopback port, its own config) for the host
//! to connect to, and the bare-rumqttc baselines: a subscriber doing what the bench plugin's
//! subscription does, a publisher for the harness, and QoS 1 publishes awaited one by one.

use std::{
    net::TcpStream,
    path::Path,
    process::{Child, Command, Stdio},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
use rumqttc::{AsyncClient, Event, EventLoop, Incoming, MqttOptions, QoS};
use serde_json::Value;
use tokio::sync::mpsc;

use crate::util::{self, unix_ns};

/// A private Mosquitto, killed when dropped.
pub struct Broker {
    pub port: u16,
    child: Option<Child>,
    _dir: Option<tempfile::TempDir>,
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
            child: Some(child),
            _dir: Some(dir),
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
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
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

/// As the host: requests the client holds before its event loop takes them.
const REQUEST_CAPACITY: usize = 1024;
/// Bound on every single wait of the baselines (connect, acknowledgement, message).
const WAIT: Duration = Duration::from_secs(10);
/// A receiver that counts nothing for this long has lost messages (or stopped).
const STALL: Duration = Duration::from_secs(5);

/// A rumqttc client for `broker`, with the host's keepalive and request capacity.
fn client(broker: &Broker, id: &str) -> (AsyncClient, EventLoop) {
    let mut options = MqttOptions::new(
        format!("{id}-{}", std::process::id()),
        "127.0.0.1",
        broker.port,
    );
    options
        .set_keep_alive(Duration::from_secs(30))
        .set_request_channel_capacity(REQUEST_CAPACITY);
    AsyncClient::new(options, REQUEST_CAPACITY)
}

/// Drives `eventloop` in a task of its own, as a service does, handing every incoming packet
/// to `on_packet`; retries after a failure (bounded: the task is aborted with its owner).
fn drive(
    mut eventloop: EventLoop,
    mut on_packet: impl FnMut(Incoming) + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(packet)) => on_packet(packet),
                Ok(Event::Outgoing(_)) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    })
}

/// The next value on `rx`, waiting at most [`WAIT`].
async fn expect<T>(rx: &mut mpsc::UnboundedReceiver<T>, what: &str) -> Result<T> {
    match tokio::time::timeout(WAIT, rx.recv()).await {
        Ok(Some(value)) => Ok(value),
        Ok(None) => bail!("MQTT client ended while waiting for {what}"),
        Err(_) => bail!("no {what} from Mosquitto within {WAIT:?}"),
    }
}

/// What the bench plugin's MQTT subscription does, in plain rumqttc: a QoS 0 subscription,
/// each message decoded as JSON, a latency sample if it carries `t`, its receive time in a
/// ring, the counters. The event loop is polled in its own task and the work done there.
pub struct BareSubscriber {
    pub count: Arc<AtomicU64>,
    pub last_ns: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
    _client: AsyncClient,
}

impl BareSubscriber {
    /// Connects, subscribes to `filter` and waits for the broker's acknowledgement.
    pub async fn start(broker: &Broker, filter: &str) -> Result<BareSubscriber> {
        Self::start_with(broker, "bench-bare-sub", filter, QoS::AtMostOnce, 0).await
    }

    /// As [`BareSubscriber::start`], as client `id`, subscribed at `qos`, doing `work` rounds
    /// of [`crate::shared_work::spin`] per message as the bench plugin does with `--bench-work`:
    /// a `$share/<group>/<filter>` subscriber of the shared-subscription rows.
    pub async fn start_with(
        broker: &Broker,
        id: &str,
        filter: &str,
        qos: QoS,
        work: u32,
    ) -> Result<BareSubscriber> {
        let (client, eventloop) = client(broker, id);
        let count = Arc::new(AtomicU64::new(0));
        let last_ns = Arc::new(AtomicU64::new(0));
        let (acked_tx, mut acked) = mpsc::unbounded_channel();
        let task = {
            let (count, last_ns) = (count.clone(), last_ns.clone());
            // At full size from the start, as the bench plugin's (no regrowth in the counts).
            let mut latencies: Vec<u64> = Vec::with_capacity(1_000_000);
            let mut ring = std::collections::VecDeque::with_capacity(65_536);
            drive(eventloop, move |packet| match packet {
                Incoming::Publish(publish) => {
                    let message =
                        serde_json::from_slice::<Value>(&publish.payload).unwrap_or(Value::Null);
                    if work > 0 {
                        let seq = message.get("seq").and_then(Value::as_u64).unwrap_or(0);
                        crate::shared_work::spin(seq, work);
                    }
                    let now = unix_ns();
                    if let Some(sent) = message.get("t").and_then(Value::as_u64) {
                        if latencies.len() < 1_000_000 {
                            latencies.push(now.saturating_sub(sent));
                        }
                    }
                    if ring.len() == 65_536 {
                        ring.pop_front();
                    }
                    ring.push_back(now);
                    last_ns.store(now, Ordering::SeqCst);
                    count.fetch_add(1, Ordering::SeqCst);
                }
                Incoming::SubAck(_) => {
                    let _ = acked_tx.send(());
                }
                _ => {}
            })
        };
        client.subscribe(filter, qos).await?;
        expect(&mut acked, "SUBACK").await?;
        Ok(BareSubscriber {
            count,
            last_ns,
            task,
            _client: client,
        })
    }

    pub fn reset(&self) {
        self.count.store(0, Ordering::SeqCst);
        self.last_ns.store(0, Ordering::SeqCst);
    }
}

impl Drop for BareSubscriber {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A rumqttc client whose event loop runs in a task of its own and reports each PUBACK: the
/// harness's publisher, and the baseline of QoS 1 publishes awaited one by one.
pub struct Publisher {
    client: AsyncClient,
    acks: tokio::sync::Mutex<mpsc::UnboundedReceiver<u16>>,
    task: tokio::task::JoinHandle<()>,
}

impl Publisher {
    /// Connects and waits (bounded) for the CONNACK.
    pub async fn connect(broker: &Broker, id: &str) -> Result<Publisher> {
        let (client, eventloop) = client(broker, id);
        let (ack_tx, acks) = mpsc::unbounded_channel();
        let (conn_tx, mut connected) = mpsc::unbounded_channel();
        let task = drive(eventloop, move |packet| match packet {
            Incoming::PubAck(ack) => {
                let _ = ack_tx.send(ack.pkid);
            }
            Incoming::ConnAck(_) => {
                let _ = conn_tx.send(());
            }
            _ => {}
        });
        expect(&mut connected, "CONNACK").await?;
        Ok(Publisher {
            client,
            acks: tokio::sync::Mutex::new(acks),
            task,
        })
    }

    /// Publishes `n` QoS 0 messages made by `make` to `topic`, as fast as the client takes
    /// them, in windows: at most `2 × window` sent and not yet counted by the receiver
    /// (`received`, polled every millisecond while the window is full), so that neither the
    /// broker's queue nor the host's (1,000 messages each) ever overflows. Returns when the
    /// receiver counted all `n` (bounded by `timeout`).
    pub async fn publish_windowed<F, Fut>(
        &self,
        topic: &str,
        n: u64,
        window: u64,
        make: fn(u64) -> Vec<u8>,
        mut received: F,
        timeout: Duration,
    ) -> Result<()>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<u64>>,
    {
        let deadline = Instant::now() + timeout;
        let (mut sent, mut counted) = (0, 0);
        let mut progress = Instant::now();
        while counted < n {
            if Instant::now() >= deadline || progress.elapsed() > STALL {
                bail!(
                    "the receiver counted {counted} of {n} messages ({sent} sent; lost?) \
                     within {:?}",
                    progress.elapsed().min(timeout)
                );
            }
            if sent < n && sent < counted + window {
                for seq in sent..n.min(sent + window) {
                    self.client
                        .publish(topic, QoS::AtMostOnce, false, make(seq))
                        .await?;
                }
                sent = n.min(sent + window);
            } else {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            let now = received().await?;
            if now != counted {
                progress = Instant::now();
            }
            counted = now;
        }
        Ok(())
    }

    /// Bare rumqttc, the plugin's strategy: `n` QoS 1 publishes to `topic`, each awaited
    /// until its PUBACK, in a task of its own as a service publishes (and as the plugin's
    /// publishes run).
    pub async fn publish_qos1_sequential(
        self: &Arc<Self>,
        topic: &str,
        n: u64,
    ) -> Result<Duration> {
        let (me, topic) = (Arc::clone(self), topic.to_owned());
        tokio::spawn(async move {
            let mut acks = me.acks.lock().await;
            while acks.try_recv().is_ok() {}
            let start = Instant::now();
            for seq in 0..n {
                me.client
                    .publish(
                        topic.as_str(),
                        QoS::AtLeastOnce,
                        false,
                        crate::amqp::message(seq),
                    )
                    .await?;
                expect(&mut acks, "PUBACK").await?;
            }
            Ok(start.elapsed())
        })
        .await?
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A broker someone else started on 127.0.0.1:`port` (the callgrind scripts start theirs).
pub fn external(port: u16) -> Broker {
    Broker {
        port,
        child: None,
        _dir: None,
    }
}

/// The diagnostic subcommands the callgrind scripts run (`bench mqtt ...`), each bounded:
/// - `bare-publish N PORT`: `N` QoS 1 publishes to `bench/pub`, each awaited (row 3e's
///   baseline);
/// - `bare-subscribe N PORT`: a bare subscriber to `bench/bare/#` that exits after `N`
///   messages (row 3d's baseline);
/// - `send N PORT TOPIC RATE`: `N` QoS 0 messages to `TOPIC` at `RATE` per second.
pub async fn tool(args: &[String]) -> Result<()> {
    let number = |i: usize| -> Result<u64> {
        args.get(i)
            .and_then(|v| v.parse().ok())
            .with_context(|| format!("argument {} must be a number", i + 1))
    };
    let broker = external(u16::try_from(number(2)?)?);
    let n = number(1)?;
    match args.first().map(String::as_str) {
        Some("bare-publish") => {
            let publisher = Arc::new(Publisher::connect(&broker, "bench-cg-pub").await?);
            let elapsed = publisher.publish_qos1_sequential("bench/pub", n).await?;
            println!("{n} QoS 1 publishes in {elapsed:?}");
        }
        Some("bare-subscribe") => {
            let sub = BareSubscriber::start(&broker, "bench/bare/#").await?;
            println!("subscribed");
            let deadline = Instant::now() + Duration::from_secs(600);
            while sub.count.load(Ordering::SeqCst) < n {
                if Instant::now() >= deadline {
                    bail!("fewer than {n} messages within 600 s");
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        Some("send") => {
            let topic = args.get(3).context("send N PORT TOPIC RATE")?;
            let rate = number(4)?.max(1);
            let publisher = Arc::new(Publisher::connect(&broker, "bench-cg-send").await?);
            let mut tick = tokio::time::interval(Duration::from_nanos(1_000_000_000 / rate));
            for seq in 0..n {
                tick.tick().await;
                publisher
                    .client
                    .publish(topic.as_str(), QoS::AtMostOnce, false, untimed(seq))
                    .await?;
            }
            // QoS 0 leaves when the event loop has written it: a last QoS 1 round trip
            // behind it makes sure it has.
            publisher.publish_qos1_sequential("bench/flush", 1).await?;
        }
        _ => bail!("bench mqtt bare-publish|bare-subscribe N PORT | send N PORT TOPIC RATE"),
    }
    Ok(())
}

fn untimed(seq: u64) -> Vec<u8> {
    crate::amqp::untimed_message(seq)
}
