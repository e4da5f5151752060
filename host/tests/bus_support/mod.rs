//! Shared helpers for the `bus_*` integration tests: a real broker on 127.0.0.1:5672, an
//! independent lapin client as the other side, `rabbitmqctl` for inspection and fault
//! injection, sinks that forward into channels, and a global log capture.
//!
//! Every wait here is bounded.
#![allow(dead_code)]

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use brewblox_host::bus::{BusConfig, Sink, Subscription};
pub use brewblox_host::metrics::bus::BusMetrics;

pub mod amqp;
pub use amqp::*;
use brewblox_host::eventbus::{Delivery, DeliveryError, Redelivery};
use tokio::sync::mpsc;

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

impl Sink for ChanSink {
    fn deliver(
        &self,
        sub: &Subscription,
        routing_key: &str,
        body: bytes::Bytes,
        _: Redelivery,
    ) -> Delivery {
        let got = Got {
            sub: sub.to_string(),
            routing_key: routing_key.to_string(),
            body: body.to_vec(),
        };
        let tx = self.tx.clone();
        let delay = self.delay;
        let json = self.json;
        let started = self.started.clone();
        Delivery::Boxed(Box::pin(async move {
            if json {
                serde_json::from_slice::<serde_json::Value>(&got.body)
                    .map_err(|e| DeliveryError::Failed(e.to_string()))?;
            }
            if let Some(s) = started {
                let _ = s.send(());
            }
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            tx.send(got)
                .map_err(|_| DeliveryError::Failed("test receiver gone".into()))
        }))
    }
}
