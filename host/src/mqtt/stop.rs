//! The connection loop's stop: a flag and the loop's waker.
//!
//! The loop looks at its stop every time the MQTT event loop has nothing to hand over, so
//! once or twice per publish. A `watch` channel's `changed()` takes its notifier's lock at
//! every such poll (~0.3 k instructions per QoS 1 publish); this compares a waker.

use std::{
    future::{poll_fn, Future},
    sync::atomic::{AtomicBool, Ordering},
    task::Poll,
};

use futures::task::AtomicWaker;

/// Set once, never reset: a stopped connection loop ends.
#[derive(Default)]
pub(crate) struct Stop {
    stopped: AtomicBool,
    waker: AtomicWaker,
}

impl Stop {
    /// Stops the loop: wakes it if it waits.
    pub(super) fn stop(&self) {
        self.stopped.store(true, Ordering::Release);
        self.waker.wake();
    }

    /// Ready once [`stop`](Stop::stop) was called, before or after the first poll. One
    /// task waits at a time: a second waiter's waker would replace the first's.
    pub(super) fn stopped(&self) -> impl Future<Output = ()> + '_ {
        poll_fn(|cx| {
            if self.stopped.load(Ordering::Acquire) {
                return Poll::Ready(());
            }
            self.waker.register(cx.waker());
            // A stop between the load above and the registration woke no one: look again.
            if self.stopped.load(Ordering::Acquire) {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use std::{sync::Arc, time::Duration};

    use super::*;

    #[tokio::test]
    async fn a_stop_before_the_wait_is_seen_at_once() {
        let stop = Stop::default();
        stop.stop();
        tokio::time::timeout(Duration::from_secs(5), stop.stopped())
            .await
            .expect("stopped");
    }

    #[tokio::test]
    async fn a_stop_wakes_the_waiting_task() {
        let stop = Arc::new(Stop::default());
        let waiter = tokio::spawn({
            let stop = Arc::clone(&stop);
            async move { stop.stopped().await }
        });
        // The waiter is pending until the stop: nothing else can finish it.
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        stop.stop();
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("woken")
            .expect("no panic");
    }
}
