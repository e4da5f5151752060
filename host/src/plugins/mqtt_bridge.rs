//! Connects one generation's plugins to the host's [`MqttBus`], and records the
//! subscriptions they made, so that a reload can wait until the new generation's are
//! acknowledged before it swaps and cancel the old generation's after.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use crate::mqtt::{MqttBus, MqttError, MqttSink, MqttSubscription, QoS};

/// A generation's view of the MQTT bus.
pub struct MqttBridge {
    bus: MqttBus,
    made: Mutex<Vec<MqttSubscription>>,
}

impl MqttBridge {
    pub fn new(bus: MqttBus) -> Self {
        MqttBridge {
            bus,
            made: Mutex::new(Vec::new()),
        }
    }

    pub fn bus(&self) -> &MqttBus {
        &self.bus
    }

    fn live(&self) -> Vec<MqttSubscription> {
        let mut made = self.made.lock().unwrap_or_else(|e| e.into_inner());
        made.retain(|sub| !sub.is_cancelled());
        made.clone()
    }

    /// Subscribes through the bus and records the subscription as this generation's.
    pub fn subscribe(
        &self,
        filter: &str,
        qos: QoS,
        sink: Arc<dyn MqttSink>,
    ) -> Result<MqttSubscription, MqttError> {
        let sub = self.bus.subscribe(filter, qos, sink)?;
        self.made
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(sub.clone());
        Ok(sub)
    }

    /// Waits (at most `timeout`) until every live subscription is acknowledged or refused;
    /// `false` on timeout. Returns at once while the bus is not connected.
    pub async fn wait_bound(&self, timeout: Duration) -> bool {
        if !self.bus.is_connected() {
            return true;
        }
        let deadline = tokio::time::Instant::now() + timeout;
        for sub in self.live() {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if !sub.settled(left).await {
                return false;
            }
        }
        true
    }

    /// Cancels every subscription this generation made: nothing more reaches its handlers
    /// (a message already in a handler finishes).
    pub fn cancel_all(&self) {
        for sub in self.live() {
            sub.cancel();
        }
    }
}
