//! Polling a host future from whatever thread a plugin polls on.

use std::{
    cell::Cell,
    future::Future,
    pin::Pin,
    task::{Context, Poll},
};

use pin_project_lite::pin_project;
use tokio::runtime::{EnterGuard, Handle};

thread_local! {
    /// Whether this thread is one of the host runtime's own (see [`mark_host_runtime_thread`]).
    static HOST_RUNTIME_THREAD: Cell<bool> = const { Cell::new(false) };
}

/// Marks the calling thread as one of the host runtime's, a worker or a blocking thread, on
/// which that runtime's context is current for the thread's whole life: an [`InRuntime`]
/// polled there (a plugin's task runs on the host's workers) need not enter it again, which
/// cost a handle clone and two thread-local swaps at every poll. For the host runtime
/// builder's `on_thread_start`; the host builds that one runtime, so the handle an
/// `InRuntime` holds is the one already current on a marked thread.
pub(crate) fn mark_host_runtime_thread() {
    HOST_RUNTIME_THREAD.with(|marked| marked.set(true));
}

/// Enters `handle`'s runtime unless the calling thread is one of the host runtime's.
fn enter(handle: &Handle) -> Option<EnterGuard<'_>> {
    (!HOST_RUNTIME_THREAD.with(Cell::get)).then(|| handle.enter())
}

pin_project! {
    /// A host future polled (and dropped) with the host runtime entered, whatever thread polls it:
    /// the caller may be polling from a plugin's own runtime thread, where lapin's tokio reactor
    /// and the host's timers are out of reach otherwise. Polled in place rather than spawned: a
    /// spawn costs a task and a hop to another worker thread on every call (see BENCHMARKS.md).
    ///
    /// The inner future is polled with the caller's waker as it is. For a plugin's task, which
    /// the host polls, that is the host task's own waker (`plugin_abi::future` hands it back
    /// across), so registering it with lapin or a timer clones a tokio waker; only a plugin
    /// polling from a thread of its own gives a waker whose clones are FFI wakers.
    ///
    /// The future is held inline, not boxed: the FFI future that carries an `InRuntime` to the
    /// plugin is one allocation already, and a second box cost an allocation and a copy of the
    /// future (over a kilobyte for a publish) on every call.
    pub(crate) struct InRuntime<F: Future> {
        handle: Handle,
        // Set to `None` in place, with the runtime entered, when the `InRuntime` is dropped.
        #[pin]
        fut: Option<F>,
    }

    impl<F: Future> PinnedDrop for InRuntime<F> {
        fn drop(this: Pin<&mut Self>) {
            let mut this = this.project();
            let _enter = enter(this.handle);
            this.fut.set(None);
        }
    }
}

impl<F: Future> InRuntime<F> {
    pub(crate) fn new(handle: Handle, fut: F) -> Self {
        InRuntime {
            handle,
            fut: Some(fut),
        }
    }
}

impl<F: Future> Future for InRuntime<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let _enter = enter(this.handle);
        match this.fut.as_pin_mut() {
            Some(fut) => fut.poll(cx),
            None => Poll::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::{
        sync::atomic::{AtomicUsize, Ordering},
        task::{RawWaker, RawWakerVTable, Waker},
    };

    use super::*;

    /// A waker that counts its clones and wakes.
    struct Counting {
        clones: AtomicUsize,
        wakes: AtomicUsize,
    }

    fn counting_waker(counts: &'static Counting) -> Waker {
        fn raw(counts: *const ()) -> RawWaker {
            RawWaker::new(counts, &VTABLE)
        }
        fn of(data: *const ()) -> &'static Counting {
            // SAFETY: `data` is the `&'static Counting` given to `counting_waker`.
            unsafe { &*(data as *const Counting) }
        }
        static VTABLE: RawWakerVTable = RawWakerVTable::new(
            |data| {
                of(data).clones.fetch_add(1, Ordering::SeqCst);
                raw(data)
            },
            |data| {
                of(data).wakes.fetch_add(1, Ordering::SeqCst);
            },
            |data| {
                of(data).wakes.fetch_add(1, Ordering::SeqCst);
            },
            |_| {},
        );
        // SAFETY: the vtable's functions keep the contract (the data is 'static).
        unsafe { Waker::from_raw(raw(counts as *const Counting as *const ())) }
    }

    fn counts() -> &'static Counting {
        Box::leak(Box::new(Counting {
            clones: AtomicUsize::new(0),
            wakes: AtomicUsize::new(0),
        }))
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
    }

    /// Threads of a runtime built with the mark are marked, others are not, and a timer
    /// polled through an `InRuntime` on a marked thread finds the runtime current.
    #[test]
    fn only_the_marked_runtime_threads_skip_entering() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .on_thread_start(mark_host_runtime_thread)
            .enable_all()
            .build()
            .unwrap();
        let handle = rt.handle().clone();
        let answer = rt.block_on(rt.spawn(async move {
            let marked = HOST_RUNTIME_THREAD.with(Cell::get);
            let timer = async {
                tokio::time::sleep(std::time::Duration::from_millis(1)).await;
                5
            };
            (marked, InRuntime::new(handle, timer).await)
        }));
        assert_eq!(answer.unwrap(), (true, 5));
        let elsewhere = std::thread::spawn(|| HOST_RUNTIME_THREAD.with(Cell::get));
        assert!(!elsewhere.join().unwrap());
        assert!(enter(rt.handle()).is_some(), "an unmarked thread enters");
    }

    #[test]
    fn a_future_ready_at_once_clones_no_caller_waker() {
        let rt = runtime();
        let counts = counts();
        let waker = counting_waker(counts);
        let mut fut = Box::pin(InRuntime::new(rt.handle().clone(), async { 7 }));
        let poll = fut.as_mut().poll(&mut Context::from_waker(&waker));
        assert_eq!(poll, Poll::Ready(7));
        assert_eq!(counts.clones.load(Ordering::SeqCst), 0);
    }

    /// The inner future is polled with the caller's own waker, no wrapper of the host's: a
    /// registration clones the caller's waker once, a wake reaches it.
    #[test]
    fn the_inner_future_sees_the_callers_waker() {
        let rt = runtime();
        let counts = counts();
        let waker = counting_waker(counts);
        let mut registered = None;
        let inner = std::future::poll_fn(|cx| {
            assert!(cx.waker().will_wake(&waker));
            registered = Some(cx.waker().clone());
            Poll::<()>::Pending
        });
        let mut fut = Box::pin(InRuntime::new(rt.handle().clone(), inner));
        assert!(fut
            .as_mut()
            .poll(&mut Context::from_waker(&waker))
            .is_pending());
        drop(fut);
        assert_eq!(counts.clones.load(Ordering::SeqCst), 1);
        registered.expect("registered").wake();
        assert_eq!(counts.wakes.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_wake_after_a_pending_poll_reaches_the_caller() {
        let rt = runtime();
        let counts = counts();
        let waker = counting_waker(counts);
        let (tx, rx) = tokio::sync::oneshot::channel::<u8>();
        let mut fut = Box::pin(InRuntime::new(rt.handle().clone(), rx));
        let mut cx = Context::from_waker(&waker);
        assert!(fut.as_mut().poll(&mut cx).is_pending());
        assert_eq!(counts.wakes.load(Ordering::SeqCst), 0);
        tx.send(3).unwrap();
        assert_eq!(counts.wakes.load(Ordering::SeqCst), 1);
        assert!(matches!(fut.as_mut().poll(&mut cx), Poll::Ready(Ok(3))));
    }
}
