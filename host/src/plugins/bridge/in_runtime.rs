//! Polling a host future from whatever thread a plugin polls on.

use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, Wake, Waker},
};

use futures::task::AtomicWaker;
use tokio::runtime::Handle;

/// A host future polled (and dropped) with the host runtime entered, whatever thread polls it:
/// the caller may be polling from a plugin's own runtime thread, where lapin's tokio reactor
/// and the host's timers are out of reach otherwise. Polled in place rather than spawned: a
/// spawn costs a task and a hop to another worker thread on every call (see BENCHMARKS.md).
///
/// The inner future sees a waker of our own (an `Arc`, cheap to clone), which wakes the
/// caller's: the caller's is an FFI waker, and every clone of it (lapin clones one per pending
/// operation) allocates on both sides of the boundary. Here it is cloned at most once a poll.
pub(crate) struct InRuntime<F: Future> {
    handle: Handle,
    fut: Option<Pin<Box<F>>>,
    bridge: Arc<WakerBridge>,
}

impl<F: Future> InRuntime<F> {
    pub(crate) fn new(handle: Handle, fut: F) -> Self {
        InRuntime {
            handle,
            fut: Some(Box::pin(fut)),
            bridge: Arc::new(WakerBridge(AtomicWaker::new())),
        }
    }
}

struct WakerBridge(AtomicWaker);

impl Wake for WakerBridge {
    fn wake(self: Arc<Self>) {
        self.0.wake();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.wake();
    }
}

impl<F: Future> Future for InRuntime<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let _enter = self.handle.enter();
        self.bridge.0.register(cx.waker());
        let waker = Waker::from(Arc::clone(&self.bridge));
        let mut inner = Context::from_waker(&waker);
        match self.fut.as_mut() {
            Some(fut) => fut.as_mut().poll(&mut inner),
            None => Poll::Pending,
        }
    }
}

impl<F: Future> Drop for InRuntime<F> {
    fn drop(&mut self) {
        let _enter = self.handle.enter();
        self.fut = None;
    }
}
