use std::{
    future::poll_fn,
    pin::pin,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex,
    },
    task::Wake,
};

use super::*;

/// An executor's waker that counts its wakes.
#[derive(Default)]
struct Executor {
    wakes: AtomicUsize,
}

impl Wake for Executor {
    fn wake(self: Arc<Self>) {
        self.wakes.fetch_add(1, Ordering::SeqCst);
    }
}

/// Where a future keeps the waker it registered.
type Slot = Arc<Mutex<Option<Waker>>>;

/// An executor, its waker, and an empty slot.
fn executor() -> (Arc<Executor>, Waker, Slot) {
    let executor = Arc::new(Executor::default());
    let waker = Waker::from(executor.clone());
    (executor, waker, Slot::default())
}

/// A future that keeps a clone of the waker it is polled with in `slot`, as a timer or a
/// channel registering it would, and is ready with 7: at once, or at its second poll when
/// `pending_first`.
fn registering(slot: Slot, pending_first: bool) -> impl Future<Output = u32> + Send {
    let mut pending = pending_first;
    poll_fn(move |cx| {
        *slot.lock().unwrap() = Some(cx.waker().clone());
        match std::mem::take(&mut pending) {
            true => Poll::Pending,
            false => Poll::Ready(7),
        }
    })
}

#[test]
fn in_one_binary_a_future_awaited_across_twice_is_polled_with_the_executors_own_waker() {
    let (executor, waker, slot) = executor();
    // The host's future, awaited by a plugin's future, which the host polls.
    let inner = FfiFuture::new(registering(slot.clone(), false));
    let mut outer = pin!(FfiFuture::new(async move { inner.await + 1 }));

    let polled = outer.as_mut().poll(&mut Context::from_waker(&waker));

    assert_eq!(polled, Poll::Ready(8));
    let registered = slot.lock().unwrap().take().unwrap();
    assert!(
        registered.will_wake(&waker),
        "the executor's waker itself, not a wrapper"
    );
    // The executor's, this test's waker and the registered clone: no FFI waker holds one.
    assert_eq!(Arc::strong_count(&executor), 3);
    registered.wake();
    assert_eq!(executor.wakes.load(Ordering::SeqCst), 1);
    assert_eq!(Arc::strong_count(&executor), 2);
}

/// An FFI waker as another binary would make it, counting what is called on it. Its clones
/// are itself.
#[repr(C)]
struct ForeignWaker {
    base: FfiWakerBase,
    clones: AtomicUsize,
    wakes: AtomicUsize,
    drops: AtomicUsize,
}

static FOREIGN_TEST_VTABLE: FfiWakerVTable = FfiWakerVTable {
    clone: test_clone,
    wake: test_wake,
    wake_by_ref: test_wake_by_ref,
    drop: test_drop,
};

unsafe extern "C" fn test_clone(data: *const FfiWakerBase) -> *const FfiWakerBase {
    (*data.cast::<ForeignWaker>())
        .clones
        .fetch_add(1, Ordering::SeqCst);
    data
}

unsafe extern "C" fn test_wake(data: *const FfiWakerBase) {
    test_wake_by_ref(data);
    test_drop(data);
}

unsafe extern "C" fn test_wake_by_ref(data: *const FfiWakerBase) {
    (*data.cast::<ForeignWaker>())
        .wakes
        .fetch_add(1, Ordering::SeqCst);
}

unsafe extern "C" fn test_drop(data: *const FfiWakerBase) {
    (*data.cast::<ForeignWaker>())
        .drops
        .fetch_add(1, Ordering::SeqCst);
}

fn foreign_waker() -> ForeignWaker {
    ForeignWaker {
        base: FfiWakerBase {
            vtable: &FOREIGN_TEST_VTABLE,
        },
        clones: AtomicUsize::new(0),
        wakes: AtomicUsize::new(0),
        drops: AtomicUsize::new(0),
    }
}

/// Polls `future` as the other binary does: through its poll function, with `waker`.
fn poll_from_across<T>(future: &mut FfiFuture<T>, waker: &ForeignWaker) -> FfiPoll<T> {
    let mut cx = FfiContext {
        waker: ptr::addr_of!(waker.base),
        _marker: PhantomData,
    };
    unsafe { (future.poll_fn)(future.future, &mut cx) }
}

#[test]
fn a_waker_from_across_is_handed_back_as_it_is() {
    let waker = foreign_waker();
    let slot = Slot::default();
    // A plugin's future (polled by the host) awaiting a host future, seen from the plugin.
    let inner = FfiFuture::new(registering(slot.clone(), false));
    let mut outer = FfiFuture::new(async move { inner.await + 1 });

    let polled = poll_from_across(&mut outer, &waker);

    assert!(matches!(polled, FfiPoll::Ready(8)));
    let registered = slot.lock().unwrap().take().unwrap();
    assert!(ptr::eq(registered.vtable(), &FOREIGN_VTABLE));
    assert!(
        ptr::eq(registered.data(), ptr::addr_of!(waker).cast()),
        "the other binary's waker, not a wrapper made on the way"
    );
    assert_eq!(waker.clones.load(Ordering::SeqCst), 1);
    registered.wake();
    assert_eq!(waker.wakes.load(Ordering::SeqCst), 1);
    assert_eq!(waker.drops.load(Ordering::SeqCst), 1);
}

#[test]
fn a_clone_made_across_owns_the_waker_and_gives_it_back_when_woken() {
    let executor = Arc::new(Executor::default());
    let waker = Waker::from(executor.clone());
    let mut cx = Context::from_waker(&waker);

    let cloned = with_ffi_context(&mut cx, |ffi| unsafe {
        // What the other binary does to register the waker it was polled with.
        ((*(*ffi.waker).vtable).clone)(ffi.waker)
    });

    let own = unsafe { own_waker(cloned) }.expect("made by this binary");
    assert!(own.will_wake(&waker));
    assert_eq!(Arc::strong_count(&executor), 3);
    unsafe { ((*(*cloned).vtable).wake_by_ref)(cloned) };
    unsafe { ((*(*cloned).vtable).wake)(cloned) };
    assert_eq!(executor.wakes.load(Ordering::SeqCst), 2);
    assert_eq!(
        Arc::strong_count(&executor),
        2,
        "waking by value dropped the clone"
    );
}

#[test]
fn a_panic_while_polling_is_reported_and_raised_on_the_polling_side() {
    let waker = foreign_waker();
    let mut across = FfiFuture::new(async { panic!("kaboom") });
    assert!(matches!(
        poll_from_across(&mut across, &waker),
        FfiPoll::Panicked
    ));

    let mut here = pin!(FfiFuture::new(async { panic!("kaboom") }));
    let executor = Waker::from(Arc::new(Executor::default()));
    let raised = catch_unwind(AssertUnwindSafe(|| {
        here.as_mut().poll(&mut Context::from_waker(&executor))
    }))
    .unwrap_err();
    assert_eq!(crate::panic_text(&*raised), "FFI future panicked");
}

#[test]
fn dropping_the_ffi_future_drops_the_future_once() {
    let held = Arc::new(());
    let future = FfiFuture::new({
        let held = held.clone();
        async move { drop(held) }
    });
    assert_eq!(Arc::strong_count(&held), 2);
    drop(future);
    assert_eq!(Arc::strong_count(&held), 1);
}

/// The module compiled a second time, with statics of its own: the other binary.
#[allow(dead_code)]
mod plugin {
    include!("imp.rs");
}

/// A future of this binary as the other one holds it: the same layout, the other's type.
fn to_plugin<T>(future: FfiFuture<T>) -> plugin::FfiFuture<T> {
    // SAFETY: both are the `repr(C)` struct of one source file.
    unsafe { std::mem::transmute(future) }
}

fn from_plugin<T>(future: plugin::FfiFuture<T>) -> FfiFuture<T> {
    // SAFETY: as `to_plugin`.
    unsafe { std::mem::transmute(future) }
}

/// Polls `future` with `waker`, which leaves it pending, and takes the waker it registered.
fn poll_pending<F: Future>(future: Pin<&mut F>, waker: &Waker, slot: &Slot) -> Waker {
    assert!(future.poll(&mut Context::from_waker(waker)).is_pending());
    slot.lock().unwrap().take().expect("a waker registered")
}

/// Wakes `registered` on another thread, as a reactor would.
fn wake_on_another_thread(registered: Waker) {
    std::thread::spawn(move || registered.wake())
        .join()
        .unwrap();
}

/// The host polls a plugin's task, which awaits a host future: the host future registers the
/// host's own waker, and a wake from another thread reaches the host's executor.
#[test]
fn across_two_binaries_the_host_future_registers_the_hosts_own_waker() {
    let (executor, waker, slot) = executor();
    let publish = to_plugin(FfiFuture::new(registering(slot.clone(), true)));
    let task = plugin::FfiFuture::new(async move { publish.await + 1 });
    let mut task = pin!(from_plugin(task));

    let registered = poll_pending(task.as_mut(), &waker, &slot);
    assert!(
        registered.will_wake(&waker),
        "the host's waker after two crossings"
    );
    assert_eq!(Arc::strong_count(&executor), 3);
    wake_on_another_thread(registered);
    assert_eq!(executor.wakes.load(Ordering::SeqCst), 1);
    assert_eq!(
        task.as_mut().poll(&mut Context::from_waker(&waker)),
        Poll::Ready(8)
    );
    drop(slot.lock().unwrap().take());
    assert_eq!(Arc::strong_count(&executor), 2);
}

/// A plugin that keeps a clone of its waker and polls a host future with it later: the
/// clone is the host's own waker behind an FFI waker the host made, which the host unwraps.
#[test]
fn a_clone_the_plugin_kept_is_unwrapped_by_the_host() {
    let (executor, waker, slot) = executor();
    let mut publish = Box::pin(to_plugin(FfiFuture::new(registering(slot.clone(), true))));
    let mut kept: Option<Waker> = None;
    let task = plugin::FfiFuture::new(poll_fn(move |cx| {
        let kept = kept.get_or_insert_with(|| cx.waker().clone()).clone();
        publish.as_mut().poll(&mut Context::from_waker(&kept))
    }));
    let mut task = pin!(from_plugin(task));

    let registered = poll_pending(task.as_mut(), &waker, &slot);
    assert!(registered.will_wake(&waker));
    wake_on_another_thread(registered);
    assert_eq!(executor.wakes.load(Ordering::SeqCst), 1);
    assert_eq!(
        task.as_mut().poll(&mut Context::from_waker(&waker)),
        Poll::Ready(7)
    );
}

/// A plugin polling a host future on a thread of its own: the host registers an FFI waker
/// of the plugin's (one box in the plugin per clone), which wakes the plugin's executor.
#[test]
fn a_plugin_polling_on_its_own_thread_is_woken_through_its_waker() {
    let (executor, waker, slot) = executor();
    let mut publish = pin!(to_plugin(FfiFuture::new(registering(slot.clone(), true))));

    let registered = poll_pending(publish.as_mut(), &waker, &slot);
    assert!(
        !registered.will_wake(&waker),
        "an FFI waker of the plugin's"
    );
    assert_eq!(
        Arc::strong_count(&executor),
        3,
        "its clone, boxed in the plugin"
    );
    wake_on_another_thread(registered);
    assert_eq!(executor.wakes.load(Ordering::SeqCst), 1);
    assert_eq!(Arc::strong_count(&executor), 2);
}
