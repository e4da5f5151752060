//! The other side of the eventbus for tests: an independent lapin client, `rabbitmqctl` for
//! inspection and fault injection, and bounded waits. Used by the host's `bus_*` tests and,
//! through `tests/src/amqp.rs`, by the integration tests. Only ever talks to 127.0.0.1.

use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

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
        declare_like_original_on(&self.ch, exchange, kind).await;
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
/// Declares `exchange` on `ch` as brewblox-service 0.20.0 does (non-durable, auto-delete), as
/// the host does too.
pub async fn declare_like_original_on(
    ch: &lapin::Channel,
    exchange: &str,
    kind: lapin::ExchangeKind,
) {
    ch.exchange_declare(
        exchange,
        kind,
        ExchangeDeclareOptions {
            auto_delete: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .expect("exchange_declare");
}

pub async fn ctl(args: &[&str]) -> String {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    tokio::task::spawn_blocking(move || ctl_blocking(&args))
        .await
        .expect("spawn_blocking")
}

/// [`ctl`] on the calling thread (for guards, which also run in `Drop`).
pub fn ctl_blocking(args: &[String]) -> String {
    let out = Command::new("rabbitmqctl")
        .arg("-q")
        .args(args)
        .output()
        .expect("run rabbitmqctl");
    assert!(
        out.status.success(),
        "rabbitmqctl {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Sets `rabbit` application settings (read by channels opened from then on) and puts the old
/// values back when dropped, also when the test fails. Broker-wide: a test that lowers one
/// where other tests could trip on it belongs in a binary of its own.
pub struct BrokerSettings {
    old: Vec<(&'static str, String)>,
}

impl BrokerSettings {
    pub fn set(settings: &[(&'static str, u64)]) -> Self {
        let eval = |expr: String| ctl_blocking(&["eval".to_owned(), expr]);
        let mut old = Vec::new();
        for (key, value) in settings {
            let was = eval(format!(
                "{{ok, V}} = application:get_env(rabbit, {key}), V."
            ));
            let was = was.trim().to_owned();
            assert!(was.parse::<u64>().is_ok(), "{key} is {was:?}");
            eval(format!("application:set_env(rabbit, {key}, {value})."));
            old.push((*key, was));
        }
        BrokerSettings { old }
    }
}

impl Drop for BrokerSettings {
    fn drop(&mut self) {
        for (key, was) in &self.old {
            ctl_blocking(&[
                "eval".to_owned(),
                format!("application:set_env(rabbit, {key}, {was})."),
            ]);
        }
    }
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

impl Peer {
    /// Whether `exchange` exists (a passive declare, on a throwaway channel because a missing
    /// exchange closes the channel).
    pub async fn exchange_exists(&self, exchange: &str) -> bool {
        let Ok(ch) = self.conn.create_channel().await else {
            return false;
        };
        let found = ch
            .exchange_declare(
                exchange,
                lapin::ExchangeKind::Topic,
                ExchangeDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .is_ok();
        if found {
            let _ = ch.close(200, "done").await;
        }
        found
    }
}

/// A [`Peer`] for synchronous tests (the HTTP client of the harness is blocking): it owns a
/// runtime and every call blocks, bounded by the peer's own timeouts.
pub struct SyncPeer {
    runtime: tokio::runtime::Runtime,
    peer: Option<Peer>,
}

/// Deliveries of a [`SyncPeer::consume`].
pub struct SyncDeliveries<'a> {
    runtime: &'a tokio::runtime::Runtime,
    rx: mpsc::UnboundedReceiver<lapin::message::Delivery>,
}

impl SyncDeliveries<'_> {
    /// The next delivery within `timeout`, or panic with `what`.
    pub fn recv(&mut self, timeout: Duration, what: &str) -> lapin::message::Delivery {
        self.runtime.block_on(recv(&mut self.rx, timeout, what))
    }
}

impl SyncPeer {
    pub fn connect() -> SyncPeer {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("peer runtime");
        let peer = runtime.block_on(Peer::connect());
        SyncPeer {
            runtime,
            peer: Some(peer),
        }
    }

    fn peer(&self) -> &Peer {
        self.peer.as_ref().expect("peer open until drop")
    }

    /// Runs any async helper of this module (`list`, `connections`, …) to completion.
    pub fn block_on<F: std::future::Future>(&self, future: F) -> F::Output {
        self.runtime.block_on(future)
    }

    /// Publishes raw bytes, as a Python service would (no properties).
    pub fn publish(&self, exchange: &str, routing: &str, body: &[u8]) {
        self.runtime
            .block_on(self.peer().publish(exchange, routing, body));
    }

    /// Publishes `message` as JSON.
    pub fn publish_json(&self, exchange: &str, routing: &str, message: &serde_json::Value) {
        let body = serde_json::to_vec(message).expect("JSON");
        self.publish(exchange, routing, &body);
    }

    /// Declares like brewblox-service 0.20.0 (non-durable, auto-delete); panics with
    /// PRECONDITION_FAILED if the exchange exists with other properties.
    pub fn declare_like_original(&self, exchange: &str, kind: lapin::ExchangeKind) {
        self.runtime
            .block_on(self.peer().declare_like_original(exchange, kind));
    }

    pub fn exchange_exists(&self, exchange: &str) -> bool {
        self.runtime.block_on(self.peer().exchange_exists(exchange))
    }

    pub fn queue_exists(&self, queue: &str) -> bool {
        self.runtime.block_on(self.peer().queue_exists(queue))
    }

    pub fn delete_exchange(&self, exchange: &str) {
        self.runtime.block_on(self.peer().delete_exchange(exchange));
    }

    /// An exclusive queue bound to `exchange` with `routing`, consumed.
    pub fn consume(&self, exchange: &str, routing: &str) -> SyncDeliveries<'_> {
        let rx = self
            .runtime
            .block_on(self.peer().consume(exchange, routing));
        SyncDeliveries {
            runtime: &self.runtime,
            rx,
        }
    }
}

impl Drop for SyncPeer {
    fn drop(&mut self) {
        if let Some(peer) = self.peer.take() {
            self.runtime.block_on(peer.close());
        }
    }
}
