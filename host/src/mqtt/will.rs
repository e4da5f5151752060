//! The wills the broker holds for the service: one connection per plugin's will.
//!
//! MQTT gives a connection exactly one will, fixed when it connects. A service has one MQTT
//! connection for its traffic and may have several plugins that each must announce their
//! own death (each clears its own retained state). So the host opens, beside the main
//! connection, one small connection per will that carries nothing but that will (and its
//! keepalive pings). If the process dies, every connection drops and the broker announces
//! every will; at a clean stop the host publishes each will itself and closes these
//! connections with a DISCONNECT, after which the broker announces nothing.
//!
//! A plugin's publishes on its own will topic travel on its will's connection, not on the
//! main one. The broker handles one connection's packets in order, so the last state a
//! plugin published always comes before its will, whether the host publishes the will at a
//! clean stop or the broker announces it after a crash. On two connections a state update
//! still in the main connection's socket when the process died could land after the will
//! and leave a dead service's retained state saying it is alive.
//!
//! A reload whose plugins declare other wills opens the new connections first and waits
//! (bounded) until the broker acknowledged them, so that the broker holds the new wills
//! before the new plugins serve; only then are the connections of wills no longer declared
//! closed. Health shows a will as `held` only while its connection is acknowledged.

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex},
    time::Duration,
};

use rumqttc::{AsyncClient, Event, Incoming, Outgoing, QoS};
use serde::Serialize;
use tokio::{
    sync::{oneshot, watch},
    task::JoinHandle,
};

use super::{config::MqttConfig, connection, tls::TlsError, MqttError, Waiter, Will};
use crate::{broker_list::Brokers, sync::Unpoisoned};

/// One will in `/_service/health`'s `mqtt.wills`.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct WillHealth {
    /// The plugin that declared it.
    pub plugin: String,
    pub topic: String,
    /// Whether the broker holds it now (its connection is up and acknowledged).
    pub held: bool,
}

/// Publishes handed to a will connection's client: in the order its event loop sends
/// them, then (QoS 1) by packet id until the broker's PUBACK.
#[derive(Default)]
struct Pending {
    sending: VecDeque<(QoS, Waiter)>,
    unacked: super::ByPacketId<Waiter>,
}

impl Pending {
    fn sent(&mut self, pkid: u16) {
        if let Some((qos, waiter)) = self.sending.pop_front() {
            if qos == QoS::AtMostOnce {
                let _ = waiter.send(Ok(()));
            } else {
                self.unacked.insert(pkid, waiter);
            }
        }
    }

    fn acked(&mut self, pkid: u16) {
        if let Some(waiter) = self.unacked.remove(&pkid) {
            let _ = waiter.send(Ok(()));
        }
    }

    fn fail_all(&mut self, reason: &str) {
        let waiters = self.sending.drain(..).map(|(_, w)| w);
        for waiter in waiters.chain(self.unacked.drain().map(|(_, w)| w)) {
            let _ = waiter.send(Err(MqttError::Unavailable(reason.to_owned())));
        }
    }
}

/// The publishing side of a will's connection: what the bus needs to send a plugin's
/// messages on its will topic in order with the will. Cheap to clone.
#[derive(Clone)]
pub(crate) struct WillRoute {
    pub plugin: String,
    pub topic: String,
    client: AsyncClient,
    pending: Arc<Mutex<Pending>>,
    held: watch::Receiver<bool>,
}

impl WillRoute {
    pub fn is_held(&self) -> bool {
        *self.held.borrow()
    }

    pub fn health(&self) -> WillHealth {
        WillHealth {
            plugin: self.plugin.clone(),
            topic: self.topic.clone(),
            held: self.is_held(),
        }
    }

    /// Hands a publish to this connection; the receiver says when it was sent (QoS 0) or
    /// acknowledged (QoS 1). Errors at once while the connection is down or the client busy.
    pub fn send(
        &self,
        topic: &str,
        payload: Vec<u8>,
        qos: QoS,
        retain: bool,
    ) -> Result<oneshot::Receiver<Result<(), MqttError>>, MqttError> {
        if !self.is_held() {
            return Err(MqttError::Unavailable(format!(
                "the connection of the will on '{}' is down",
                self.topic.escape_debug()
            )));
        }
        let (tx, rx) = oneshot::channel();
        let mut pending = self.pending.locked();
        self.client
            .try_publish(topic, qos, retain, payload)
            .map_err(|err| MqttError::Unavailable(format!("MQTT client busy: {err}")))?;
        pending.sending.push_back((qos, tx));
        Ok(rx)
    }
}

/// A connection that carries one will.
pub(crate) struct WillHolder {
    pub plugin: String,
    pub will: Will,
    route: WillRoute,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl WillHolder {
    /// Starts connecting, with client id `<the service's id>-will-<n>`.
    pub fn start(cfg: &MqttConfig, plugin: &str, will: Will, n: u64) -> Result<Self, TlsError> {
        let id = format!("{}-will-{n}", connection::client_id(cfg));
        let (client, mut eventloop) =
            connection::client_with(cfg, id, Some(&will), super::Session::Clean)?;
        // A will's connection follows the broker list on its own; it has no metrics.
        let brokers = Brokers::new(super::BUS, None, cfg.endpoints());
        let (cfg, last_will) = (cfg.clone(), will.clone());
        let (held_tx, held) = watch::channel(false);
        let pending = Arc::new(Mutex::new(Pending::default()));
        let route = WillRoute {
            plugin: plugin.to_owned(),
            topic: will.topic.clone(),
            client,
            pending: pending.clone(),
            held,
        };
        let stop = watch::channel(false).0;
        let mut stopped = stop.subscribe();
        let (longest, topic) = (cfg.reconnect_interval, will.topic.clone());
        let task = tokio::spawn(async move {
            let mut backoff = super::backoff::Backoff::new(longest);
            loop {
                let event = tokio::select! {
                    _ = stopped.changed() => break,
                    event = eventloop.poll() => event,
                };
                match event {
                    Ok(Event::Incoming(Incoming::ConnAck(_))) => {
                        backoff.connected();
                        brokers.connected();
                        held_tx.send_replace(true);
                    }
                    Ok(Event::Outgoing(Outgoing::Publish(pkid))) => pending.locked().sent(pkid),
                    Ok(Event::Incoming(Incoming::PubAck(ack))) => pending.locked().acked(ack.pkid),
                    Ok(Event::Outgoing(Outgoing::Disconnect)) => {
                        // Let the DISCONNECT reach the broker, which then drops the will.
                        let _ = tokio::time::timeout(Duration::from_millis(500), eventloop.poll())
                            .await;
                        break;
                    }
                    Ok(_) => {}
                    Err(err) => {
                        pending
                            .locked()
                            .fail_all(&format!("will connection lost: {err}"));
                        if held_tx.send_replace(false) {
                            tracing::warn!(
                                target: "brewblox_host::mqtt",
                                "MQTT will connection for '{}' lost: {err}; reconnecting",
                                topic.escape_debug()
                            );
                        }
                        eventloop.clean();
                        if !connection::next_broker(
                            &cfg,
                            &brokers,
                            &mut eventloop,
                            Some(&last_will),
                        ) {
                            continue;
                        }
                        let wait = backoff.next_wait();
                        tokio::select! {
                            _ = stopped.changed() => break,
                            _ = tokio::time::sleep(wait) => {}
                        }
                    }
                }
            }
            held_tx.send_replace(false);
            pending.locked().fail_all("will connection closed");
        });
        Ok(WillHolder {
            plugin: plugin.to_owned(),
            will,
            route,
            stop,
            task,
        })
    }

    /// The publishing side of this connection.
    pub fn route(&self) -> &WillRoute {
        &self.route
    }

    /// Waits at most `timeout` until the broker holds the will.
    pub async fn wait_held(&self, timeout: Duration) -> bool {
        let mut held = self.route.held.clone();
        tokio::time::timeout(timeout, held.wait_for(|h| *h))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Drops the connection without a DISCONNECT: the broker announces the will itself (when
    /// the host could not publish it).
    pub fn abandon(self) {
        self.task.abort();
    }

    /// Closes the connection with a DISCONNECT, so that the broker drops the will without
    /// announcing it. At most about two seconds.
    pub async fn release(self) {
        let WillHolder {
            route, stop, task, ..
        } = self;
        let mut task = task;
        if route.client.try_disconnect().is_err()
            || tokio::time::timeout(Duration::from_secs(2), &mut task)
                .await
                .is_err()
        {
            stop.send_replace(true);
            if tokio::time::timeout(Duration::from_millis(500), &mut task)
                .await
                .is_err()
            {
                task.abort();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn waiter() -> (Waiter, oneshot::Receiver<Result<(), MqttError>>) {
        oneshot::channel()
    }

    #[test]
    fn a_qos0_publish_is_done_when_sent_a_qos1_one_when_acknowledged() {
        let mut pending = Pending::default();
        let (w0, mut r0) = waiter();
        let (w1, mut r1) = waiter();
        pending.sending.push_back((QoS::AtMostOnce, w0));
        pending.sending.push_back((QoS::AtLeastOnce, w1));
        pending.sent(7);
        assert!(matches!(r0.try_recv(), Ok(Ok(()))));
        pending.sent(8);
        assert!(r1.try_recv().is_err(), "not acknowledged yet");
        pending.acked(7); // a stray ack for another packet changes nothing
        assert!(r1.try_recv().is_err());
        pending.acked(8);
        assert!(matches!(r1.try_recv(), Ok(Ok(()))));
    }

    #[test]
    fn a_lost_connection_fails_every_waiting_publish() {
        let mut pending = Pending::default();
        let (w0, mut r0) = waiter();
        let (w1, mut r1) = waiter();
        pending.sending.push_back((QoS::AtLeastOnce, w0));
        pending.sent(1);
        pending.sending.push_back((QoS::AtLeastOnce, w1));
        pending.fail_all("gone");
        for r in [&mut r0, &mut r1] {
            assert!(matches!(r.try_recv(), Ok(Err(MqttError::Unavailable(m))) if m == "gone"));
        }
    }
}
