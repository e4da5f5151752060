//! An in-process HTTP/1.1 load generator (hyper client, keep-alive connections), bounded in
//! time and optionally in request count; and a tiny JSON client for the bench routes.

use std::{
    net::SocketAddr,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::{client::conn::http1, header, Method, Request};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::util::quantile;

#[derive(Debug, Clone)]
pub struct LoadSpec {
    pub addr: SocketAddr,
    pub path: String,
    pub connections: usize,
    /// Requests during warm-up are not counted.
    pub warmup: Duration,
    pub duration: Duration,
    /// Stop once this many requests were sent (all connections together).
    pub limit: Option<u64>,
    /// Keep every latency (off for the long RSS runs).
    pub latencies: bool,
}

#[derive(Debug, Clone, Default)]
pub struct LoadResult {
    pub requests: u64,
    pub errors: u64,
    pub seconds: f64,
    pub p50_us: f64,
    pub p99_us: f64,
}

impl LoadResult {
    pub fn rps(&self) -> f64 {
        self.requests as f64 / self.seconds
    }
}

struct ConnOutcome {
    ok: u64,
    errors: u64,
    latencies: Vec<u64>,
}

pub async fn run(spec: &LoadSpec) -> Result<LoadResult> {
    let start = Instant::now();
    let measure_from = start + spec.warmup;
    let deadline = measure_from + spec.duration;
    let sent = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..spec.connections {
        let spec = spec.clone();
        let sent = Arc::clone(&sent);
        tasks.push(tokio::spawn(async move {
            connection(&spec, measure_from, deadline, &sent).await
        }));
    }
    let mut total = ConnOutcome {
        ok: 0,
        errors: 0,
        latencies: Vec::new(),
    };
    for task in tasks {
        let outcome = task.await.context("load task")??;
        total.ok += outcome.ok;
        total.errors += outcome.errors;
        total.latencies.extend(outcome.latencies);
    }
    let end = Instant::now()
        .min(deadline)
        .max(measure_from + Duration::from_millis(1));
    total.latencies.sort_unstable();
    Ok(LoadResult {
        requests: total.ok,
        errors: total.errors,
        seconds: (end - measure_from).as_secs_f64(),
        p50_us: quantile(&total.latencies, 0.50) as f64 / 1e3,
        p99_us: quantile(&total.latencies, 0.99) as f64 / 1e3,
    })
}

async fn connection(
    spec: &LoadSpec,
    measure_from: Instant,
    deadline: Instant,
    sent: &AtomicU64,
) -> Result<ConnOutcome> {
    let stream = TcpStream::connect(spec.addr).await?;
    stream.set_nodelay(true)?;
    let (mut sender, conn) = http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let mut outcome = ConnOutcome {
        ok: 0,
        errors: 0,
        latencies: Vec::with_capacity(if spec.latencies { 1 << 14 } else { 0 }),
    };
    loop {
        let began = Instant::now();
        if began >= deadline {
            break;
        }
        if let Some(limit) = spec.limit {
            if sent.fetch_add(1, Ordering::Relaxed) >= limit {
                break;
            }
        }
        let request = Request::builder()
            .method(Method::GET)
            .uri(spec.path.as_str())
            .header(header::HOST, "127.0.0.1")
            .body(Empty::<Bytes>::new())?;
        let response = tokio::time::timeout(Duration::from_secs(10), async {
            let response = sender.send_request(request).await?;
            let status = response.status();
            response.into_body().collect().await?;
            Ok::<_, hyper::Error>(status)
        })
        .await
        .context("request timed out")??;
        let elapsed = began.elapsed();
        if began >= measure_from || spec.limit.is_some() {
            if status_is_ok(response) {
                outcome.ok += 1;
                if spec.latencies {
                    outcome.latencies.push(elapsed.as_nanos() as u64);
                }
            } else {
                outcome.errors += 1;
            }
        }
    }
    Ok(outcome)
}

fn status_is_ok(status: hyper::StatusCode) -> bool {
    status == hyper::StatusCode::OK
}

/// One request on a fresh connection; the JSON body of a 200.
pub async fn json(addr: SocketAddr, method: Method, path: &str) -> Result<serde_json::Value> {
    let fut = async {
        let stream = TcpStream::connect(addr).await?;
        let (mut sender, conn) = http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(conn);
        let request = Request::builder()
            .method(method.clone())
            .uri(path)
            .header(header::HOST, "127.0.0.1")
            .body(Empty::<Bytes>::new())?;
        let response = sender.send_request(request).await?;
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        if status != hyper::StatusCode::OK {
            bail!(
                "{method} {path}: {status}: {}",
                String::from_utf8_lossy(&body)
            );
        }
        Ok(serde_json::from_slice(&body)?)
    };
    tokio::time::timeout(Duration::from_secs(600), fut)
        .await
        .with_context(|| format!("{path} timed out"))?
}
