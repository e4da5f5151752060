//! The publisher: its own connection (as the original), connected on first use, one
//! confirm-mode channel that is replaced whenever it breaks.
//!
//! Replacing the channel after a channel error is the fix for the original's stuck publisher
//! (docs/brewblox-service-0.20.0.md, quirk 5): a 406/404 reaches that caller and no other.
//! Wire format is the original's: exchange declared (type as given, non-durable, auto-delete)
//! on every publish unless told not to, then `basic.publish` with *no* properties (no
//! content-type, transient) and mandatory=false. `Ok` only after the broker's confirm.

use std::sync::Arc;

use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::publisher_confirm::Confirmation;
use lapin::{BasicProperties, Channel};
use tokio::runtime::Handle;
use tokio::sync::watch;
use tokio::time::{timeout_at, Instant};

use super::config::{declare_exchange_like_original, BusConfig, ExchangeKind};
use super::connection::{Link, LinkStatus, Live, CLOSE_TIMEOUT};
use super::error::BusError;
use super::names::check_names;
use crate::metrics::bus::BusMetrics;

pub(crate) struct Publisher {
    pub(crate) link: Arc<Link>,
    cfg: Arc<BusConfig>,
    /// (connection generation, channel); replaced when broken or from an older connection.
    /// In an `Arc`: a lapin `Channel` is some sixteen `Arc`s, cloned on every publish.
    channel: tokio::sync::Mutex<Option<(u64, Arc<Channel>)>>,
    stopping: watch::Receiver<bool>,
    metrics: BusMetrics,
}

impl Publisher {
    pub fn new(cfg: Arc<BusConfig>, stopping: watch::Receiver<bool>, metrics: BusMetrics) -> Self {
        Publisher {
            link: Link::new("publisher", cfg.clone(), metrics.clone()),
            metrics,
            cfg,
            channel: tokio::sync::Mutex::new(None),
            stopping,
        }
    }

    /// Publishes and waits for the broker's confirm; counted in the metrics either way.
    pub async fn publish(
        &self,
        exchange: &str,
        routing: &str,
        payload: &[u8],
        kind: ExchangeKind,
        declare_exchange: bool,
    ) -> Result<(), BusError> {
        let mut confirmed = None;
        let result = self
            .publish_confirmed(
                exchange,
                routing,
                payload,
                kind,
                declare_exchange,
                &mut confirmed,
            )
            .await;
        self.metrics
            .published(super::connection::BUS, result.is_ok(), confirmed);
        result
    }

    /// `confirmed`: set to the time from sending to the confirm, when confirmed.
    async fn publish_confirmed(
        &self,
        exchange: &str,
        routing: &str,
        payload: &[u8],
        kind: ExchangeKind,
        declare_exchange: bool,
        confirmed: &mut Option<std::time::Duration>,
    ) -> Result<(), BusError> {
        if *self.stopping.borrow() {
            return Err(BusError::ShuttingDown);
        }
        check_names(exchange, routing)?;
        let limit = self.cfg.max_message_size;
        if limit > 0 && payload.len() > limit {
            return Err(BusError::TooLarge {
                size: payload.len(),
                limit,
            });
        }
        let Ok(handle) = Handle::try_current() else {
            return Err(BusError::Unavailable(
                "publish called outside a tokio runtime".into(),
            ));
        };
        self.link.start(&handle);
        let deadline = Instant::now() + self.cfg.publish_timeout;
        let live = self.connected(deadline).await?;
        // The usual case, the cached channel, needs no timer; making one does.
        let channel = match self.cached_channel(&live) {
            Some(channel) => channel,
            None => match timeout_at(deadline, self.channel(&live)).await {
                Ok(r) => r?,
                Err(_) => return Err(BusError::Timeout),
            },
        };
        let sent = Instant::now();
        let result = timeout_at(
            deadline,
            send(&channel, exchange, routing, payload, kind, declare_exchange),
        )
        .await
        .unwrap_or(Err(BusError::Timeout));
        if result.is_ok() {
            *confirmed = Some(sent.elapsed());
        }
        if result.is_err() && !matches!(result, Err(BusError::Rejected(_))) {
            // Channel error, lost connection or timeout: never reuse this channel.
            self.forget(live.generation, &channel).await;
        }
        result
    }

    /// The live connection; if down, ask for an immediate attempt and wait for its outcome
    /// (so a broker that is back is used at once, and one that is down fails fast).
    async fn connected(&self, deadline: Instant) -> Result<Live, BusError> {
        if let Some(live) = self.link.current() {
            return Ok(live);
        }
        let mut rx = self.link.subscribe();
        let seen = self.link.failed_attempts();
        self.link.nudge();
        loop {
            {
                let status = rx.borrow_and_update();
                match &*status {
                    LinkStatus::Connected(live) if !live.is_lost() => return Ok(live.clone()),
                    LinkStatus::Down { error, seq } if *seq > seen => {
                        return Err(BusError::Unavailable(error.clone()))
                    }
                    LinkStatus::Closed => return Err(BusError::ShuttingDown),
                    _ => {}
                }
            }
            match timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return Err(BusError::ShuttingDown),
                Err(_) => {
                    return Err(BusError::Unavailable(format!(
                        "not connected to {} after {:?}",
                        self.cfg.endpoint(),
                        self.cfg.publish_timeout
                    )))
                }
            }
        }
    }

    /// The cached channel of this connection, if there is one and nobody holds the lock.
    fn cached_channel(&self, live: &Live) -> Option<Arc<Channel>> {
        let cached = self.channel.try_lock().ok()?;
        match &*cached {
            Some((generation, channel))
                if *generation == live.generation && channel.status().connected() =>
            {
                Some(Arc::clone(channel))
            }
            _ => None,
        }
    }

    async fn channel(&self, live: &Live) -> Result<Arc<Channel>, BusError> {
        let mut cached = self.channel.lock().await;
        if let Some((generation, channel)) = &*cached {
            if *generation == live.generation && channel.status().connected() {
                return Ok(Arc::clone(channel));
            }
        }
        *cached = None;
        let channel = live.conn.create_channel().await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        let channel = Arc::new(channel);
        *cached = Some((live.generation, channel.clone()));
        Ok(channel)
    }

    async fn forget(&self, generation: u64, channel: &Channel) {
        let mut cached = self.channel.lock().await;
        if matches!(&*cached, Some((g, c)) if *g == generation && c.id() == channel.id()) {
            *cached = None; // dropping the last clone closes it if still open
        }
    }

    pub async fn shutdown(&self) {
        let channel = self.channel.lock().await.take();
        if let Some((_, channel)) = channel {
            if channel.status().connected() {
                let _ = tokio::time::timeout(CLOSE_TIMEOUT, channel.close(200, "shutdown")).await;
            }
        }
        self.link.close().await;
    }
}

async fn send(
    channel: &Channel,
    exchange: &str,
    routing: &str,
    payload: &[u8],
    kind: ExchangeKind,
    declare_exchange: bool,
) -> Result<(), BusError> {
    if declare_exchange {
        declare_exchange_like_original(channel, exchange, kind).await?;
    }
    let confirm = channel
        .basic_publish(
            exchange,
            routing,
            BasicPublishOptions::default(),
            payload,
            BasicProperties::default(),
        )
        .await?;
    match confirm.await? {
        Confirmation::Ack(_) => Ok(()),
        Confirmation::Nack(_) => Err(BusError::Rejected("broker nacked the message".into())),
        // Would mean confirm mode is off: never report that as success.
        Confirmation::NotRequested => Err(BusError::Protocol(
            "publisher confirms not enabled on the channel".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The cap is checked before anything touches the network: no broker listens here.
    #[tokio::test]
    async fn a_message_over_the_limit_fails_before_connecting() {
        let cfg = Arc::new(BusConfig {
            host: "127.0.0.1".into(),
            port: 1,
            max_message_size: 10,
            ..BusConfig::default()
        });
        let (_stop, stopping) = watch::channel(false);
        let publisher = Publisher::new(cfg, stopping, BusMetrics::detached());
        let err = publisher
            .publish("ex", "k", &[b'x'; 11], ExchangeKind::Topic, true)
            .await
            .unwrap_err();
        assert_eq!(
            err,
            BusError::TooLarge {
                size: 11,
                limit: 10
            }
        );
        assert!(!err.is_unavailable());
        assert!(err.to_string().contains("11 bytes"), "{err}");
        // At the limit it is tried (and fails for want of a broker, not for its size).
        let err = publisher
            .publish("ex", "k", &[b'x'; 10], ExchangeKind::Topic, true)
            .await
            .unwrap_err();
        assert!(err.is_unavailable(), "{err}");
    }

    /// A name over 255 bytes is refused before anything touches the network.
    #[tokio::test]
    async fn a_name_amqp_cannot_carry_fails_before_connecting() {
        let cfg = Arc::new(BusConfig {
            host: "127.0.0.1".into(),
            port: 1,
            ..BusConfig::default()
        });
        let (_stop, stopping) = watch::channel(false);
        let publisher = Publisher::new(cfg, stopping, BusMetrics::detached());
        let long = "s".repeat(256);
        for (exchange, routing, field) in
            [(&long[..], "k", "exchange"), ("e", &long[..], "routing")]
        {
            let err = publisher
                .publish(exchange, routing, b"1", ExchangeKind::Topic, true)
                .await
                .unwrap_err();
            assert!(
                matches!(&err, BusError::InvalidName { field: f, .. } if *f == field),
                "{err}"
            );
        }
        assert_eq!(publisher.link.failed_attempts(), 0);
    }
}
