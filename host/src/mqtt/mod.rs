//! MQTT eventbus (rumqttc, MQTT 3.1.1), the one today's BrewBlox fleets use, beside the AMQP
//! one of [`crate::bus`].
//!
//! One job per module:
//! - [`config`]: the settings and the protocol's default ports;
//! - [`topic`]: checking topics and filters, and matching a topic against a filter;
//! - [`subscription`]: what an MQTT subscription adds to the common
//!   [`crate::eventbus::Subscription`] (its QoS); its in-order consumer task is
//!   `crate::eventbus::delivery::consume`;
//! - `connection`: the task that drives a client: connects, reconnects (at once, then with
//!   back-off), subscribes again on every connect, and routes acknowledgements and messages;
//!   the same for the service's clean-session connection and its persistent session;
//! - `durable`: the persistent session that carries durable subscriptions, and their
//!   hand-over from one generation of plugins to the next;
//! - `ack`: the acknowledgement of a persistent session's message, sent once every
//!   subscription it matched handled it;
//! - `backoff`: the pause before each connection attempt (the main connection's and each
//!   will's), which resets only after a connection stayed up a while;
//! - `tls`: rustls, with or without certificate checks.
//!
//! Guarantees: a publish is `Ok` once written to the broker (QoS 0) or acknowledged by it
//! (QoS 1); while disconnected it fails at once; every wait is bounded by the configured
//! timeout. Each subscription has its own queue of at most `queue_size` messages and its own
//! task, so messages are handled in order within a subscription and a slow handler holds up
//! no other; when its queue is full, new messages for it are dropped, counted (health) and
//! logged. Nothing is queued in the host while the broker is down.
//!
//! A durable subscription is made on the service's persistent session: a connection of its
//! own (clean session off, client id `plugin_abi::sharing::mqtt_session_id`, the same broker
//! list, TLS and credentials), opened at the first durable subscription. Its messages are
//! acknowledged after their handler returned, so that the broker keeps what the service did
//! not handle, and what is published while it is away, for the next connection.

mod ack;
mod backoff;
pub mod config;
mod connection;
mod durable;
mod stop;
pub mod subscription;
mod tls;
pub mod topic;
mod will;

use std::{
    collections::{HashMap, VecDeque},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex, MutexGuard,
    },
    time::Duration,
};

pub use rumqttc::QoS;
use rumqttc::{AsyncClient, EventLoop};
use serde::Serialize;
use tokio::sync::{oneshot, watch};

pub use config::{MqttConfig, ParseProtocolError, Protocol, Will};
pub use tls::TlsError;
pub use topic::{matches, validate_filter, validate_topic, TopicError, MAX_TOPIC_BYTES};
pub use will::WillHealth;
use will::{WillHolder, WillRoute};

use crate::eventbus::delivery::{self, Queued};
use crate::eventbus::queue::{self, QueueSender};
use crate::eventbus::{ErrorKind, EventbusError, Sink, Subscription, SubscriptionState};
use crate::metrics::bus::BusMetrics;
use crate::sync::Unpoisoned;
use ack::Ack;

/// What can go wrong for a caller of the MQTT bus.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum MqttError {
    /// A topic, filter or QoS the bus refuses; nothing was sent.
    #[error("{0}")]
    Invalid(String),
    /// A message over the size limit; nothing was sent.
    #[error("MQTT message of {size} bytes is larger than the limit of {limit} bytes")]
    TooLarge { size: usize, limit: usize },
    /// Not connected, or the connection was lost before the broker answered.
    #[error("MQTT broker unavailable: {0}")]
    Unavailable(String),
    /// The broker refused a subscription.
    #[error("MQTT broker refused: {0}")]
    Rejected(String),
    #[error("MQTT broker did not answer in time")]
    Timeout,
    #[error("MQTT subscription cancelled")]
    Cancelled,
    #[error("MQTT bus is shutting down")]
    ShuttingDown,
}

impl EventbusError for MqttError {
    fn kind(&self) -> ErrorKind {
        match self {
            MqttError::Invalid(_) => ErrorKind::Invalid,
            MqttError::TooLarge { .. } => ErrorKind::TooLarge,
            MqttError::Unavailable(_) | MqttError::ShuttingDown => ErrorKind::Unavailable,
            MqttError::Rejected(_) => ErrorKind::Refused,
            MqttError::Timeout => ErrorKind::Timeout,
            MqttError::Cancelled => ErrorKind::Cancelled,
        }
    }

    /// Every invalid request names a topic or filter.
    fn field(&self) -> Option<&'static str> {
        matches!(self, MqttError::Invalid(_)).then_some("topic")
    }
}

/// The connection's state, as health shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum MqttState {
    /// Not started yet.
    Disabled,
    Connecting,
    Connected,
    Closed,
}

/// `/_service/health`'s "mqtt" section.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct MqttHealth {
    #[serde(flatten)]
    pub connection: MqttConnectionHealth,
    /// The wills the service declared (one per plugin that declared one), each with
    /// whether the broker holds it now.
    pub wills: Vec<WillHealth>,
    /// The persistent session of the durable subscriptions, once one was made.
    pub session: Option<MqttSessionHealth>,
}

impl MqttHealth {
    /// Every MQTT subscription of the service: the clean-session connection's, then the
    /// persistent session's (durable ones).
    pub fn all_subscriptions(&self) -> impl Iterator<Item = &MqttSubHealth> {
        let session = self.session.iter();
        let durable = session.flat_map(|s| &s.connection.subscriptions);
        self.connection.subscriptions.iter().chain(durable)
    }
}

/// The persistent session's connection, in `/_service/health`'s "mqtt" section.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct MqttSessionHealth {
    /// The session's client id (stable across restarts).
    pub client_id: String,
    #[serde(flatten)]
    pub connection: MqttConnectionHealth,
}

/// What the health says of one MQTT connection: the service's clean-session one, or its
/// persistent session.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct MqttConnectionHealth {
    pub state: MqttState,
    /// The broker of the address list in use (no password); while not connected, the one
    /// tried next.
    pub broker: String,
    pub reconnects: u64,
    pub last_error: Option<String>,
    /// The connection's subscriptions. On the persistent session, one per filter and
    /// plugin, whichever generation of the plugin holds it now.
    pub subscriptions: Vec<MqttSubHealth>,
}

/// One MQTT subscription: a plugin's or one made with `/_debug/subscribe`.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct MqttSubHealth {
    pub id: u64,
    pub filter: String,
    /// The plugin that made it; null for `/_debug/subscribe` ones.
    pub plugin: Option<String>,
    /// `pending`, `active` or `failed`.
    pub state: &'static str,
    pub error: Option<String>,
    /// Messages dropped because its queue was full.
    pub dropped: u64,
    /// The QoS it subscribed with (0 or 1).
    pub qos: u8,
}

/// A publish waiting for the event loop to send it (and, for QoS 1, the broker to ack it).
type Waiter = oneshot::Sender<Result<(), MqttError>>;

/// Waiters by MQTT packet id, on every QoS 1 publish's path (an insert at sending, a
/// removal at its PUBACK): hashed with foldhash, not the default SipHash, which cost a
/// publish ~0.2 k instructions for a 16-bit key that no outsider chooses.
pub(crate) type ByPacketId<V> = HashMap<u16, V, foldhash::fast::FixedState>;

/// What the caller side and the connection task share, behind one lock held briefly.
pub(crate) struct State {
    pub status: MqttState,
    pub reconnects: u64,
    pub last_error: Option<String>,
    pub subs: Vec<(Subscription, QueueSender<Queued<Ack>>)>,
    /// Publishes handed to the client, in the order the event loop sends them.
    pub sending: VecDeque<(QoS, Waiter)>,
    /// QoS 1 publishes sent, by packet id, waiting for their PUBACK.
    pub unacked: ByPacketId<Waiter>,
    /// Filters asked for, in order, until the event loop gives them a packet id.
    pub subscribing: VecDeque<String>,
    pub suback: HashMap<u16, String>,
    /// Set at the start of a clean stop: only the will may still be published, so that no
    /// message sent after it (a state update) can replace it.
    pub closing: bool,
    pub stopping: bool,
}

/// The kind of session a connection keeps with the broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Session {
    /// The service's connection: the broker forgets it at each disconnect; messages are
    /// acknowledged on receipt.
    Clean,
    /// The durable subscriptions' connection: the broker keeps the session and what it did
    /// not acknowledge; messages are acknowledged after their handler.
    Persistent,
}

impl Session {
    /// The `connection` label of the connection's metrics.
    pub fn label(self) -> &'static str {
        match self {
            Session::Clean => BUS,
            Session::Persistent => "mqtt-durable",
        }
    }
}

pub(crate) struct Shared {
    pub cfg: MqttConfig,
    pub session: Session,
    /// The client id (for health; the persistent session's is stable).
    pub client_id: String,
    /// The broker list of the main connection: the one tried next, or in use.
    pub brokers: crate::broker_list::Brokers,
    pub client: AsyncClient,
    pub state: Mutex<State>,
    pub connected: watch::Sender<bool>,
    pub eventloop: Mutex<Option<EventLoop>>,
    pub stop: stop::Stop,
    pub task: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// The connections that carry the service's wills.
    wills: tokio::sync::Mutex<Vec<WillHolder>>,
    /// The publishing side of each will's connection, for publishes on a will topic and
    /// for health (the async lock above is held across connects).
    will_routes: Mutex<Vec<WillRoute>>,
    next_will: AtomicU64,
    next_id: AtomicU64,
    runtime: Option<tokio::runtime::Handle>,
    pub metrics: BusMetrics,
    /// The persistent session of the durable subscriptions (the clean-session connection
    /// only), opened at the first one.
    durable: Mutex<Option<MqttBus>>,
}

impl Shared {
    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state.locked()
    }
}

/// The host's MQTT client. Cheap to clone. Nothing connects until [`MqttBus::start`].
#[derive(Clone)]
pub struct MqttBus {
    inner: Arc<Shared>,
}

/// The `bus` label of the MQTT eventbus's metrics.
pub(crate) const BUS: &str = crate::eventbus::Transport::Mqtt.label();

/// QoS from a plugin's number.
pub fn qos(level: u8) -> Result<QoS, MqttError> {
    match level {
        0 => Ok(QoS::AtMostOnce),
        1 => Ok(QoS::AtLeastOnce),
        _ => Err(MqttError::Invalid(format!(
            "MQTT QoS {level} is not supported: 0 or 1"
        ))),
    }
}

impl MqttBus {
    /// Builds the client; everything it records goes to `metrics`. Errors: a TLS set-up that
    /// cannot be made.
    pub fn new(cfg: MqttConfig, metrics: BusMetrics) -> Result<Self, TlsError> {
        let id = connection::client_id(&cfg);
        let runtime = tokio::runtime::Handle::try_current().ok();
        Self::with_session(cfg, metrics, id, Session::Clean, runtime)
    }

    /// A bus whose connection has client id `id` and keeps `session`, running its tasks on
    /// `runtime` when called outside one.
    fn with_session(
        cfg: MqttConfig,
        metrics: BusMetrics,
        id: String,
        session: Session,
        runtime: Option<tokio::runtime::Handle>,
    ) -> Result<Self, TlsError> {
        let (client, eventloop) = connection::client_with(&cfg, id.clone(), None, session)?;
        Ok(MqttBus {
            inner: Arc::new(Shared {
                brokers: crate::broker_list::Brokers::new(
                    BUS,
                    Some((&metrics, session.label())),
                    cfg.endpoints(),
                ),
                metrics,
                cfg,
                session,
                client_id: id,
                client,
                state: Mutex::new(State {
                    status: MqttState::Disabled,
                    reconnects: 0,
                    last_error: None,
                    subs: Vec::new(),
                    sending: VecDeque::new(),
                    unacked: ByPacketId::default(),
                    subscribing: VecDeque::new(),
                    suback: HashMap::new(),
                    closing: false,
                    stopping: false,
                }),
                connected: watch::channel(false).0,
                eventloop: Mutex::new(Some(eventloop)),
                stop: stop::Stop::default(),
                task: Mutex::new(None),
                wills: tokio::sync::Mutex::new(Vec::new()),
                will_routes: Mutex::new(Vec::new()),
                next_will: AtomicU64::new(1),
                next_id: AtomicU64::new(1),
                runtime,
                durable: Mutex::new(None),
            }),
        })
    }

    pub fn config(&self) -> &MqttConfig {
        &self.inner.cfg
    }

    /// A new subscription id, unique on this connection.
    fn next_id(&self) -> u64 {
        self.inner.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// The runtime the bus was made in, for callers on other threads.
    pub fn runtime(&self) -> Option<tokio::runtime::Handle> {
        self.inner.runtime.clone()
    }

    /// Starts connecting (in the current runtime, else the one the bus was made in), and
    /// the persistent session if a durable subscription was made. Idempotent.
    pub fn start(&self) {
        let eventloop = self.inner.eventloop.lock().ok().and_then(|mut e| e.take());
        let runtime = tokio::runtime::Handle::try_current()
            .ok()
            .or_else(|| self.inner.runtime.clone());
        if let (Some(eventloop), Some(runtime)) = (eventloop, runtime) {
            self.inner.lock().status = MqttState::Connecting;
            let task = runtime.spawn(connection::run(self.inner.clone(), eventloop));
            if let Ok(mut slot) = self.inner.task.lock() {
                *slot = Some(task);
            }
        }
        if let Some(durable) = self.durable() {
            durable.start();
        }
    }

    /// Whether [`start`](Self::start) was called.
    fn started(&self) -> bool {
        self.inner.eventloop.locked().is_none()
    }

    /// The persistent session's bus, if a durable subscription opened it.
    fn durable(&self) -> Option<MqttBus> {
        self.inner.durable.locked().clone()
    }

    pub fn is_connected(&self) -> bool {
        *self.inner.connected.borrow()
    }

    /// Makes the broker hold `wanted` (plugin, will) pairs: a connection is opened for each
    /// will not held yet ([`wills_held`](Self::wills_held) waits for them). Connections of
    /// wills no longer wanted stay until [`release_wills`](Self::release_wills). Errors: a
    /// will the bus refuses (topic, size) or a TLS set-up that cannot be made.
    pub async fn hold_wills(&self, wanted: &[(String, Will)]) -> Result<(), MqttError> {
        for (_, will) in wanted {
            self.check_will(will)?;
        }
        let mut holders = self.inner.wills.lock().await;
        for (plugin, will) in wanted {
            if holders
                .iter()
                .any(|h| &h.plugin == plugin && &h.will == will)
            {
                continue;
            }
            let n = self.inner.next_will.fetch_add(1, Ordering::Relaxed);
            let holder = WillHolder::start(&self.inner.cfg, plugin, will.clone(), n)
                .map_err(|err| MqttError::Unavailable(err.to_string()))?;
            tracing::info!(
                target: "brewblox_host::mqtt",
                "MQTT will of plugin {plugin} on '{}': connecting its connection",
                will.topic.escape_debug()
            );
            holders.push(holder);
        }
        self.refresh_will_routes(&holders);
        Ok(())
    }

    /// Waits at most `timeout` until the broker holds every will; `false` if one is not.
    pub async fn wills_held(&self, timeout: Duration) -> bool {
        let holders = self.inner.wills.lock().await;
        let held = futures::future::join_all(holders.iter().map(|h| h.wait_held(timeout))).await;
        self.refresh_will_routes(&holders);
        held.into_iter().all(|h| h)
    }

    /// Closes the connections of wills not in `wanted` (the broker drops them unannounced).
    /// A will whose topic no plugin declares any more is published first: the plugin that
    /// declared it is gone, and its retained state with it.
    pub async fn release_wills(&self, wanted: &[(String, Will)]) {
        let mut holders = self.inner.wills.lock().await;
        let (keep, gone): (Vec<_>, Vec<_>) = std::mem::take(&mut *holders)
            .into_iter()
            .partition(|h| wanted.iter().any(|(p, w)| p == &h.plugin && w == &h.will));
        *holders = keep;
        self.refresh_will_routes(&holders);
        for holder in gone {
            let announce = !wanted.iter().any(|(_, w)| w.topic == holder.will.topic);
            if announce && !self.announce(&holder).await {
                holder.abandon();
                continue;
            }
            holder.release().await;
        }
    }

    fn refresh_will_routes(&self, holders: &[WillHolder]) {
        *self.inner.will_routes.locked() = holders.iter().map(|h| h.route().clone()).collect();
    }

    /// Publishes a will (QoS 1, bounded) on its own connection, after whatever the plugin
    /// published there, or on the main connection while that one is down; logs the
    /// outcome; whether it was published.
    async fn announce(&self, holder: &WillHolder) -> bool {
        let will = &holder.will;
        let route = Some(holder.route()).filter(|r| r.is_held());
        let sent = self
            .send_on(
                route,
                &will.topic,
                will.payload.clone(),
                QoS::AtLeastOnce,
                will.retain,
                true,
            )
            .await;
        match &sent {
            Ok(()) => tracing::info!(
                target: "brewblox_host::mqtt",
                "Published the MQTT will on '{}'",
                will.topic.escape_debug()
            ),
            Err(err) => tracing::warn!(
                target: "brewblox_host::mqtt",
                "MQTT will on '{}' not published: {err}; its connection is dropped, for the \
                 broker to announce it",
                will.topic.escape_debug()
            ),
        }
        sent.is_ok()
    }

    /// A will's topic and size, as [`hold_wills`](Self::hold_wills) checks them.
    pub fn check_will(&self, will: &Will) -> Result<(), MqttError> {
        validate_topic(&will.topic).map_err(|e| MqttError::Invalid(e.to_string()))?;
        self.check_size(will.payload.len())
    }

    fn check_size(&self, len: usize) -> Result<(), MqttError> {
        let limit = self.inner.cfg.max_message_size;
        if len > limit {
            return Err(MqttError::TooLarge { size: len, limit });
        }
        Ok(())
    }

    /// Publishes `payload` to `topic`. `Ok` once sent (QoS 0) or acknowledged (QoS 1).
    /// Errors: [`MqttError::Invalid`] (nothing sent), [`MqttError::Unavailable`] at once
    /// while disconnected, [`MqttError::Timeout`] after the configured timeout,
    /// [`MqttError::ShuttingDown`].
    pub async fn publish(
        &self,
        topic: &str,
        payload: impl Into<Vec<u8>>,
        qos: QoS,
        retain: bool,
    ) -> Result<(), MqttError> {
        let started = std::time::Instant::now();
        let sent = self.send(topic, payload.into(), qos, retain, false).await;
        let acknowledged = (sent.is_ok() && qos != QoS::AtMostOnce).then(|| started.elapsed());
        self.inner
            .metrics
            .published(BUS, sent.is_ok(), acknowledged);
        sent
    }

    /// Sends on the connection of the will whose topic this is, while the broker holds
    /// it (so that the will can never overtake it), else on the main connection.
    async fn send(
        &self,
        topic: &str,
        payload: Vec<u8>,
        qos: QoS,
        retain: bool,
        will: bool,
    ) -> Result<(), MqttError> {
        let route = self.will_route(topic);
        self.send_on(route.as_ref(), topic, payload, qos, retain, will)
            .await
    }

    /// The held will connection for `topic`, if a will has that topic.
    fn will_route(&self, topic: &str) -> Option<WillRoute> {
        let routes = self.inner.will_routes.locked();
        routes
            .iter()
            .find(|r| r.topic == topic && r.is_held())
            .cloned()
    }

    async fn send_on(
        &self,
        route: Option<&WillRoute>,
        topic: &str,
        payload: Vec<u8>,
        qos: QoS,
        retain: bool,
        will: bool,
    ) -> Result<(), MqttError> {
        validate_topic(topic).map_err(|e| MqttError::Invalid(e.to_string()))?;
        self.check_size(payload.len())?;
        let rx = {
            let mut state = self.inner.lock();
            if state.stopping || (state.closing && !will) {
                return Err(MqttError::ShuttingDown);
            }
            if let Some(route) = route {
                route.send(topic, payload, qos, retain)?
            } else {
                if state.status != MqttState::Connected {
                    return Err(MqttError::Unavailable(self.not_connected(&state)));
                }
                let (tx, rx) = oneshot::channel();
                self.inner
                    .client
                    .try_publish(topic, qos, retain, payload)
                    .map_err(|err| MqttError::Unavailable(format!("MQTT client busy: {err}")))?;
                state.sending.push_back((qos, tx));
                rx
            }
        };
        match tokio::time::timeout(self.inner.cfg.timeout, rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(MqttError::Unavailable("connection lost".into())),
            Err(_) => Err(MqttError::Timeout),
        }
    }

    fn not_connected(&self, state: &State) -> String {
        let reason = state
            .last_error
            .as_deref()
            .map(|e| format!(" ({e})"))
            .unwrap_or_default();
        format!("not connected to {}{reason}", self.inner.cfg.endpoint())
    }

    /// Subscribes `sink` to `filter`. Synchronous; works before the start and while
    /// disconnected: the broker subscription is made at every connection until cancelled.
    /// Errors: [`MqttError::Invalid`]; [`MqttError::Unavailable`] when no runtime can run
    /// its consumer.
    pub fn subscribe(
        &self,
        filter: &str,
        qos: QoS,
        sink: Arc<dyn Sink>,
    ) -> Result<Subscription, MqttError> {
        self.subscribe_with(filter, qos, sink, None)
    }

    /// [`subscribe`](Self::subscribe), with the generations holding a durable subscription.
    fn subscribe_with(
        &self,
        filter: &str,
        qos: QoS,
        sink: Arc<dyn Sink>,
        leases: Option<Arc<durable::Leases>>,
    ) -> Result<Subscription, MqttError> {
        validate_filter(filter).map_err(|e| MqttError::Invalid(e.to_string()))?;
        let id = self.next_id();
        let weak = Arc::downgrade(&self.inner);
        let on_cancel = Box::new(move |sub: &Subscription| {
            sub.set_state(SubscriptionState::Cancelled);
            if let Some(shared) = weak.upgrade() {
                connection::forget(&shared, id);
            }
        });
        let metrics = self.inner.metrics.clone();
        let extension = subscription::Mqtt { qos, leases };
        let sub = subscription::new(id, filter, extension, sink, metrics, on_cancel);
        let (tx, rx) = queue::bounded(self.inner.cfg.queue_size);
        let mut state = self.inner.lock();
        if state.stopping {
            drop(state);
            sub.cancel();
            return Ok(sub);
        }
        // The caller may be on a plugin's own runtime thread, outside the host's runtime.
        let consumer = delivery::consume(sub.clone(), rx);
        match tokio::runtime::Handle::try_current()
            .ok()
            .or_else(|| self.inner.runtime.clone())
        {
            Some(runtime) => {
                runtime.spawn(consumer);
            }
            None => {
                drop(state);
                sub.cancel();
                return Err(MqttError::Unavailable("MQTT bus has no runtime".into()));
            }
        }
        let first = !state.subs.iter().any(|(s, _)| s.filter() == filter);
        state.subs.push((sub.clone(), tx));
        if state.status == MqttState::Connected {
            if first {
                connection::ask(&self.inner, &mut state, filter, qos);
            } else if let Some((other, _)) = state
                .subs
                .iter()
                .find(|(s, _)| s.filter() == filter && s.id() != id)
            {
                let state = other.state();
                if matches!(state, SubscriptionState::Active { .. }) {
                    sub.metrics();
                }
                sub.set_state(state);
            }
        }
        tracing::info!(target: "brewblox_host::mqtt", "MQTT subscription {sub} registered");
        Ok(sub)
    }

    /// Waits until the broker acknowledged `sub`, so that what is published from then on
    /// reaches it. Bounded by the configured timeout.
    pub async fn ready(&self, sub: &Subscription) -> Result<(), MqttError> {
        let mut state = sub.state_signal();
        let wait = async {
            loop {
                match &*state.borrow_and_update() {
                    SubscriptionState::Active { .. } => return Ok(()),
                    SubscriptionState::Failed { error } => {
                        return Err(MqttError::Rejected(error.clone()))
                    }
                    SubscriptionState::Cancelled => return Err(MqttError::Cancelled),
                    SubscriptionState::Pending => {}
                }
                if state.changed().await.is_err() {
                    return Err(MqttError::Cancelled);
                }
            }
        };
        match tokio::time::timeout(self.inner.cfg.timeout, wait).await {
            Ok(result) => result,
            Err(_) if !self.is_connected() => Err(MqttError::Unavailable(
                self.not_connected(&self.inner.lock()),
            )),
            Err(_) => Err(MqttError::Timeout),
        }
    }

    /// Live subscriptions.
    pub fn subscriptions(&self) -> Vec<Subscription> {
        self.inner
            .lock()
            .subs
            .iter()
            .map(|(s, _)| s.clone())
            .collect()
    }

    /// The wills and whether the broker holds each now.
    fn current_wills(&self) -> Vec<WillHealth> {
        let routes = self.inner.will_routes.locked();
        routes.iter().map(WillRoute::health).collect()
    }

    pub fn health(&self) -> MqttHealth {
        // Before the state's lock: `durable` is never locked while it is held.
        let session = self.durable().map(|durable| MqttSessionHealth {
            client_id: durable.inner.client_id.clone(),
            connection: durable.connection_health(),
        });
        MqttHealth {
            connection: self.connection_health(),
            wills: self.current_wills(),
            session,
        }
    }

    fn connection_health(&self) -> MqttConnectionHealth {
        let state = self.inner.lock();
        MqttConnectionHealth {
            state: state.status,
            broker: self
                .inner
                .brokers
                .in_use()
                .unwrap_or_else(|| self.inner.brokers.current_label().to_owned()),
            reconnects: state.reconnects,
            last_error: state.last_error.clone(),
            subscriptions: subscription_health(&state),
        }
    }

    /// Clean stop: publishes every will itself (bounded), closes the will connections and
    /// then the main one with a DISCONNECT (so the broker announces nothing again), and ends
    /// the connection task. Subscriptions are cancelled; a handler still running is left to
    /// finish on its own. Idempotent; at most about `deadline` plus the configured timeout.
    pub async fn shutdown(&self, deadline: Duration) {
        let durable = async {
            if let Some(durable) = self.durable() {
                Box::pin(durable.shutdown(deadline)).await;
            }
        };
        tokio::join!(self.close(deadline), durable);
    }

    /// [`shutdown`](Self::shutdown) of this bus's own connection. A persistent session's
    /// in-flight handlers are waited for (bounded by `deadline`), so that what they handled
    /// is acknowledged before the DISCONNECT; what its queues still hold is not, and comes
    /// again at the next connection.
    async fn close(&self, deadline: Duration) {
        {
            let mut state = self.inner.lock();
            if state.stopping || state.closing {
                return;
            }
            state.closing = true;
        }
        let holders = std::mem::take(&mut *self.inner.wills.lock().await);
        self.refresh_will_routes(&[]);
        let announced = futures::future::join_all(holders.iter().map(|h| self.announce(h))).await;
        let mut releases = Vec::new();
        for (holder, announced) in holders.into_iter().zip(announced) {
            // A will the host could not publish is left to the broker: no DISCONNECT.
            if announced {
                releases.push(holder.release());
            } else {
                holder.abandon();
            }
        }
        futures::future::join_all(releases).await;
        let subs: Vec<Subscription> = {
            let mut state = self.inner.lock();
            state.stopping = true;
            // The queues' senders go with this: each consumer ends after its handler.
            std::mem::take(&mut state.subs)
                .into_iter()
                .map(|(sub, _)| sub)
                .collect()
        };
        for sub in &subs {
            sub.cancel();
        }
        if self.inner.session == Session::Persistent {
            let idle = futures::future::join_all(subs.iter().map(Subscription::idle));
            if tokio::time::timeout(deadline, idle).await.is_err() {
                tracing::warn!(
                    target: "brewblox_host::mqtt",
                    "MQTT durable handlers still running {:.1} s into the stop; their messages \
                     come again at the next start",
                    deadline.as_secs_f64()
                );
            }
        }
        if self.is_connected() {
            let _ = self.inner.client.try_disconnect();
        }
        let task = self.inner.task.lock().ok().and_then(|mut t| t.take());
        if let Some(mut task) = task {
            // The DISCONNECT is sent by the task; then it is told to stop.
            let grace = deadline.min(Duration::from_secs(2));
            if tokio::time::timeout(grace, &mut task).await.is_err() {
                self.inner.stop.stop();
                if tokio::time::timeout(Duration::from_secs(1), &mut task)
                    .await
                    .is_err()
                {
                    task.abort();
                }
            }
        }
        let mut state = self.inner.lock();
        state.status = MqttState::Closed;
        tracing::info!(
            target: "brewblox_host::mqtt",
            "Closed MQTT connection {}",
            self.inner.client_id
        );
    }
}

/// The health of every subscription of one connection.
fn subscription_health(state: &State) -> Vec<MqttSubHealth> {
    state
        .subs
        .iter()
        .map(|(sub, _)| {
            let state = sub.state();
            MqttSubHealth {
                id: sub.id(),
                filter: sub.filter().to_owned(),
                plugin: sub.owner().map(str::to_owned),
                state: state.name(),
                error: match state {
                    SubscriptionState::Failed { error } => Some(error),
                    _ => None,
                },
                dropped: sub.dropped(),
                qos: subscription::qos(sub) as u8,
            }
        })
        .collect()
}
