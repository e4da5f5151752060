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
//! A reload whose plugins declare other wills opens the new connections first and waits
//! (bounded) until the broker acknowledged them, so that the broker holds the new wills
//! before the new plugins serve; only then are the connections of wills no longer declared
//! closed. Health shows a will as `held` only while its connection is acknowledged.

use std::time::Duration;

use rumqttc::{AsyncClient, Event, Incoming, Outgoing};
use serde::Serialize;
use tokio::{sync::watch, task::JoinHandle};

use super::{config::MqttConfig, connection, tls::TlsError, Will};
use crate::broker_list::Brokers;

/// One will in `/_service/health`'s `mqtt.wills`.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct WillHealth {
    /// The plugin that declared it.
    pub plugin: String,
    pub topic: String,
    /// Whether the broker holds it now (its connection is up and acknowledged).
    pub held: bool,
}

/// A connection that carries one will.
pub(crate) struct WillHolder {
    pub plugin: String,
    pub will: Will,
    client: AsyncClient,
    held: watch::Receiver<bool>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl WillHolder {
    /// Starts connecting, with client id `<the service's id>-will-<n>`.
    pub fn start(cfg: &MqttConfig, plugin: &str, will: Will, n: u64) -> Result<Self, TlsError> {
        let id = format!("{}-will-{n}", connection::client_id(cfg));
        let (client, mut eventloop) = connection::client_with(cfg, id, Some(&will))?;
        // A will's connection follows the broker list on its own; it has no metrics.
        let brokers = Brokers::new(super::BUS, None, cfg.endpoints());
        let (cfg, last_will) = (cfg.clone(), will.clone());
        let (held_tx, held) = watch::channel(false);
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
                    Ok(Event::Outgoing(Outgoing::Disconnect)) => {
                        // Let the DISCONNECT reach the broker, which then drops the will.
                        let _ = tokio::time::timeout(Duration::from_millis(500), eventloop.poll())
                            .await;
                        break;
                    }
                    Ok(_) => {}
                    Err(err) => {
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
        });
        Ok(WillHolder {
            plugin: plugin.to_owned(),
            will,
            client,
            held,
            stop,
            task,
        })
    }

    pub fn is_held(&self) -> bool {
        *self.held.borrow()
    }

    /// Waits at most `timeout` until the broker holds the will.
    pub async fn wait_held(&self, timeout: Duration) -> bool {
        let mut held = self.held.clone();
        tokio::time::timeout(timeout, held.wait_for(|h| *h))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    pub fn health(&self) -> WillHealth {
        WillHealth {
            plugin: self.plugin.clone(),
            topic: self.will.topic.clone(),
            held: self.is_held(),
        }
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
            client, stop, task, ..
        } = self;
        let mut task = task;
        if client.try_disconnect().is_err()
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
