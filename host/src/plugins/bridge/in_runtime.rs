//! Polling a host future from whatever thread a plugin polls on.

use std::{
    cell::Cell,
    future::Future,
    pin::Pin,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    task::{Context, Poll, Wake, Waker},
};

use futures::task::AtomicWaker;
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
    /// The inner future sees a waker of our own (an `Arc`, cheap to clone), which wakes the
    /// caller's: the caller's is an FFI waker, and every clone of it (lapin clones one per pending
    /// operation) allocates on both sides of the boundary. Here it is cloned at most once a
    /// pending poll.
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
        // The inner future's waker, made once from `bridge` rather than at every poll.
        waker: Waker,
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
        let bridge = Arc::new(WakerBridge {
            caller: AtomicWaker::new(),
            woken: AtomicBool::new(false),
        });
        InRuntime {
            handle,
            fut: Some(fut),
            waker: Waker::from(Arc::clone(&bridge)),
            bridge,
        }
    }
}

/// Wakes the caller's waker (registered at each pending poll), and records that a wake came,
/// for a wake that lands before the caller's waker is registered.
struct WakerBridge {
    caller: AtomicWaker,
    woken: AtomicBool,
}

impl Wake for WakerBridge {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::SeqCst);
        self.caller.wake();
    }
}

impl<F: Future> Future for InRuntime<F> {
    type Output = F::Output;

    /// The caller's waker is registered only when the inner future is pending: a last poll,
    /// which completes, then clones no FFI waker (a clone allocates on both sides of the
    /// boundary). A wake that comes between the inner poll and the registration is not lost:
    /// `woken` says it came, and the caller is woken at once.
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let _enter = enter(this.handle);
        this.bridge.woken.store(false, Ordering::SeqCst);
        let mut inner = Context::from_waker(this.waker);
        let Some(fut) = this.fut.as_pin_mut() else {
            return Poll::Pending;
        };
        let poll = fut.poll(&mut inner);
        if poll.is_pending() {
            this.bridge.caller.register(cx.waker());
            if this.bridge.woken.swap(false, Ordering::SeqCst) {
                cx.waker().wake_by_ref();
            }
        }
        poll
    }
}

#[cfg(test)]
mod tests {
    use std::{
        sync::atomic::AtomicUsize,
        task::{RawWaker, RawWakerVTable},
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

    #[test]
    fn a_wake_before_the_caller_is_registered_is_not_lost() {
        let rt = runtime();
        let counts = counts();
        let waker = counting_waker(counts);
        // Wakes itself within its first poll, before `InRuntime` registers the caller.
        let mut first = true;
        let inner = std::future::poll_fn(move |cx| {
            if std::mem::take(&mut first) {
                cx.waker().wake_by_ref();
                Poll::Pending
            } else {
                Poll::Ready(())
            }
        });
        let mut fut = Box::pin(InRuntime::new(rt.handle().clone(), inner));
        let mut cx = Context::from_waker(&waker);
        assert_eq!(fut.as_mut().poll(&mut cx), Poll::Pending);
        assert_eq!(
            counts.wakes.load(Ordering::SeqCst),
            1,
            "the caller is woken"
        );
        assert_eq!(fut.as_mut().poll(&mut cx), Poll::Ready(()));
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
