//! An in-process HTTP/1.1 load generator (keep-alive connections, one request in flight on
//! each), bounded in time and optionally in request count; and a tiny JSON client (hyper) for
//! the bench routes.

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
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

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
    let mut stream = TcpStream::connect(spec.addr).await?;
    stream.set_nodelay(true)?;
    let request = format!("GET {} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", spec.path);
    let mut reader = ResponseReader::default();
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
        let status = tokio::time::timeout(Duration::from_secs(10), async {
            stream.write_all(request.as_bytes()).await?;
            reader.next(&mut stream).await
        })
        .await
        .context("request timed out")??;
        let elapsed = began.elapsed();
        if began >= measure_from || spec.limit.is_some() {
            if status == 200 {
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

/// Reads responses off a keep-alive connection: wrk-style, the least client work per request,
/// so that on a 2-core machine the server under test gets the CPU (a hyper client spent more
/// instructions per request than the server it measured). Needs `Content-Length` framing,
/// which every route measured here uses.
#[derive(Default)]
pub struct ResponseReader {
    buf: Vec<u8>,
}

impl ResponseReader {
    /// The status of the next whole response; its bytes are consumed.
    pub async fn next(&mut self, stream: &mut TcpStream) -> Result<u16> {
        loop {
            if let Some((status, len)) = Self::parse(&self.buf)? {
                if self.buf.len() >= len {
                    self.buf.drain(..len);
                    return Ok(status);
                }
            }
            if self.buf.len() > MAX_RESPONSE {
                bail!("response over {MAX_RESPONSE} bytes");
            }
            self.buf.reserve(READ_CHUNK);
            if stream.read_buf(&mut self.buf).await? == 0 {
                bail!("the server closed the connection");
            }
        }
    }

    /// `(status, whole length)` once the head is complete.
    fn parse(buf: &[u8]) -> Result<Option<(u16, usize)>> {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut response = httparse::Response::new(&mut headers);
        let head = match response.parse(buf)? {
            httparse::Status::Complete(head) => head,
            httparse::Status::Partial => return Ok(None),
        };
        let status = response.code.unwrap_or(0);
        let length = response
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case("content-length"))
            .and_then(|h| {
                std::str::from_utf8(h.value)
                    .ok()?
                    .trim()
                    .parse::<usize>()
                    .ok()
            })
            .context("a response without Content-Length (the load generator needs it)")?;
        Ok(Some((status, head + length)))
    }
}

const READ_CHUNK: usize = 4096;
const MAX_RESPONSE: usize = 1 << 20;

/// One keep-alive connection for repeated `GET`s of a JSON route (a poll): the host serves
/// each for the cost of a request, without a connection set up every time.
pub struct JsonPoller {
    sender: http1::SendRequest<Empty<Bytes>>,
}

impl JsonPoller {
    pub async fn connect(addr: SocketAddr) -> Result<JsonPoller> {
        let stream = tokio::time::timeout(Duration::from_secs(10), TcpStream::connect(addr))
            .await
            .context("connect timed out")??;
        let (sender, conn) = http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(conn);
        Ok(JsonPoller { sender })
    }

    pub async fn get(&mut self, path: &str) -> Result<serde_json::Value> {
        let fut = async {
            self.sender.ready().await?;
            let request = Request::builder()
                .uri(path)
                .header(header::HOST, "127.0.0.1")
                .body(Empty::<Bytes>::new())?;
            let response = self.sender.send_request(request).await?;
            let status = response.status();
            let body = response.into_body().collect().await?.to_bytes();
            if status != hyper::StatusCode::OK {
                bail!("GET {path}: {status}: {}", String::from_utf8_lossy(&body));
            }
            Ok(serde_json::from_slice(&body)?)
        };
        tokio::time::timeout(Duration::from_secs(30), fut)
            .await
            .with_context(|| format!("{path} timed out"))?
    }
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

#[cfg(test)]
mod tests {
    use super::ResponseReader;

    #[test]
    fn a_response_is_whole_once_its_body_is_there() {
        let head = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\ncontent-type: text/plain\r\n\r\n";
        let mut whole = head.to_vec();
        whole.extend_from_slice(b"hello");
        assert_eq!(ResponseReader::parse(&whole[..10]).unwrap(), None);
        assert_eq!(
            ResponseReader::parse(head).unwrap(),
            Some((200, whole.len()))
        );
        assert_eq!(
            ResponseReader::parse(&whole).unwrap(),
            Some((200, whole.len()))
        );
    }

    #[test]
    fn a_response_without_content_length_is_an_error() {
        let chunked = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n";
        let err = ResponseReader::parse(chunked).unwrap_err();
        assert!(err.to_string().contains("Content-Length"), "{err}");
        assert!(ResponseReader::parse(b"garbage\r\n\r\n").is_err());
    }
}
