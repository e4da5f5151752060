//! The bare-lapin baselines and the harness's own publisher; `rabbitmqctl` for recovery.

use std::{
    process::Command,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
use futures::StreamExt;
use lapin::{
    options::{
        BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
        ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
    },
    publisher_confirm::Confirmation,
    types::FieldTable,
    BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind,
};
use serde_json::{json, Value};
use tokio::sync::watch;

use crate::util::{quantile, unix_ns};

pub const BROKER: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
/// The host's default `basic.qos` prefetch; the baseline consumer uses the same.
pub const PREFETCH: u16 = 100;

pub async fn connect(name: &str) -> Result<Connection> {
    connect_to(BROKER, name).await
}

/// A named connection to the broker at `url`, at most 10 s.
pub async fn connect_to(url: &str, name: &str) -> Result<Connection> {
    let props = ConnectionProperties::default()
        .with_connection_name(name.into())
        .with_executor(tokio_executor_trait::Tokio::current())
        .with_reactor(tokio_reactor_trait::Tokio);
    tokio::time::timeout(Duration::from_secs(10), Connection::connect(url, props))
        .await
        .with_context(|| format!("connect to RabbitMQ at {} timed out", shown(url)))?
        .with_context(|| format!("connect to RabbitMQ at {} (guest/guest)", shown(url)))
}

/// An AMQP URL without its credentials, for a message.
fn shown(url: &str) -> &str {
    url.rsplit_once('@').map_or(url, |(_, rest)| rest)
}

/// Declares an exchange as brewblox-service 0.20.0 (and the host) do.
pub async fn declare_exchange(ch: &Channel, exchange: &str) -> Result<()> {
    ch.exchange_declare(
        exchange,
        ExchangeKind::Topic,
        ExchangeDeclareOptions {
            durable: false,
            auto_delete: true,
            ..ExchangeDeclareOptions::default()
        },
        FieldTable::default(),
    )
    .await?;
    Ok(())
}

/// Keeps an auto-delete exchange alive while the host's queue is gone (recovery): a queue of
/// ours bound with a key no message uses.
pub async fn anchor(ch: &Channel, exchange: &str) -> Result<()> {
    declare_exchange(ch, exchange).await?;
    bound_queue(ch, exchange, "never.matches.anything").await?;
    Ok(())
}

/// An exclusive, server-named queue bound to `exchange` with `routing` (the topology of a
/// subscription); returns its name.
async fn bound_queue(ch: &Channel, exchange: &str, routing: &str) -> Result<String> {
    let queue = ch
        .queue_declare(
            "",
            QueueDeclareOptions {
                exclusive: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await?;
    let queue = queue.name().as_str().to_owned();
    ch.queue_bind(
        &queue,
        exchange,
        routing,
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await?;
    Ok(queue)
}

/// A bench message: `t` is the send time (Unix ns), for latency.
pub fn message(seq: u64) -> Vec<u8> {
    serde_json::to_vec(&json!({"t": unix_ns(), "seq": seq})).expect("json")
}

/// The same size without `t`: the plugin keeps no latency sample for it (long RSS runs).
pub fn untimed_message(seq: u64) -> Vec<u8> {
    serde_json::to_vec(&json!({"u": unix_ns(), "seq": seq})).expect("json")
}

/// Publishes `n` messages, pipelined, on a confirm channel; returns once all are confirmed.
pub async fn publish_batch(ch: &Channel, exchange: &str, n: u64) -> Result<()> {
    publish_batch_with(ch, exchange, n, message).await
}

/// [`publish_batch`] with messages made by `make`.
pub async fn publish_batch_with(
    ch: &Channel,
    exchange: &str,
    n: u64,
    make: fn(u64) -> Vec<u8>,
) -> Result<()> {
    let mut confirms = Vec::with_capacity(n as usize);
    for seq in 0..n {
        confirms.push(
            ch.basic_publish(
                exchange,
                "bench.msg",
                BasicPublishOptions::default(),
                &make(seq),
                BasicProperties::default(),
            )
            .await?,
        );
    }
    for confirm in confirms {
        if !matches!(confirm.await?, Confirmation::Ack(_)) {
            bail!("broker did not ack a bench message");
        }
    }
    Ok(())
}

pub async fn confirm_channel(conn: &Connection) -> Result<Channel> {
    let ch = conn.create_channel().await?;
    ch.confirm_select(ConfirmSelectOptions::default()).await?;
    Ok(ch)
}

/// [`publish_sequential`] in a task of its own, as a service publishes (and as the plugin's
/// publishes run, in a task of the host's runtime), not on the harness's `block_on` thread,
/// which a waker reaches without the scheduler.
pub async fn publish_sequential_task(
    ch: &Channel,
    exchange: &str,
    n: u64,
    declare: bool,
) -> Result<Duration> {
    let (ch, exchange) = (ch.clone(), exchange.to_owned());
    tokio::spawn(async move { publish_sequential(&ch, &exchange, n, declare).await }).await?
}

/// Bare lapin, the plugin's strategy: publish, wait for the confirm, next. Declares the
/// exchange before each publish when `declare` (the SDK default), as the host does.
pub async fn publish_sequential(
    ch: &Channel,
    exchange: &str,
    n: u64,
    declare: bool,
) -> Result<Duration> {
    let start = Instant::now();
    for seq in 0..n {
        if declare {
            declare_exchange(ch, exchange).await?;
        }
        let confirm = ch
            .basic_publish(
                exchange,
                "bench.pub",
                BasicPublishOptions::default(),
                &message(seq),
                BasicProperties::default(),
            )
            .await?;
        if !matches!(confirm.await?, Confirmation::Ack(_)) {
            bail!("broker did not ack");
        }
    }
    Ok(start.elapsed())
}

/// Declares the named queue of a shared subscription as the host does (durable, neither
/// exclusive nor auto-delete, `x-queue-type: quorum`) and binds it to `exchange` with `#`.
pub async fn shared_queue(ch: &Channel, exchange: &str, queue: &str) -> Result<()> {
    let mut args = FieldTable::default();
    args.insert(
        "x-queue-type".into(),
        lapin::types::AMQPValue::LongString("quorum".into()),
    );
    let options = QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    };
    ch.queue_declare(queue, options, args).await?;
    ch.queue_bind(
        queue,
        exchange,
        "#",
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await?;
    Ok(())
}

/// The consumers of `queue` (which must exist), asked on a channel of its own: a passive
/// declare of a missing queue closes its channel.
pub async fn consumer_count(conn: &Connection, queue: &str) -> Result<u32> {
    let ch = conn.create_channel().await?;
    let options = QueueDeclareOptions {
        passive: true,
        ..QueueDeclareOptions::default()
    };
    let declared = ch
        .queue_declare(queue, options, FieldTable::default())
        .await?;
    let _ = ch.close(200, "counted").await;
    Ok(declared.consumer_count())
}

/// What the plugin's subscription does, in plain lapin on the same topology: exclusive
/// server-named queue bound with `#` (or, [`BareConsumer::start_shared`], the named quorum
/// queue of a shared subscription), prefetch 100, ack after the handler, JSON decoded.
pub struct BareConsumer {
    pub count: Arc<AtomicU64>,
    pub last_ns: Arc<AtomicU64>,
    latencies: Arc<Mutex<Vec<u64>>>,
    gate: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
    _conn: Connection,
}

impl BareConsumer {
    pub async fn start(exchange: &str) -> Result<BareConsumer> {
        let conn = connect("bench:bare-consumer").await?;
        let ch = conn.create_channel().await?;
        ch.basic_qos(PREFETCH, BasicQosOptions::default()).await?;
        declare_exchange(&ch, exchange).await?;
        let queue = bound_queue(&ch, exchange, "#").await?;
        Self::consume(conn, ch, &queue, 0).await
    }

    /// A consumer of the shared quorum queue `queue` bound to `exchange` (declared as the
    /// host declares a group's), doing `work` rounds of [`crate::shared_work::spin`] per message as
    /// the bench plugin's handler does with `--bench-work`.
    pub async fn start_shared(exchange: &str, queue: &str, work: u32) -> Result<BareConsumer> {
        let conn = connect("bench:bare-shared-consumer").await?;
        let ch = conn.create_channel().await?;
        ch.basic_qos(PREFETCH, BasicQosOptions::default()).await?;
        declare_exchange(&ch, exchange).await?;
        shared_queue(&ch, exchange, queue).await?;
        Self::consume(conn, ch, queue, work).await
    }

    async fn consume(conn: Connection, ch: Channel, queue: &str, work: u32) -> Result<Self> {
        let mut consumer = ch
            .basic_consume(
                queue,
                "",
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        let count = Arc::new(AtomicU64::new(0));
        let last_ns = Arc::new(AtomicU64::new(0));
        // At full size from the start, as the bench plugin's (no regrowth in the counts).
        let latencies = Arc::new(Mutex::new(Vec::with_capacity(1_000_000)));
        let gate = watch::channel(false).0;
        let task = {
            let (count, last_ns, latencies) = (count.clone(), last_ns.clone(), latencies.clone());
            let gate = gate.subscribe();
            let ring = Mutex::new(std::collections::VecDeque::with_capacity(65_536));
            tokio::spawn(async move {
                while let Some(Ok(delivery)) = consumer.next().await {
                    let mut gate = gate.clone();
                    let _ = gate.wait_for(|closed| !*closed).await;
                    let decoded = serde_json::from_slice::<Value>(&delivery.data);
                    if let (Ok(message), true) = (&decoded, work > 0) {
                        let seq = message.get("seq").and_then(Value::as_u64).unwrap_or(0);
                        crate::shared_work::spin(seq, work);
                    }
                    let now = unix_ns();
                    if let Ok(message) = decoded {
                        if let Some(sent) = message.get("t").and_then(Value::as_u64) {
                            let mut samples = latencies.lock().unwrap_or_else(|e| e.into_inner());
                            if samples.len() < 1_000_000 {
                                samples.push(now.saturating_sub(sent));
                            }
                        }
                    }
                    // The bench plugin's bookkeeping too, so both sides do the same work.
                    {
                        let mut ring = ring.lock().unwrap_or_else(|e| e.into_inner());
                        if ring.len() == 65_536 {
                            ring.pop_front();
                        }
                        ring.push_back(now);
                    }
                    last_ns.store(now, Ordering::SeqCst);
                    count.fetch_add(1, Ordering::SeqCst);
                    let _ = delivery.acker.ack(BasicAckOptions::default()).await;
                }
            })
        };
        Ok(BareConsumer {
            count,
            last_ns,
            latencies,
            gate,
            task,
            _conn: conn,
        })
    }

    pub fn set_gate(&self, closed: bool) {
        self.gate.send_replace(closed);
    }

    pub fn reset(&self) {
        self.count.store(0, Ordering::SeqCst);
        self.last_ns.store(0, Ordering::SeqCst);
        self.latencies
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }

    /// (p50, p99) in ns.
    pub fn latency(&self) -> (u64, u64) {
        let mut samples = self
            .latencies
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        samples.sort_unstable();
        (quantile(&samples, 0.5), quantile(&samples, 0.99))
    }
}

impl Drop for BareConsumer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Closes the broker-side connection(s) whose client-provided name is `name`, as an operator
/// would (`rabbitmqctl close_connection`); the broker app keeps running.
pub fn close_connection(name: &str) -> Result<usize> {
    let out = Command::new("timeout")
        .args([
            "30",
            "rabbitmqctl",
            "-q",
            "list_connections",
            "pid",
            "client_properties",
        ])
        .output()
        .context("run rabbitmqctl")?;
    if !out.status.success() {
        bail!(
            "rabbitmqctl list_connections: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    // client_properties holds {"connection_name","<name>"}.
    let needle = format!("{{\"connection_name\",\"{name}\"}}");
    let mut closed = 0;
    for line in text.lines().filter(|l| l.contains(&needle)) {
        let Some(pid) = line.split('\t').next() else {
            continue;
        };
        let status = Command::new("timeout")
            .args([
                "30",
                "rabbitmqctl",
                "-q",
                "close_connection",
                pid.trim(),
                "bench: recovery",
            ])
            .status()?;
        if status.success() {
            closed += 1;
        }
    }
    Ok(closed)
}

/// A message to `exchange` with `routing` every 5 ms (at most 10 minutes' worth), publish
/// errors ignored: the steady stream the recovery and failover rows measure silences in.
pub struct Ticker {
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Ticker {
    pub fn start(ch: Channel, exchange: &str, routing: &str) -> Ticker {
        let stop = tokio::sync::watch::channel(false).0;
        let (mut stopped, exchange, routing) =
            (stop.subscribe(), exchange.to_owned(), routing.to_owned());
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(5));
            for seq in 0..120_000u64 {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = stopped.changed() => break,
                }
                let _ = ch
                    .basic_publish(
                        &exchange,
                        &routing,
                        lapin::options::BasicPublishOptions::default(),
                        &message(seq),
                        lapin::BasicProperties::default(),
                    )
                    .await;
            }
        });
        Ticker { stop, task }
    }

    /// Stops the stream and waits for its task.
    pub async fn stop(self) {
        self.stop.send_replace(true);
        let _ = self.task.await;
    }
}

/// The baseline of the recovery and failover rows: a bare-lapin subscriber that, when its
/// connection is lost, reconnects at once (then every 10 ms) to the next broker of its list
/// and binds a fresh exclusive queue, as the host's listener does. Records when each message
/// arrived (Unix ns).
pub struct ReconnectingConsumer {
    pub name: String,
    arrivals: Arc<Mutex<Vec<u64>>>,
    task: tokio::task::JoinHandle<()>,
}

impl ReconnectingConsumer {
    pub async fn start(name: &str, exchange: &str, routing: &str) -> Result<Self> {
        Self::start_on(&[BROKER.to_owned()], name, exchange, routing).await
    }

    /// On the brokers of `urls`, the first first.
    pub async fn start_on(
        urls: &[String],
        name: &str,
        exchange: &str,
        routing: &str,
    ) -> Result<Self> {
        let arrivals: Arc<Mutex<Vec<u64>>> = Arc::default();
        let urls = urls.to_vec();
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let task = {
            let (name, exchange, routing) =
                (name.to_owned(), exchange.to_owned(), routing.to_owned());
            let arrivals = arrivals.clone();
            tokio::spawn(async move {
                let mut ready = Some(ready_tx);
                // Bounded: at most 10 minutes of reconnects at 10 ms.
                for attempt in 0..60_000 {
                    let url = &urls[attempt % urls.len().max(1)];
                    let Ok((conn, mut consumer)) = subscribe(url, &name, &exchange, &routing).await
                    else {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    };
                    if let Some(ready) = ready.take() {
                        let _ = ready.send(());
                    }
                    while let Some(Ok(_)) = consumer.next().await {
                        let mut arrivals = arrivals.lock().unwrap_or_else(|e| e.into_inner());
                        if arrivals.len() < 1_000_000 {
                            arrivals.push(unix_ns());
                        }
                    }
                    drop(conn);
                }
            })
        };
        tokio::time::timeout(Duration::from_secs(10), ready_rx)
            .await
            .context("bare reconnecting consumer: not subscribed within 10 s")?
            .context("bare reconnecting consumer ended")?;
        Ok(ReconnectingConsumer {
            name: name.to_owned(),
            arrivals,
            task,
        })
    }

    /// The longest silence (ms) between two arrivals that ended at or after `since_ns`, once
    /// a message arrived after `until_ns`; `None` until then.
    pub fn gap_ms(&self, since_ns: u64, until_ns: u64) -> Option<f64> {
        let arrivals = self.arrivals.lock().unwrap_or_else(|e| e.into_inner());
        if *arrivals.last()? <= until_ns {
            return None;
        }
        let start = arrivals
            .partition_point(|t| *t < since_ns)
            .saturating_sub(1);
        arrivals[start..]
            .windows(2)
            .map(|pair| pair[1] - pair[0])
            .max()
            .map(|gap| gap as f64 / 1e6)
    }
}

impl Drop for ReconnectingConsumer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One connection with a consumer on a fresh exclusive queue bound to `exchange`.
async fn subscribe(
    url: &str,
    name: &str,
    exchange: &str,
    routing: &str,
) -> Result<(Connection, lapin::Consumer)> {
    let conn = connect_to(url, name).await?;
    let ch = conn.create_channel().await?;
    ch.basic_qos(PREFETCH, BasicQosOptions::default()).await?;
    declare_exchange(&ch, exchange).await?;
    let queue = bound_queue(&ch, exchange, routing).await?;
    let consumer = ch
        .basic_consume(
            &queue,
            "",
            BasicConsumeOptions {
                no_ack: true,
                ..BasicConsumeOptions::default()
            },
            FieldTable::default(),
        )
        .await?;
    Ok((conn, consumer))
}
