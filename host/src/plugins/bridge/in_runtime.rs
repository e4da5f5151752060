//! Polling a host future from whatever thread a plugin polls on.

use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, Wake, Waker},
};

use futures::task::AtomicWaker;
use pin_project_lite::pin_project;
use tokio::runtime::Handle;

pin_project! {
    /// A host future polled (and dropped) with the host runtime entered, whatever thread polls it:
    /// the caller may be polling from a plugin's own runtime thread, where lapin's tokio reactor
    /// and the host's timers are out of reach otherwise. Polled in place rather than spawned: a
    /// spawn costs a task and a hop to another worker thread on every call (see BENCHMARKS.md).
    ///
    /// The inner future sees a waker of our own (an `Arc`, cheap to clone), which wakes the
    /// caller's: the caller's is an FFI waker, and every clone of it (lapin clones one per pending
    /// operation) allocates on both sides of the boundary. Here it is cloned at most once a poll.
    ///
    /// The future is held inline, not boxed: the FFI future that carries an `InRuntime` to the
    /// plugin is one allocation already, and a second box cost an allocation and a copy of the
    /// future (over a kilobyte for a publish) on every call.
    pub(crate) struct InRuntime<F: Future> {
        handle: Handle,
        // Set to `None` in place, with the runtime entered, when the `InRuntime` is dropped.
        #[pin]
        fut: Option<F>,
        bridge: Arc<WakerBridge>,
    }

    impl<F: Future> PinnedDrop for InRuntime<F> {
        fn drop(this: Pin<&mut Self>) {
            let mut this = this.project();
            let _enter = this.handle.enter();
            this.fut.set(None);
        }
    }
}

impl<F: Future> InRuntime<F> {
    pub(crate) fn new(handle: Handle, fut: F) -> Self {
        InRuntime {
            handle,
            fut: Some(fut),
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

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let _enter = this.handle.enter();
        this.bridge.0.register(cx.waker());
        let waker = Waker::from(Arc::clone(this.bridge));
        let mut inner = Context::from_waker(&waker);
        match this.fut.as_pin_mut() {
            Some(fut) => fut.poll(&mut inner),
            None => Poll::Pending,
        }
    }
}
