//! Shared helpers for the `bus_*` integration tests: a real broker on 127.0.0.1:5672, an
//! independent lapin client as the other side, `rabbitmqctl` for inspection and fault
//! injection, sinks that forward into channels, and a global log capture.
//!
//! Every wait here is bounded.
#![allow(dead_code)]

use std::io::Write;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use brewblox_host::bus::{BusConfig, MessageSink, Subscription};
use futures::future::BoxFuture;
use futures::StreamExt;
use lapin::options::{
    BasicConsumeOptions, BasicPublishOptions, ExchangeDeclareOptions, ExchangeDeleteOptions,
    QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use tokio::sync::mpsc;

pub const BROKER: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
pub const WAIT: Duration = Duration::from_secs(10);

/// A name nobody else uses: tests run in parallel and share the broker.
pub fn unique(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{prefix}-{}-{nanos:x}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Config for tests: loopback broker, fast reconnects, a connection name we can find.
pub fn test_config(tag: &str) -> BusConfig {
    BusConfig {
        host: "127.0.0.1".into(),
        port: 5672,
        reconnect_interval: Duration::from_millis(100),
        heartbeat: 5,
        connection_name: unique(&format!("bus-test-{tag}")),
        publish_timeout: Duration::from_secs(5),
        connect_timeout: Duration::from_secs(5),
        ..BusConfig::default()
    }
}

// ---------------------------------------------------------------- log capture

#[derive(Clone, Default)]
pub struct LogBuf(Arc<Mutex<Vec<u8>>>);

impl Write for LogBuf {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if std::env::var_os("BUS_TEST_LOG").is_some() {
            let _ = std::io::stderr().write_all(buf);
        }
        match self.0.lock() {
            Ok(mut v) => v.extend_from_slice(buf),
            Err(p) => p.into_inner().extend_from_slice(buf),
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Install (once per test binary) a global subscriber writing into a buffer; return it.
pub fn logs() -> LogBuf {
    static BUF: OnceLock<LogBuf> = OnceLock::new();
    BUF.get_or_init(|| {
        let buf = LogBuf::default();
        let writer = buf.clone();
        let _ = tracing_subscriber::fmt()
            .with_env_filter("debug,lapin=warn,amq_protocol=warn")
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .try_init();
        buf
    })
    .clone()
}

impl LogBuf {
    pub fn text(&self) -> String {
        let v = match self.0.lock() {
            Ok(v) => v.clone(),
            Err(p) => p.into_inner().clone(),
        };
        String::from_utf8_lossy(&v).into_owned()
    }
    pub fn count(&self, needle: &str) -> usize {
        self.text().lines().filter(|l| l.contains(needle)).count()
    }
    /// Count lines containing all needles.
    pub fn count_all(&self, needles: &[&str]) -> usize {
        self.text()
            .lines()
            .filter(|l| needles.iter().all(|n| l.contains(n)))
            .count()
    }
}

// ---------------------------------------------------------------- sinks

#[derive(Debug, Clone, PartialEq)]
pub struct Got {
    pub sub: String,
    pub routing_key: String,
    pub body: Vec<u8>,
}

/// Forwards every message; optional delay per message; optional JSON decoding that fails
/// like the host glue does (Err for non-JSON or empty bodies).
pub struct ChanSink {
    tx: mpsc::UnboundedSender<Got>,
    delay: Duration,
    json: bool,
    started: Option<mpsc::UnboundedSender<()>>,
}

impl ChanSink {
    pub fn new() -> (Arc<Self>, mpsc::UnboundedReceiver<Got>) {
        Self::build(Duration::ZERO, false, None)
    }
    pub fn json() -> (Arc<Self>, mpsc::UnboundedReceiver<Got>) {
        Self::build(Duration::ZERO, true, None)
    }
    /// Each message: signal `started`, sleep `delay`, then forward.
    pub fn slow(
        delay: Duration,
    ) -> (
        Arc<Self>,
        mpsc::UnboundedReceiver<Got>,
        mpsc::UnboundedReceiver<()>,
    ) {
        let (stx, srx) = mpsc::unbounded_channel();
        let (sink, rx) = Self::build(delay, false, Some(stx));
        (sink, rx, srx)
    }
    fn build(
        delay: Duration,
        json: bool,
        started: Option<mpsc::UnboundedSender<()>>,
    ) -> (Arc<Self>, mpsc::UnboundedReceiver<Got>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (
            Arc::new(ChanSink {
                tx,
                delay,
                json,
                started,
            }),
            rx,
        )
    }
}

impl MessageSink for ChanSink {
    fn deliver(
        &self,
        sub: &Subscription,
        routing_key: &str,
        body: Vec<u8>,
    ) -> BoxFuture<'static, Result<(), String>> {
        let got = Got {
            sub: sub.to_string(),
            routing_key: routing_key.to_string(),
            body,
        };
        let tx = self.tx.clone();
        let delay = self.delay;
        let json = self.json;
        let started = self.started.clone();
        Box::pin(async move {
            if json {
                serde_json::from_slice::<serde_json::Value>(&got.body)
                    .map_err(|e| e.to_string())?;
            }
            if let Some(s) = started {
                let _ = s.send(());
            }
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            tx.send(got).map_err(|_| "test receiver gone".to_string())
        })
    }
}

/// Next message within `timeout`, or panic with `what`.
pub async fn recv<T>(rx: &mut mpsc::UnboundedReceiver<T>, timeout: Duration, what: &str) -> T {
    match tokio::time::timeout(timeout, rx.recv()).await {
        Ok(Some(v)) => v,
        Ok(None) => panic!("{what}: channel closed"),
        Err(_) => panic!("{what}: nothing within {timeout:?}"),
    }
}

/// Assert nothing is queued right now (use after a sentinel proved ordering).
pub fn assert_empty<T: std::fmt::Debug>(rx: &mut mpsc::UnboundedReceiver<T>, what: &str) {
    if let Ok(v) = rx.try_recv() {
        panic!("{what}: unexpected message {v:?}");
    }
}

// ---------------------------------------------------------------- the other side

/// An independent AMQP client (plain lapin, not the bus).
pub struct Peer {
    pub conn: Connection,
    pub ch: Channel,
}

impl Peer {
    pub async fn connect() -> Peer {
        let props = ConnectionProperties::default()
            .with_connection_name(unique("bus-test-peer").into())
            .with_executor(tokio_executor_trait::Tokio::current())
            .with_reactor(tokio_reactor_trait::Tokio);
        let conn = tokio::time::timeout(WAIT, Connection::connect(BROKER, props))
            .await
            .expect("peer connect timeout")
            .expect("peer connect");
        let ch = conn.create_channel().await.expect("peer channel");
        Peer { conn, ch }
    }

    /// A fresh channel (after a channel error closed the previous one).
    pub async fn reopen(&mut self) {
        self.ch = self.conn.create_channel().await.expect("peer channel");
    }

    /// Declare like brewblox-service 0.20.0 does (non-durable, auto-delete).
    pub async fn declare_like_original(&self, exchange: &str, kind: lapin::ExchangeKind) {
        self.ch
            .exchange_declare(
                exchange,
                kind,
                ExchangeDeclareOptions {
                    auto_delete: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .expect("peer exchange_declare");
    }

    pub async fn publish(&self, exchange: &str, routing: &str, body: &[u8]) {
        self.ch
            .basic_publish(
                exchange,
                routing,
                BasicPublishOptions::default(),
                body,
                BasicProperties::default(),
            )
            .await
            .expect("peer publish");
    }

    /// An exclusive server-named queue bound to `exchange` with `routing`, consumed (auto-ack)
    /// into a channel of deliveries.
    pub async fn consume(
        &self,
        exchange: &str,
        routing: &str,
    ) -> mpsc::UnboundedReceiver<lapin::message::Delivery> {
        let q = self
            .ch
            .queue_declare(
                "",
                QueueDeclareOptions {
                    exclusive: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .expect("peer queue_declare");
        self.ch
            .queue_bind(
                q.name().as_str(),
                exchange,
                routing,
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .expect("peer queue_bind");
        let mut consumer = self
            .ch
            .basic_consume(
                q.name().as_str(),
                "",
                BasicConsumeOptions {
                    no_ack: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .expect("peer basic_consume");
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Some(Ok(d)) = consumer.next().await {
                if tx.send(d).is_err() {
                    break;
                }
            }
        });
        rx
    }

    /// Does a queue exist? (passive declare on a throwaway channel).
    pub async fn queue_exists(&self, queue: &str) -> bool {
        let ch = self.conn.create_channel().await.expect("peer channel");
        let r = ch
            .queue_declare(
                queue,
                QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await;
        match r {
            Ok(_) => true,
            Err(lapin::Error::ProtocolError(e)) if e.get_id() == 405 => true, // exclusive to another connection
            Err(_) => false,
        }
    }

    pub async fn delete_exchange(&self, exchange: &str) {
        if let Ok(ch) = self.conn.create_channel().await {
            let _ = ch
                .exchange_delete(exchange, ExchangeDeleteOptions::default())
                .await;
        }
    }

    pub async fn close(self) {
        let _ = tokio::time::timeout(Duration::from_secs(2), self.conn.close(200, "bye")).await;
    }
}

// ---------------------------------------------------------------- rabbitmqctl

/// Run `rabbitmqctl -q --no-table-headers <args>` off the async threads; returns stdout.
pub async fn ctl(args: &[&str]) -> String {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let shown = args.join(" ");
    let out = tokio::task::spawn_blocking(move || {
        Command::new("rabbitmqctl").arg("-q").args(&args).output()
    })
    .await
    .expect("spawn_blocking")
    .expect("run rabbitmqctl");
    assert!(
        out.status.success(),
        "rabbitmqctl {shown} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `list_<what> --no-table-headers cols…` as rows of columns.
pub async fn list(what: &str, cols: &[&str]) -> Vec<Vec<String>> {
    let cmd = format!("list_{what}");
    let mut args = vec![cmd.as_str(), "--no-table-headers"];
    args.extend_from_slice(cols);
    ctl(&args)
        .await
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.split('\t').map(|s| s.to_string()).collect())
        .collect()
}

/// (pid, connection_name, channels) of connections whose client property `connection_name`
/// starts with `prefix`. (The `name` column is "ip:port -> ip:port"; the user-provided name
/// lives in `client_properties`.)
pub async fn connections(prefix: &str) -> Vec<(String, String, u32)> {
    list("connections", &["pid", "channels", "client_properties"])
        .await
        .into_iter()
        .filter_map(|r| {
            let props = r.get(2)?;
            let marker = "{\"connection_name\",\"";
            let start = props.find(marker)? + marker.len();
            let len = props[start..].find('"')?;
            let name = props[start..start + len].to_string();
            let channels = r[1].trim().parse().unwrap_or(u32::MAX);
            name.starts_with(prefix)
                .then(|| (r[0].clone(), name, channels))
        })
        .collect()
}

/// Close the one connection called exactly `name` (like the Java client's tests do).
pub async fn close_connection(name: &str) {
    let conns = connections(name).await;
    let found: Vec<_> = conns.iter().filter(|c| c.1 == name).collect();
    assert_eq!(
        found.len(),
        1,
        "expected one connection named {name}: {conns:?}"
    );
    ctl(&["close_connection", &found[0].0, "fault-test"]).await;
}

/// Poll (bounded) until `f` returns Some.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not within {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
