//! The task that drives the MQTT client: connects, notices a loss, reconnects (to the next
//! broker of the list at once; after a full round of failures it pauses, the pauses doubling
//! from 50 ms to the reconnect interval, with jitter), subscribes again on every connect,
//! completes publishes when sent or acknowledged, and routes each message to the queue of
//! every subscription whose filter matches its topic. The same task drives the service's
//! clean-session connection and its persistent session, whose messages are acknowledged
//! after their handlers (see [`super::ack`]).
//!
//! The pauses between rounds are [`super::backoff`]'s; the order of the brokers is
//! [`crate::broker_list`]'s.

use crate::metrics::bus::Dropped;
use bytes::Bytes;
use std::{sync::Arc, time::Duration};

use rumqttc::{
    AsyncClient, ConnectionError, Event, EventLoop, Incoming, LastWill, MqttOptions, Outgoing, QoS,
    SubscribeReasonCode, Transport,
};

use super::ack::{Ack, PendingAck};
use super::tls::TlsError;
use super::{config::MqttConfig, tls, topic, MqttError, MqttState, Session, Shared, State};
use crate::broker_list::{Address, Brokers};
use crate::eventbus::delivery::{Queued, Topic};
use crate::eventbus::queue::{QueueSender, TrySendError};
use crate::eventbus::{Subscription, SubscriptionState};

/// Requests (publishes, subscriptions) the client holds before the event loop takes them.
const REQUEST_CAPACITY: usize = 1024;
/// What a packet may hold beyond its payload: a topic of [`topic::MAX_TOPIC_BYTES`] with its
/// length prefix, the packet id and the fixed header, rounded up.
const PACKET_OVERHEAD: usize = 2 * 65536;

/// The largest packet taken from the broker, in either direction: the payload limit plus
/// [`PACKET_OVERHEAD`]. A payload over the limit that fits is dropped by the host with a log
/// line and the connection goes on; a larger packet is refused by rumqttc from its header
/// alone (nothing of it is buffered), which ends the connection: it reconnects with back-off.
pub(super) fn max_packet(cfg: &MqttConfig) -> usize {
    cfg.max_message_size.saturating_add(PACKET_OVERHEAD)
}

pub(super) fn client_id(cfg: &MqttConfig) -> String {
    cfg.client_id.clone().unwrap_or_else(|| {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        format!(
            "brewblox-host-{}-{:x}{:x}",
            cfg.service.replace('/', "-"),
            std::process::id(),
            nanos
        )
    })
}

/// A client for `cfg` with client id `id`, keeping `session`, and, if given, a will (the
/// service's connections carry none: the wills have connections of their own, see `will`).
pub(super) fn client_with(
    cfg: &MqttConfig,
    id: String,
    will: Option<&super::Will>,
    session: Session,
) -> Result<(AsyncClient, EventLoop), TlsError> {
    let first = cfg.addresses().swap_remove(0);
    let options = options(cfg, id, will, &first, session)?;
    let (client, mut eventloop) = AsyncClient::new(options, REQUEST_CAPACITY);
    let timeout = cfg.timeout.as_secs().max(1);
    eventloop.network_options.set_connection_timeout(timeout);
    Ok((client, eventloop))
}

/// After a failed attempt or a lost connection: moves `brokers` on and points `eventloop`
/// at the next broker (same client id, session and will). True when every broker of the
/// list failed in a row: the caller then pauses.
pub(super) fn next_broker(
    cfg: &MqttConfig,
    brokers: &Brokers,
    eventloop: &mut EventLoop,
    will: Option<&super::Will>,
) -> bool {
    let round_done = brokers.failed();
    let addresses = cfg.addresses();
    if let (true, Some(address)) = (addresses.len() > 1, addresses.get(brokers.current())) {
        let id = eventloop.mqtt_options.client_id();
        let session = match eventloop.mqtt_options.clean_session() {
            true => Session::Clean,
            false => Session::Persistent,
        };
        match options(cfg, id, will, address, session) {
            Ok(options) => eventloop.mqtt_options = options,
            Err(err) => tracing::warn!(
                target: "brewblox_host::mqtt",
                "MQTT broker {} skipped: {err}",
                brokers.current_label()
            ),
        }
    }
    round_done
}

/// The client options for the broker at `address`. A persistent session acknowledges
/// each message itself, after its handlers (see [`super::ack`]).
fn options(
    cfg: &MqttConfig,
    id: String,
    will: Option<&super::Will>,
    address: &Address,
    session: Session,
) -> Result<MqttOptions, TlsError> {
    let host = if cfg.protocol.is_websocket() {
        cfg.websocket_url(address)
    } else {
        address.host.clone()
    };
    let mut options = MqttOptions::new(id, host, address.port.unwrap_or(cfg.port()));
    if let Some(will) = will {
        options.set_last_will(LastWill::new(
            will.topic.clone(),
            will.payload.clone(),
            QoS::AtLeastOnce,
            will.retain,
        ));
    }
    options
        .set_keep_alive(ping_interval(cfg.keepalive))
        .set_clean_session(session == Session::Clean)
        .set_manual_acks(session == Session::Persistent)
        .set_max_packet_size(max_packet(cfg), max_packet(cfg))
        .set_request_channel_capacity(REQUEST_CAPACITY);
    if let (Some(user), password) = (&cfg.user, &cfg.password) {
        options.set_credentials(user.clone(), password.clone().unwrap_or_default());
    }
    let transport = match cfg.protocol {
        super::Protocol::Mqtt => Transport::Tcp,
        super::Protocol::Ws => Transport::Ws,
        super::Protocol::Mqtts => Transport::tls_with_config(rustls_config(cfg)?),
        super::Protocol::Wss => Transport::wss_with_config(rustls_config(cfg)?),
    };
    options.set_transport(transport);
    Ok(options)
}

/// rumqttc pings after one interval of silence and gives up when the next comes without an
/// answer: pinging at half the keepalive notices a dead broker within the keepalive. Whole
/// seconds, at least one (MQTT carries seconds; rumqttc refuses less).
fn ping_interval(keepalive: Duration) -> Duration {
    Duration::from_secs((keepalive.as_secs() / 2).max(1))
}

fn rustls_config(cfg: &MqttConfig) -> Result<rumqttc::TlsConfiguration, TlsError> {
    Ok(rumqttc::TlsConfiguration::Rustls(Arc::new(
        tls::client_config(cfg.tls_verify)?,
    )))
}

/// Asks the broker for `filter` (the connection is up and `state` locked).
pub(super) fn ask(shared: &Shared, state: &mut State, filter: &str, qos: QoS) {
    match shared.client.try_subscribe(filter, qos) {
        Ok(()) => state.subscribing.push_back(filter.to_owned()),
        Err(err) => tracing::warn!(
            target: "brewblox_host::mqtt",
            "MQTT subscription <{}> not sent ({err}); it is sent again at the next connection",
            filter.escape_debug()
        ),
    }
}

/// Forgets the subscription `id`; unsubscribes its filter when no other uses it, unless the
/// bus is stopping (a persistent session keeps its filters for the next start).
pub(super) fn forget(shared: &Shared, id: u64) {
    let mut state = shared.lock();
    let Some(index) = state.subs.iter().position(|(s, _)| s.id() == id) else {
        return;
    };
    let (sub, _queue) = state.subs.remove(index);
    let still_used = state.subs.iter().any(|(s, _)| s.filter() == sub.filter());
    if !still_used && state.status == MqttState::Connected && !state.stopping {
        let _ = shared.client.try_unsubscribe(sub.filter());
    }
    tracing::info!(target: "brewblox_host::mqtt", "MQTT subscription {sub} cancelled");
}

/// Runs until told to stop or the client is disconnected at a clean stop.
pub(super) async fn run(shared: Arc<Shared>, mut eventloop: EventLoop) {
    // Made once and polled in every turn the event loop runs dry (see `stop`).
    let stopped = shared.stop.stopped();
    tokio::pin!(stopped);
    let mut backoff = super::backoff::Backoff::new(shared.cfg.reconnect_interval);
    let mut warned = false;
    loop {
        // The event loop first: the stop is looked at only when the loop has nothing to
        // hand over, not for every packet. It runs dry soon after a stop: its socket reads
        // draw on tokio's cooperative budget, and a stopping bus takes no more publishes.
        let event = tokio::select! {
            biased;
            event = eventloop.poll() => event,
            () = &mut stopped => break,
        };
        match event {
            Ok(Event::Incoming(Incoming::ConnAck(_))) => {
                backoff.connected();
                warned = false;
                connected(&shared);
            }
            Ok(Event::Incoming(Incoming::Publish(publish))) => dispatch(&shared, publish),
            Ok(Event::Incoming(Incoming::PubAck(ack))) => {
                if let Some(waiter) = shared.lock().unacked.remove(&ack.pkid) {
                    let _ = waiter.send(Ok(()));
                }
            }
            Ok(Event::Incoming(Incoming::SubAck(ack))) => suback(&shared, ack),
            Ok(Event::Outgoing(Outgoing::Publish(pkid))) => {
                let mut state = shared.lock();
                if let Some((qos, waiter)) = state.sending.pop_front() {
                    if qos == QoS::AtMostOnce {
                        let _ = waiter.send(Ok(()));
                    } else {
                        state.unacked.insert(pkid, waiter);
                    }
                }
            }
            Ok(Event::Outgoing(Outgoing::Subscribe(pkid))) => {
                let mut state = shared.lock();
                if let Some(filter) = state.subscribing.pop_front() {
                    state.suback.insert(pkid, filter);
                }
            }
            Ok(Event::Outgoing(Outgoing::Disconnect)) => {
                if shared.lock().stopping {
                    // Let the DISCONNECT reach the broker before the socket goes.
                    let _ =
                        tokio::time::timeout(Duration::from_millis(500), eventloop.poll()).await;
                    break;
                }
            }
            Ok(_) => {}
            Err(err) => {
                if shared.lock().stopping {
                    break;
                }
                lost(&shared, &mut eventloop, &err, &mut warned);
                if !next_broker(&shared.cfg, &shared.brokers, &mut eventloop, None) {
                    // The next broker of the list, at once.
                    continue;
                }
                let wait = backoff.next_wait();
                tokio::select! {
                    () = &mut stopped => break,
                    _ = tokio::time::sleep(wait) => {}
                }
            }
        }
    }
    fail_all(&shared, &mut shared.lock(), "MQTT bus is shutting down");
    shared.connected.send_replace(false);
}

fn connected(shared: &Shared) {
    let mut state = shared.lock();
    let reconnect = state.last_error.is_some();
    if reconnect {
        state.reconnects += 1;
    }
    shared
        .metrics
        .connection(super::BUS, shared.session.label(), true, reconnect);
    state.status = MqttState::Connected;
    shared.brokers.connected();
    tracing::info!(
        target: "brewblox_host::mqtt",
        "Connected to MQTT broker {} as {}",
        shared.brokers.current_label(),
        shared.client_id
    );
    let mut asked: Vec<(String, QoS)> = Vec::new();
    for (sub, _) in &state.subs {
        sub.set_state(SubscriptionState::Pending);
        if !asked.iter().any(|(f, _)| f == sub.filter()) {
            asked.push((sub.filter().to_owned(), super::subscription::qos(sub)));
        }
    }
    for (filter, qos) in asked {
        ask(shared, &mut state, &filter, qos);
    }
    drop(state);
    shared.connected.send_replace(true);
}

fn suback(shared: &Shared, ack: rumqttc::SubAck) {
    let mut state = shared.lock();
    let Some(filter) = state.suback.remove(&ack.pkid) else {
        return;
    };
    let refused = ack
        .return_codes
        .iter()
        .any(|code| matches!(code, SubscribeReasonCode::Failure));
    let new_state = if refused {
        tracing::warn!(
            target: "brewblox_host::mqtt",
            "MQTT broker refused the subscription <{}>",
            filter.escape_debug()
        );
        SubscriptionState::Failed {
            error: format!("broker refused <{}>", filter.escape_debug()),
        }
    } else {
        SubscriptionState::Active {
            queue: filter.clone(),
        }
    };
    for (sub, _) in state.subs.iter().filter(|(s, _)| s.filter() == filter) {
        if !refused {
            // Its series appear now, at zero; one that never became active has none.
            sub.metrics();
        }
        sub.set_state(new_state.clone());
    }
}

/// The connection failed or was lost: every waiter fails, every request not yet sent is
/// dropped (a clean session would drop them anyway), and subscriptions wait for the next
/// connection.
fn lost(shared: &Shared, eventloop: &mut EventLoop, err: &ConnectionError, warned: &mut bool) {
    let mut state = shared.lock();
    eventloop.clean();
    eventloop.pending.clear();
    let was_connected = state.status == MqttState::Connected;
    let text = match err {
        ConnectionError::MqttState(rumqttc::StateError::Deserialization(
            rumqttc::mqttbytes::Error::PayloadSizeLimitExceeded(size),
        )) => format!(
            "the broker sent a packet of {size} bytes, larger than {} bytes (the message limit \
             plus room for the topic)",
            max_packet(&shared.cfg)
        ),
        other => format!("{other}"),
    };
    let text = format!("{}: {text}", shared.brokers.current_label());
    if was_connected || !*warned {
        tracing::warn!(
            target: "brewblox_host::mqtt",
            "MQTT broker {}: {text}; reconnecting",
            if was_connected { "lost" } else { "unreachable" },
        );
        *warned = true;
    }
    state.status = MqttState::Connecting;
    state.last_error = Some(text.clone());
    shared
        .metrics
        .connection(super::BUS, shared.session.label(), false, false);
    fail_all(shared, &mut state, &format!("connection lost: {text}"));
    for (sub, _) in &state.subs {
        sub.set_state(SubscriptionState::Pending);
    }
    drop(state);
    shared.connected.send_replace(false);
}

fn fail_all(_shared: &Shared, state: &mut State, reason: &str) {
    for (_, waiter) in state.sending.drain(..) {
        let _ = waiter.send(Err(MqttError::Unavailable(reason.to_owned())));
    }
    for (_, waiter) in state.unacked.drain() {
        let _ = waiter.send(Err(MqttError::Unavailable(reason.to_owned())));
    }
    state.subscribing.clear();
    state.suback.clear();
}

/// Hands a received message to every matching subscription's queue; a full queue drops it
/// for that subscription (counted, logged at the first drop and every 1000th). The topic and
/// payload are shared between the queues, not copied. On the persistent session a QoS 1
/// message is acknowledged once every matching subscription handled it; one no
/// subscription matches (a filter the session kept from an earlier run) or that is too large
/// is acknowledged at once, so that the broker does not keep sending it.
fn dispatch(shared: &Shared, publish: rumqttc::Publish) {
    let topic = publish.topic.as_str();
    let max = shared.cfg.max_message_size;
    let state = shared.lock();
    let matching = || {
        state
            .subs
            .iter()
            .filter(|(sub, _)| topic::matches(sub.filter(), topic))
    };
    let acknowledged = shared.session == Session::Persistent && publish.qos != QoS::AtMostOnce;
    if publish.payload.len() > max {
        for (sub, _) in matching() {
            sub.metrics().dropped(Dropped::TooLarge);
        }
        tracing::error!(
            target: "brewblox_host::mqtt",
            "MQTT message on '{}' of {} bytes is larger than the limit of {max} bytes; dropped",
            topic.escape_debug(),
            publish.payload.len()
        );
        if acknowledged {
            PendingAck::new(&shared.client, &publish, 0).send();
        }
        return;
    }
    let ack = acknowledged.then(|| PendingAck::new(&shared.client, &publish, matching().count()));
    if let Some(ack) = ack.as_ref().filter(|_| matching().next().is_none()) {
        tracing::debug!(
            target: "brewblox_host::mqtt",
            "MQTT message on '{}' matches no subscription of the session; acknowledged",
            topic.escape_debug()
        );
        ack.send();
        return;
    }
    // Each matching subscription is queued once the next is found, so that the last one
    // takes the received topic itself and only the others share a copy.
    let mut shared_topic: Option<std::sync::Arc<str>> = None;
    let mut previous: Option<&(Subscription, QueueSender<Queued<Ack>>)> = None;
    for matched in matching() {
        if let Some((sub, queue)) = previous.replace(matched) {
            let topic = shared_topic.get_or_insert_with(|| topic.into()).clone();
            let message = (Topic::Shared(topic), &publish.payload, publish.dup);
            enqueue(shared, sub, queue, message, &ack);
        }
    }
    if let Some((sub, queue)) = previous {
        let message = (Topic::Own(publish.topic), &publish.payload, publish.dup);
        enqueue(shared, sub, queue, message, &ack);
    }
}

/// Queues one message for `sub`, or counts and logs it dropped when its queue is full.
fn enqueue(
    shared: &Shared,
    sub: &Subscription,
    queue: &QueueSender<Queued<Ack>>,
    (topic, payload, redelivered): (Topic, &Bytes, bool),
    ack: &Ack,
) {
    let message = Queued {
        topic,
        payload: payload.clone(),
        redelivered,
        settle: ack.clone(),
    };
    let full = match queue.try_send(message) {
        Ok(()) => return,
        Err(TrySendError::Full(message)) => message,
        Err(TrySendError::Closed(message)) => {
            // Its consumer ended (cancelled): not handled here.
            if let Some(ack) = &message.settle {
                ack.abandon();
            }
            return;
        }
    };
    if let Some(ack) = &full.settle {
        ack.abandon();
    }
    sub.metrics().dropped(Dropped::QueueFull);
    let dropped = sub.count_dropped();
    if dropped.is_multiple_of(1000) {
        tracing::warn!(
            target: "brewblox_host::mqtt",
            "MQTT subscription {sub} is behind ({} queued); {} message(s) dropped",
            shared.cfg.queue_size,
            dropped + 1
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pings_at_half_the_keepalive_in_whole_seconds() {
        for (keepalive, ping) in [(60.0, 30), (2.0, 1), (1.0, 1), (0.2, 1), (5.0, 2)] {
            assert_eq!(
                ping_interval(Duration::from_secs_f64(keepalive)),
                Duration::from_secs(ping),
                "{keepalive}"
            );
        }
    }
}
