//! The HTTP server: one listening socket for the life of the process, serving whichever app
//! is current.
//!
//! A reload swaps the current [`Served`] app; the socket never closes, so no client is
//! refused. Each request takes the app that is current when its head arrives and finishes on
//! it, and marks itself in that app's [`InFlight`] count, so the host can wait for the old
//! app's requests before stopping its plugins. Keep-alive connections simply pick the new
//! app for their next request.
//!
//! Hand-written rather than `axum::serve` for three things it does not offer: the swap,
//! per-connection time limits ([`super::conn_timeout`]), and accepting through file-descriptor
//! exhaustion (an `EMFILE` is logged once, and accepting resumes, backing off, when
//! descriptors free up).

use std::{
    convert::Infallible,
    io,
    net::SocketAddr,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use arc_swap::ArcSwap;
use axum::{body::Body, extract::ConnectInfo, response::Response};
use futures::FutureExt;
use hyper::body::Incoming;
use hyper_util::{
    rt::{TokioExecutor, TokioIo},
    server::conn::auto::Builder,
};
use tokio::{
    net::{TcpListener, TcpStream},
    sync::{watch, Notify},
    task::JoinSet,
};

use super::{
    conn_timeout::{Activity, Limits, TimedIo},
    App,
};

/// Requests being served by one app.
#[derive(Default)]
pub struct InFlight {
    count: AtomicUsize,
    idle: Notify,
}

/// Counts one request in [`InFlight`] while it lives.
pub struct InFlightGuard(Arc<Served>);

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        let in_flight = &self.0.in_flight;
        if in_flight.count.fetch_sub(1, Ordering::SeqCst) == 1 {
            in_flight.idle.notify_waiters();
        }
    }
}

impl InFlight {
    /// Waits until no request is in flight, at most `timeout`; `false` if some still are.
    pub async fn wait_idle(&self, timeout: Duration) -> bool {
        let idle = async {
            loop {
                let notified = self.idle.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                if self.count.load(Ordering::SeqCst) == 0 {
                    return;
                }
                notified.await;
            }
        };
        tokio::time::timeout(timeout, idle).await.is_ok()
    }

    pub fn count(&self) -> usize {
        self.count.load(Ordering::SeqCst)
    }
}

/// An app as the server serves it.
pub struct Served {
    pub app: App,
    pub in_flight: InFlight,
}

impl Served {
    pub fn new(app: App) -> Arc<Self> {
        Arc::new(Served {
            app,
            in_flight: InFlight::default(),
        })
    }

    fn enter(self: &Arc<Self>) -> InFlightGuard {
        self.in_flight.count.fetch_add(1, Ordering::SeqCst);
        InFlightGuard(Arc::clone(self))
    }
}

/// The app new requests go to.
pub type Current = Arc<ArcSwap<Served>>;

/// How connections are served.
#[derive(Debug, Clone, Copy)]
pub struct ServerConfig {
    pub limits: Limits,
    /// Put the peer address in each request (for the `--debug` access log); it costs every
    /// request an extensions map otherwise not needed.
    pub record_peer: bool,
}

/// What the server is told to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Serve,
    /// Stop accepting; connections finish their current request and close.
    Drain,
    /// Close every connection now.
    Abort,
}

/// The running server.
pub struct Server {
    mode: watch::Sender<Mode>,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    /// Serves `current` on `listener` until [`Server::stop`].
    pub fn start(listener: TcpListener, current: Current, config: ServerConfig) -> Server {
        let mode = watch::channel(Mode::Serve).0;
        let task = tokio::spawn(accept_loop(listener, current, config, mode.subscribe()));
        Server { mode, task }
    }

    /// Resolves if the server stopped by itself (it should not).
    pub async fn stopped(&mut self) {
        let _ = (&mut self.task).await;
    }

    /// Stops accepting (the socket closes), lets connections finish what they are serving
    /// for up to `timeout`, then closes the rest. `false` if some had to be closed.
    pub async fn stop(mut self, timeout: Duration) -> bool {
        self.mode.send_replace(Mode::Drain);
        if tokio::time::timeout(timeout, &mut self.task).await.is_ok() {
            return true;
        }
        self.mode.send_replace(Mode::Abort);
        let _ = self.task.await;
        false
    }
}

async fn accept_loop(
    listener: TcpListener,
    current: Current,
    config: ServerConfig,
    mut mode: watch::Receiver<Mode>,
) {
    let mut connections = JoinSet::new();
    let mut backoff = Backoff::default();
    let mut listener = Some(listener);
    loop {
        let accept = async {
            match &listener {
                Some(listener) => listener.accept().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            accepted = accept => match accepted {
                Ok((stream, peer)) => {
                    backoff.recovered();
                    connections.spawn(serve_connection(
                        stream,
                        peer,
                        Arc::clone(&current),
                        config,
                        mode.clone(),
                    ));
                }
                Err(err) => backoff.failed(&err).await,
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            changed = mode.changed() => {
                let now = if changed.is_ok() { *mode.borrow_and_update() } else { Mode::Abort };
                match now {
                    Mode::Serve => {}
                    // Closing the socket: new clients are refused from here on.
                    Mode::Drain => listener = None,
                    Mode::Abort => return,
                }
            }
        }
        if listener.is_none() && connections.is_empty() {
            return;
        }
    }
}

/// Accept errors: per-connection ones are ignored; the rest (`EMFILE`, `ENFILE`, `ENOBUFS`,
/// `ENOMEM`) are resource exhaustion, logged once per episode and retried after a pause
/// that doubles from 10 ms to 1 s, so the server recovers as soon as descriptors free up.
#[derive(Default)]
struct Backoff {
    pause: Option<Duration>,
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(10);
    const MAX: Duration = Duration::from_secs(1);

    async fn failed(&mut self, err: &io::Error) {
        if is_connection_error(err) {
            return;
        }
        let pause = match self.pause {
            None => {
                tracing::warn!(
                    "Cannot accept connections: {err}; retrying until it clears (raise the open-file limit if it is too many open files)"
                );
                Self::FIRST
            }
            Some(pause) => (pause * 2).min(Self::MAX),
        };
        self.pause = Some(pause);
        tokio::time::sleep(pause).await;
    }

    fn recovered(&mut self) {
        if self.pause.take().is_some() {
            tracing::info!("Accepting connections again");
        }
    }
}

fn is_connection_error(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    current: Current,
    config: ServerConfig,
    mut mode: watch::Receiver<Mode>,
) {
    let activity = Activity::new();
    let io = TokioIo::new(TimedIo::new(stream, Arc::clone(&activity), config.limits));
    let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
        let serving = activity.serving();
        let served = current.load_full();
        let guard = served.enter();
        let mut request = request.map(Body::new);
        if config.record_peer {
            request.extensions_mut().insert(ConnectInfo(peer));
        }
        // Answered here rather than through `oneshot`, whose future would carry the request
        // beside the answer's; and mapped rather than awaited in an `async` block, which
        // would hold the answer twice (as captured and as awaited).
        guard
            .0
            .app
            .answer(request)
            .map(move |response: Result<Response, Infallible>| {
                drop((guard, serving));
                response
            })
    });
    let builder = Builder::new(TokioExecutor::new());
    let connection = builder.serve_connection_with_upgrades(io, service);
    tokio::pin!(connection);
    let mut draining = false;
    loop {
        tokio::select! {
            _ = connection.as_mut() => return,
            changed = mode.changed(), if !draining => {
                let now = if changed.is_ok() { *mode.borrow_and_update() } else { Mode::Abort };
                match now {
                    Mode::Serve => {}
                    Mode::Drain => {
                        draining = true;
                        connection.as_mut().graceful_shutdown();
                    }
                    Mode::Abort => return,
                }
            }
        }
    }
}
