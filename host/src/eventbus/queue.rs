//! A subscription's bounded queue: the messages a transport without flow control (MQTT) has
//! received and its handler has not yet taken, at most `capacity` of them.
//!
//! An unbounded tokio channel and a count of what it holds. tokio's bounded channel gives
//! its slot back under a mutex at every receive; this queue's sender takes a slot with one
//! compare-and-swap and its receiver gives it back with one subtraction, for every message.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::mpsc;
pub(crate) use tokio::sync::mpsc::error::TrySendError;

/// A queue of at most `capacity` messages (at least one).
pub(crate) fn bounded<T>(capacity: usize) -> (QueueSender<T>, QueueReceiver<T>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let held = Arc::new(AtomicUsize::new(0));
    let sender = QueueSender {
        tx,
        held: held.clone(),
        capacity: capacity.max(1),
    };
    (sender, QueueReceiver { rx, held })
}

pub(crate) struct QueueSender<T> {
    tx: mpsc::UnboundedSender<T>,
    /// Messages sent and not yet received; never above `capacity`.
    held: Arc<AtomicUsize>,
    capacity: usize,
}

impl<T> QueueSender<T> {
    /// Queues `message` unless the queue is full or its receiver is gone; never waits.
    pub(crate) fn try_send(&self, message: T) -> Result<(), TrySendError<T>> {
        let capacity = self.capacity;
        let slot = self
            .held
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
                (held < capacity).then_some(held + 1)
            });
        if slot.is_err() {
            return Err(TrySendError::Full(message));
        }
        self.tx.send(message).map_err(|refused| {
            self.held.fetch_sub(1, Ordering::AcqRel);
            TrySendError::Closed(refused.0)
        })
    }
}

pub(crate) struct QueueReceiver<T> {
    rx: mpsc::UnboundedReceiver<T>,
    held: Arc<AtomicUsize>,
}

impl<T> QueueReceiver<T> {
    /// The next message; `None` once every sender is gone and the queue is empty.
    pub(crate) async fn recv(&mut self) -> Option<T> {
        let message = self.rx.recv().await?;
        self.held.fetch_sub(1, Ordering::AcqRel);
        Some(message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn holds_at_most_its_capacity_and_frees_a_slot_at_each_receive() {
        let (tx, mut rx) = bounded(2);
        assert!(tx.try_send(1).is_ok());
        assert!(tx.try_send(2).is_ok());
        assert!(matches!(tx.try_send(3), Err(TrySendError::Full(3))));
        assert_eq!(rx.recv().await, Some(1));
        assert!(tx.try_send(4).is_ok());
        assert!(matches!(tx.try_send(5), Err(TrySendError::Full(5))));
        assert_eq!(rx.recv().await, Some(2));
        assert_eq!(rx.recv().await, Some(4));
        drop(tx);
        assert_eq!(rx.recv().await, None);
    }

    #[tokio::test]
    async fn a_message_for_a_gone_receiver_comes_back_and_takes_no_slot() {
        let (tx, rx) = bounded(1);
        drop(rx);
        assert!(matches!(tx.try_send(7), Err(TrySendError::Closed(7))));
        assert!(matches!(tx.try_send(8), Err(TrySendError::Closed(8))));
    }

    #[test]
    fn a_capacity_of_zero_holds_one() {
        let (tx, _rx) = bounded(0);
        assert!(tx.try_send(()).is_ok());
        assert!(matches!(tx.try_send(()), Err(TrySendError::Full(()))));
    }
}
