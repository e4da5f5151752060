//! Row 8: a reload under load. Clients keep requesting a plugin route — some on keep-alive
//! connections, one opening a connection per request — first steadily, then while the host
//! is sent SIGHUP several times; every request that fails (refused, reset, timed out, not
//! 200) counts. The longest single request during the reloads (the stall a client sees) is
//! set against the steady p99 of the same run.

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use anyhow::{bail, Result};
use hyper::Method;
use tokio::{io::AsyncWriteExt, net::TcpStream, sync::watch};

use crate::{
    load::{self, ResponseReader},
    util::quantile,
};

/// What one phase saw.
#[derive(Debug, Default)]
pub struct Phase {
    pub ok: u64,
    pub failed: u64,
    /// Every request's start and latency in ns (in no particular order): for the quantiles,
    /// the longest, and the ones a reload overlapped.
    pub timed: Vec<(Instant, u64)>,
    /// Every latency, sorted, in ns: made from `timed` by [`Phase::finish`].
    pub latencies: Vec<u64>,
}

impl Phase {
    fn merge(&mut self, other: Phase) {
        self.ok += other.ok;
        self.failed += other.failed;
        self.timed.extend(other.timed);
    }

    /// Sorts the latencies, once every client's requests are in.
    fn finish(&mut self) {
        self.latencies = self.timed.iter().map(|(_, ns)| *ns).collect();
        self.latencies.sort_unstable();
    }

    /// When the longest request began, and its latency in ns.
    pub fn longest(&self) -> Option<(Instant, u64)> {
        self.timed.iter().copied().max_by_key(|(_, ns)| *ns)
    }

    pub fn p99_ms(&self) -> f64 {
        quantile(&self.latencies, 0.99) as f64 / 1e6
    }

    pub fn max_ms(&self) -> f64 {
        self.latencies.last().copied().unwrap_or(0) as f64 / 1e6
    }
}

/// The whole measurement.
pub struct Outcome {
    pub steady: Phase,
    pub reloading: Phase,
    pub reloads: u64,
    /// When each SIGHUP was sent, and when its reload was seen done.
    pub signalled: Vec<(Instant, Instant)>,
}

impl Outcome {
    /// The longest request that a reload overlapped (it began before the reload was seen
    /// done and ended after its SIGHUP), in ms: the stall a reload costs a client, told
    /// apart from the machine's own stalls between reloads.
    pub fn longest_overlapping_a_reload_ms(&self) -> f64 {
        let overlaps = |began: Instant, ns: u64| {
            let ended = began + Duration::from_nanos(ns);
            self.signalled
                .iter()
                .any(|(sent, done)| began <= *done && ended >= *sent)
        };
        let longest = self
            .reloading
            .timed
            .iter()
            .filter(|(began, ns)| overlaps(*began, *ns))
            .map(|(_, ns)| *ns)
            .max()
            .unwrap_or(0);
        longest as f64 / 1e6
    }

    /// Where the longest request of the reloads fell: how long after the last SIGHUP
    /// before it began, and how long that reload took (as the health polls saw it), in ms.
    pub fn longest_in_reload(&self) -> Option<(f64, f64)> {
        let (began, _) = self.reloading.longest()?;
        let (sent, done) = self
            .signalled
            .iter()
            .rev()
            .find(|(sent, _)| *sent <= began)?;
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        Some((ms(began - *sent), ms(*done - *sent)))
    }
}

/// One request on `stream`; its status.
async fn request(stream: &mut TcpStream, reader: &mut ResponseReader, head: &[u8]) -> Result<u16> {
    tokio::time::timeout(Duration::from_secs(10), async {
        stream.write_all(head).await?;
        reader.next(stream).await
    })
    .await?
}

/// Requests until told to stop (at most 10 minutes); `fresh` opens a connection per request.
async fn client(addr: SocketAddr, path: String, fresh: bool, stop: watch::Receiver<bool>) -> Phase {
    let head = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").into_bytes();
    let mut phase = Phase::default();
    let mut connection: Option<(TcpStream, ResponseReader)> = None;
    let deadline = Instant::now() + Duration::from_secs(600);
    while !*stop.borrow() && Instant::now() < deadline {
        let began = Instant::now();
        let answer = async {
            if connection.is_none() {
                let stream = TcpStream::connect(addr).await?;
                stream.set_nodelay(true)?;
                connection = Some((stream, ResponseReader::default()));
            }
            let Some((stream, reader)) = connection.as_mut() else {
                bail!("no connection");
            };
            request(stream, reader, &head).await
        }
        .await;
        match answer {
            Ok(200) => {
                phase.ok += 1;
                phase.timed.push((began, began.elapsed().as_nanos() as u64));
            }
            _ => {
                phase.failed += 1;
                connection = None;
            }
        }
        if fresh {
            connection = None;
        }
    }
    phase
}

/// Runs `keep_alive` keep-alive clients and one fresh-connection client while `during` runs.
async fn with_load<F: std::future::Future<Output = Result<u64>>>(
    addr: SocketAddr,
    path: &str,
    keep_alive: usize,
    during: F,
) -> Result<(Phase, u64)> {
    let (stop_tx, stop_rx) = watch::channel(false);
    let clients: Vec<_> = (0..=keep_alive)
        .map(|index| tokio::spawn(client(addr, path.to_owned(), index == 0, stop_rx.clone())))
        .collect();
    let result = during.await;
    stop_tx.send_replace(true);
    let mut phase = Phase::default();
    for client in clients {
        phase.merge(client.await?);
    }
    phase.finish();
    Ok((phase, result?))
}

async fn succeeded_reloads(addr: SocketAddr, health: &str) -> Result<u64> {
    let report = load::json(addr, Method::GET, health).await?;
    Ok(report["reload"]["succeeded"].as_u64().unwrap_or(0))
}

/// Steady load for `phase`, then the same load while the host at `pid` reloads `reloads`
/// times (one after the other, each waited for through its health report).
pub async fn measure(
    addr: SocketAddr,
    pid: u32,
    route: &str,
    health: &str,
    phase: Duration,
    reloads: u64,
) -> Result<Outcome> {
    let (steady, _) = with_load(addr, route, 4, async {
        tokio::time::sleep(phase).await;
        Ok(0)
    })
    .await?;
    let before = succeeded_reloads(addr, health).await?;
    let mut signalled = Vec::new();
    let (reloading, done) = with_load(addr, route, 4, async {
        tokio::time::sleep(phase / 4).await;
        for n in 1..=reloads {
            let sent = Instant::now();
            // SAFETY: kill(2) on the bench's own child process.
            unsafe { libc::kill(pid as i32, libc::SIGHUP) };
            let deadline = Instant::now() + Duration::from_secs(30);
            while succeeded_reloads(addr, health).await? < before + n {
                if Instant::now() > deadline {
                    bail!("reload {n} did not finish within 30 s");
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            signalled.push((sent, Instant::now()));
        }
        tokio::time::sleep(phase / 4).await;
        Ok(succeeded_reloads(addr, health).await? - before)
    })
    .await?;
    Ok(Outcome {
        steady,
        reloading,
        reloads: done,
        signalled,
    })
}
