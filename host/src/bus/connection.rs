//! One supervised AMQP connection (the listener's or the publisher's).
//!
//! A background task connects, publishes the live connection on a `watch`, notices loss at
//! once through lapin's connection error callback (a broker close, a socket error or two
//! missed heartbeats all end up there), and reconnects until closed. With a list of brokers
//! it moves to the next one at once when an attempt is refused or the connection is lost
//! (see [`crate::broker_list`]); after a full round of failures it pauses, the pauses doubling up
//! to `reconnect_interval`. It warns once per outage; repeats go to debug so a long outage
//! does not spam.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lapin::{Connection, ConnectionProperties};
use tokio::runtime::Handle;
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use super::config::BusConfig;
use super::error::BusError;
use super::health::BusState;
use crate::broker_list::Brokers;
use crate::metrics::bus::BusMetrics;
use crate::sync::Unpoisoned;

/// The `bus` label of this bus's metrics.
pub(crate) const BUS: &str = crate::eventbus::Transport::Amqp.label();

/// Safety net next to the error callback: how often the supervisor also looks at the
/// connection status. Not the detection mechanism, just a bound if a callback were missed.
const STATUS_CHECK: Duration = Duration::from_secs(2);
/// The pause before the second attempt after a loss (the first is made at once); the
/// pauses then double up to `reconnect_interval`.
const FIRST_PAUSE: Duration = Duration::from_millis(50);
/// Bound for a clean `connection.close` handshake.
pub(crate) const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// Resolve when a `watch<bool>` becomes true, or its sender goes away.
pub(crate) async fn wait_true(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|v| *v).await;
}

/// A connected connection and the signal that says it is gone.
#[derive(Clone)]
pub(crate) struct Live {
    pub conn: Arc<Connection>,
    pub generation: u64,
    lost: watch::Receiver<bool>,
}

impl Live {
    pub fn is_lost(&self) -> bool {
        *self.lost.borrow() || !self.conn.status().connected()
    }

    /// Resolves once this connection is gone (or being closed by us).
    pub async fn lost(&self) {
        let mut rx = self.lost.clone();
        wait_true(&mut rx).await;
    }
}

#[derive(Clone)]
pub(crate) enum LinkStatus {
    /// Nobody needed this connection yet.
    Idle,
    /// First attempt in progress.
    Connecting,
    Connected(Live),
    /// Not connected; `seq` counts failed attempts, so a waiter can tell a fresh failure
    /// from the one it already saw.
    Down {
        error: String,
        seq: u64,
    },
    /// Closed by `close()`; terminal.
    Closed,
}

#[derive(Default)]
struct Stats {
    reconnects: u64,
    ever_connected: bool,
    failed_attempts: u64,
    last_error: Option<(String, Instant)>,
}

/// Health of one link.
#[derive(Debug, Clone)]
pub(crate) struct LinkHealth {
    pub state: BusState,
    pub reconnects: u64,
    pub last_error: Option<(String, Instant)>,
    pub blocked: bool,
    /// The broker of the list in use, while connected.
    pub broker: Option<String>,
}

pub(crate) struct Link {
    role: &'static str,
    metrics: BusMetrics,
    cfg: Arc<BusConfig>,
    brokers: Brokers,
    status_tx: watch::Sender<LinkStatus>,
    stats: Mutex<Stats>,
    nudge: Notify,
    check: Notify,
    close_tx: watch::Sender<bool>,
    started: AtomicBool,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl Link {
    pub fn new(role: &'static str, cfg: Arc<BusConfig>, metrics: BusMetrics) -> Arc<Self> {
        Arc::new(Link {
            role,
            brokers: Brokers::new(BUS, Some((&metrics, role)), cfg.endpoints()),
            metrics,
            cfg,
            status_tx: watch::channel(LinkStatus::Idle).0,
            stats: Mutex::new(Stats::default()),
            nudge: Notify::new(),
            check: Notify::new(),
            close_tx: watch::channel(false).0,
            started: AtomicBool::new(false),
            task: Mutex::new(None),
        })
    }

    /// Start the supervisor (once). Does nothing after `close()`.
    pub fn start(self: &Arc<Self>, handle: &Handle) {
        if *self.close_tx.borrow() || self.started.swap(true, Ordering::SeqCst) {
            return;
        }
        self.status_tx.send_replace(LinkStatus::Connecting);
        let task = handle.spawn(self.clone().supervise());
        *self.task.locked() = Some(task);
    }

    pub fn subscribe(&self) -> watch::Receiver<LinkStatus> {
        self.status_tx.subscribe()
    }

    pub fn current(&self) -> Option<Live> {
        match &*self.status_tx.borrow() {
            LinkStatus::Connected(live) if !live.is_lost() => Some(live.clone()),
            _ => None,
        }
    }

    pub fn failed_attempts(&self) -> u64 {
        self.stats.locked().failed_attempts
    }

    /// Skip the rest of the reconnect pause and try now (used by a waiting publish).
    pub fn nudge(&self) {
        self.nudge.notify_one();
    }

    /// Ask the supervisor to look at the connection status now (a consumer stream ended).
    pub fn check_now(&self) {
        self.check.notify_one();
    }

    pub fn health(&self) -> LinkHealth {
        let (state, blocked) = match &*self.status_tx.borrow() {
            LinkStatus::Idle | LinkStatus::Closed => (BusState::Disabled, false),
            LinkStatus::Connected(live) if !live.is_lost() => {
                (BusState::Connected, live.conn.status().blocked())
            }
            _ => (BusState::Connecting, false),
        };
        let stats = self.stats.locked();
        LinkHealth {
            state,
            reconnects: stats.reconnects,
            last_error: stats.last_error.clone(),
            blocked,
            broker: self.brokers.in_use(),
        }
    }

    /// Close the connection and stop reconnecting; bounded by [`CLOSE_TIMEOUT`] plus a margin.
    pub async fn close(&self) {
        self.close_tx.send_replace(true);
        let task = self.task.locked().take();
        if let Some(task) = task {
            let abort = task.abort_handle();
            if tokio::time::timeout(CLOSE_TIMEOUT + Duration::from_secs(1), task)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
        self.status_tx.send_replace(LinkStatus::Closed);
    }

    fn record_error(&self, text: &str) {
        self.stats.locked().last_error = Some((text.to_string(), Instant::now()));
    }

    async fn connect(&self) -> Result<Connection, BusError> {
        let index = self.brokers.current();
        let uri = self
            .cfg
            .amqp_uris()?
            .into_iter()
            .nth(index)
            .ok_or_else(|| {
                BusError::InvalidConfig(format!("no broker number {} in the list", index + 1))
            })?;
        let name = format!("{}:{}", self.cfg.connection_name, self.role);
        let props = ConnectionProperties::default()
            .with_connection_name(name.into())
            .with_executor(tokio_executor_trait::Tokio::current())
            .with_reactor(tokio_reactor_trait::Tokio);
        match tokio::time::timeout(
            self.cfg.connect_timeout,
            Connection::connect_uri(uri, props),
        )
        .await
        {
            Ok(Ok(conn)) => Ok(conn),
            Ok(Err(e)) => Err(BusError::from(e)),
            Err(_) => Err(BusError::Unavailable(format!(
                "no answer from {} within {:?}",
                self.brokers.current_label(),
                self.cfg.connect_timeout
            ))),
        }
    }

    /// Connect, watch, and reconnect until closed. After a loss or a refusal the next broker
    /// of the list is tried at once; after a full round of failures (with one broker: after
    /// each) the supervisor pauses, the pauses doubling from zero through [`FIRST_PAUSE`] up
    /// to `reconnect_interval`.
    async fn supervise(self: Arc<Self>) {
        let mut close_rx = self.close_tx.subscribe();
        let interval = self.cfg.reconnect_interval;
        let mut generation = 0u64;
        let mut outage_warned = false;
        let mut pause = Duration::ZERO;
        loop {
            let attempt = tokio::select! {
                biased;
                _ = wait_true(&mut close_rx) => break,
                r = self.connect() => r,
            };
            let round_done = match attempt {
                Ok(conn) => {
                    generation += 1;
                    let watched = self.connected(conn, generation);
                    if watched.until_lost(&self, &mut close_rx).await == Ended::ClosedByUs {
                        watched.close().await;
                        info!("Closed event bus {} {}", self.role, self.name());
                        break;
                    }
                    pause = Duration::ZERO;
                    let round_done = self.brokers.failed();
                    self.report_loss(&watched);
                    round_done
                }
                Err(err) => {
                    self.report_failure(&err, outage_warned);
                    self.brokers.failed()
                }
            };
            outage_warned = true;
            if !round_done {
                // The next broker of the list, at once.
                continue;
            }
            tokio::select! {
                biased;
                _ = wait_true(&mut close_rx) => break,
                _ = self.nudge.notified() => {}
                _ = tokio::time::sleep(pause) => {}
            }
            pause = (pause * 2).clamp(FIRST_PAUSE.min(interval), interval);
        }
        self.status_tx.send_replace(LinkStatus::Closed);
    }

    /// `connection_name:role`, as the broker shows it.
    fn name(&self) -> String {
        format!("{}:{}", self.cfg.connection_name, self.role)
    }

    /// A fresh connection: hook its error callback, count it, and publish it.
    fn connected(self: &Arc<Self>, conn: Connection, generation: u64) -> Watched {
        let conn = Arc::new(conn);
        let (lost_tx, lost_rx) = watch::channel(false);
        let lost_tx = Arc::new(lost_tx);
        let cause: Arc<Mutex<Option<String>>> = Arc::default();
        {
            let lost_tx = lost_tx.clone();
            let cause = cause.clone();
            let link = Arc::downgrade(self);
            let cfg = self.cfg.clone();
            conn.on_error(move |err| {
                let text = cause
                    .locked()
                    .get_or_insert_with(|| cfg.scrub(&err.to_string()))
                    .clone();
                // Recorded before anyone can see the loss: whoever reacts to it (a
                // subscription going pending) finds the reason in the health.
                if let Some(link) = link.upgrade() {
                    link.record_error(&text);
                }
                lost_tx.send_replace(true);
            });
        }
        {
            let mut stats = self.stats.locked();
            let reconnect = stats.ever_connected;
            if reconnect {
                stats.reconnects += 1;
            }
            stats.ever_connected = true;
            self.metrics.connection(BUS, self.role, true, reconnect);
        }
        self.brokers.connected();
        info!(
            "Connected event bus {} {} to {} (connection {generation})",
            self.role,
            self.name(),
            self.brokers.current_label()
        );
        self.status_tx.send_replace(LinkStatus::Connected(Live {
            conn: conn.clone(),
            generation,
            lost: lost_rx,
        }));
        Watched {
            conn,
            lost_tx,
            cause,
        }
    }

    /// A connection is gone: warn (always; a loss is news) and say so.
    fn report_loss(&self, watched: &Watched) {
        // Already recorded where the loss was signalled.
        let reason = lost_reason(&watched.cause, &watched.conn);
        self.metrics.connection(BUS, self.role, false, false);
        warn!(
            "Connection lost in event bus {} {}: {reason}; reconnecting at once (to {}), then \
             every {:?} at most",
            self.role,
            self.name(),
            self.brokers.current_label(),
            self.cfg.reconnect_interval
        );
        let seq = self.failed_attempts();
        self.status_tx
            .send_replace(LinkStatus::Down { error: reason, seq });
    }

    /// An attempt failed: record it, warn once per outage (repeats go to debug).
    fn report_failure(&self, err: &BusError, outage_warned: bool) {
        let broker = self.brokers.current_label();
        let text = self.cfg.scrub(&format!("{broker}: {err}"));
        self.record_error(&text);
        let seq = {
            let mut stats = self.stats.locked();
            stats.failed_attempts += 1;
            stats.failed_attempts
        };
        let (role, name) = (self.role, self.name());
        if outage_warned {
            debug!("Connection error in event bus {role} {name}: {text}");
        } else {
            warn!(
                "Connection error in event bus {role} {name} ({}): {text}; retrying every {:?} \
                 at most",
                self.cfg.endpoint(),
                self.cfg.reconnect_interval
            );
        }
        self.status_tx
            .send_replace(LinkStatus::Down { error: text, seq });
    }
}

/// How a watched connection ended.
#[derive(PartialEq, Eq)]
enum Ended {
    ClosedByUs,
    Lost,
}

/// A live connection under watch, with the means to say it is gone.
struct Watched {
    conn: Arc<Connection>,
    lost_tx: Arc<watch::Sender<bool>>,
    cause: Arc<Mutex<Option<String>>>,
}

impl Watched {
    /// Until the connection is lost or we are told to close. The error callback is what
    /// notices a loss; a status check (on request, and every [`STATUS_CHECK`]) is the net.
    async fn until_lost(&self, link: &Link, close_rx: &mut watch::Receiver<bool>) -> Ended {
        let mut lost_watch = self.lost_tx.subscribe();
        let mut ticker = tokio::time::interval(STATUS_CHECK);
        loop {
            tokio::select! {
                biased;
                _ = wait_true(close_rx) => return Ended::ClosedByUs,
                _ = wait_true(&mut lost_watch) => return Ended::Lost,
                _ = link.check.notified() => {}
                _ = ticker.tick() => {}
            }
            if !self.conn.status().connected() {
                link.record_error(&lost_reason(&self.cause, &self.conn));
                self.lost_tx.send_replace(true);
            }
        }
    }

    /// Closes the connection cleanly (bounded) and tells its users.
    async fn close(&self) {
        if self.conn.status().connected() {
            let _ = tokio::time::timeout(CLOSE_TIMEOUT, self.conn.close(200, "OK")).await;
        }
        self.lost_tx.send_replace(true);
    }
}

/// Why a connection is gone: lapin's error if it reported one, else its state.
fn lost_reason(cause: &Mutex<Option<String>>, conn: &Connection) -> String {
    cause
        .locked()
        .clone()
        .unwrap_or_else(|| format!("connection state {:?}", conn.status().state()))
}
