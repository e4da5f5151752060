// The items of `future.rs`, a file of their own so that the tests can compile them twice
// (see there).

use std::{
    future::Future,
    marker::PhantomData,
    mem::ManuallyDrop,
    panic::{catch_unwind, AssertUnwindSafe},
    pin::Pin,
    ptr,
    task::{Context, Poll, RawWaker, RawWakerVTable, Waker},
};

use abi_stable::StableAbi;

/// [`Poll`] across the boundary, and a third case: the poll panicked.
#[repr(C, u8)]
#[derive(StableAbi)]
pub enum FfiPoll<T> {
    /// The future is done.
    Ready(T),
    /// The future will wake its waker when it can go on.
    Pending,
    /// The poll function panicked; the panic was caught where it happened.
    Panicked,
}

/// [`Context`] across the boundary: a borrowed FFI waker, valid for one poll. The side it is
/// handed to may clone it and wake it by reference, never wake or drop it by value.
#[repr(C)]
#[derive(StableAbi)]
pub struct FfiContext<'a> {
    waker: *const FfiWakerBase,
    _marker: PhantomData<&'a FfiWakerBase>,
}

/// What every FFI waker starts with: its vtable.
#[repr(C)]
#[derive(StableAbi)]
struct FfiWakerBase {
    vtable: *const FfiWakerVTable,
}

/// The four operations of a waker, as C functions of the binary that made it. `wake` and
/// `drop` take ownership of the waker they are called on (one that `clone` returned).
#[repr(C)]
#[derive(StableAbi, Clone, Copy)]
struct FfiWakerVTable {
    clone: unsafe extern "C" fn(*const FfiWakerBase) -> *const FfiWakerBase,
    wake: unsafe extern "C" fn(*const FfiWakerBase),
    wake_by_ref: unsafe extern "C" fn(*const FfiWakerBase),
    drop: unsafe extern "C" fn(*const FfiWakerBase),
}

/// An FFI waker of this binary that borrows a [`Waker`] for one poll (on the poller's stack).
#[repr(C)]
struct BorrowedWaker {
    base: FfiWakerBase,
    waker: *const Waker,
}

/// An FFI waker of this binary that owns a clone of a [`Waker`] (boxed; `clone` makes them).
#[repr(C)]
struct OwnedWaker {
    base: FfiWakerBase,
    waker: Waker,
}

/// A panic in these functions aborts the process (they are `extern "C"`, which cannot
/// unwind): a std waker's clone or wake does not panic.
static BORROWED_VTABLE: FfiWakerVTable = FfiWakerVTable {
    clone: borrowed_clone,
    wake: never_by_value,
    wake_by_ref: borrowed_wake_by_ref,
    drop: never_by_value,
};

static OWNED_VTABLE: FfiWakerVTable = FfiWakerVTable {
    clone: owned_clone,
    wake: owned_wake,
    wake_by_ref: owned_wake_by_ref,
    drop: owned_drop,
};

/// The waker this binary's FFI waker at `data` stands for, if this binary made it.
///
/// # Safety
/// `data` points to a live FFI waker, which outlives the returned reference.
unsafe fn own_waker<'a>(data: *const FfiWakerBase) -> Option<&'a Waker> {
    let vtable = (*data).vtable;
    if ptr::eq(vtable, &BORROWED_VTABLE) {
        Some(&*(*data.cast::<BorrowedWaker>()).waker)
    } else if ptr::eq(vtable, &OWNED_VTABLE) {
        Some(&(*data.cast::<OwnedWaker>()).waker)
    } else {
        None
    }
}

fn boxed_clone(waker: &Waker) -> *const FfiWakerBase {
    let owned = Box::new(OwnedWaker {
        base: FfiWakerBase {
            vtable: &OWNED_VTABLE,
        },
        waker: waker.clone(),
    });
    Box::into_raw(owned).cast()
}

unsafe extern "C" fn borrowed_clone(data: *const FfiWakerBase) -> *const FfiWakerBase {
    boxed_clone(&*(*data.cast::<BorrowedWaker>()).waker)
}

unsafe extern "C" fn borrowed_wake_by_ref(data: *const FfiWakerBase) {
    (*(*data.cast::<BorrowedWaker>()).waker).wake_by_ref();
}

/// A borrowed waker is never woken or dropped by value: the poller keeps it.
unsafe extern "C" fn never_by_value(_: *const FfiWakerBase) {
    std::process::abort();
}

unsafe extern "C" fn owned_clone(data: *const FfiWakerBase) -> *const FfiWakerBase {
    boxed_clone(&(*data.cast::<OwnedWaker>()).waker)
}

unsafe extern "C" fn owned_wake(data: *const FfiWakerBase) {
    Box::from_raw(data.cast::<OwnedWaker>().cast_mut())
        .waker
        .wake();
}

unsafe extern "C" fn owned_wake_by_ref(data: *const FfiWakerBase) {
    (*data.cast::<OwnedWaker>()).waker.wake_by_ref();
}

unsafe extern "C" fn owned_drop(data: *const FfiWakerBase) {
    drop(Box::from_raw(data.cast::<OwnedWaker>().cast_mut()));
}

/// The std vtable of a [`Waker`] that stands for an FFI waker made across the boundary: each
/// operation calls the other binary's.
static FOREIGN_VTABLE: RawWakerVTable = RawWakerVTable::new(
    foreign_clone,
    foreign_wake,
    foreign_wake_by_ref,
    foreign_drop,
);

unsafe fn foreign_clone(data: *const ()) -> RawWaker {
    let base = data.cast::<FfiWakerBase>();
    RawWaker::new(((*(*base).vtable).clone)(base).cast(), &FOREIGN_VTABLE)
}

unsafe fn foreign_wake(data: *const ()) {
    let base = data.cast::<FfiWakerBase>();
    ((*(*base).vtable).wake)(base);
}

unsafe fn foreign_wake_by_ref(data: *const ()) {
    let base = data.cast::<FfiWakerBase>();
    ((*(*base).vtable).wake_by_ref)(base);
}

unsafe fn foreign_drop(data: *const ()) {
    let base = data.cast::<FfiWakerBase>();
    ((*(*base).vtable).drop)(base);
}

impl FfiContext<'_> {
    /// Runs `poll` with this context as a std [`Context`]: with the waker behind it if this
    /// binary made it, otherwise with a [`Waker`] that calls across.
    pub fn with_context<T>(&mut self, poll: impl FnOnce(&mut Context<'_>) -> T) -> T {
        // SAFETY: the FFI waker is live for this poll (the contract of `FfiContext`), and an
        // FFI waker's vtable behaves as a waker's.
        unsafe {
            if let Some(waker) = own_waker(self.waker) {
                return poll(&mut Context::from_waker(waker));
            }
            // Borrowed: never dropped here.
            let waker = ManuallyDrop::new(Waker::from_raw(RawWaker::new(
                self.waker.cast(),
                &FOREIGN_VTABLE,
            )));
            poll(&mut Context::from_waker(&waker))
        }
    }
}

/// Runs `poll` with `cx` as an [`FfiContext`]: the FFI waker a waker stands for if it came
/// from across, otherwise one that borrows the waker.
fn with_ffi_context<T>(cx: &mut Context<'_>, poll: impl FnOnce(&mut FfiContext<'_>) -> T) -> T {
    let waker = cx.waker();
    if ptr::eq(waker.vtable(), &FOREIGN_VTABLE) {
        // A clone of such a waker holds its own FFI waker, and the one `with_context` made
        // is borrowed for the enclosing poll: either way live for this one.
        let mut ffi = FfiContext {
            waker: waker.data().cast(),
            _marker: PhantomData,
        };
        return poll(&mut ffi);
    }
    let borrowed = BorrowedWaker {
        base: FfiWakerBase {
            vtable: &BORROWED_VTABLE,
        },
        waker,
    };
    let mut ffi = FfiContext {
        waker: ptr::addr_of!(borrowed).cast(),
        _marker: PhantomData,
    };
    poll(&mut ffi)
}

/// A `Send + 'static` future across the boundary, its output `T`. Polled where it is held,
/// with the poll and drop functions of the binary that built it.
#[repr(C)]
#[derive(StableAbi)]
pub struct FfiFuture<T> {
    future: *mut (),
    poll_fn: unsafe extern "C" fn(future: *mut (), cx: *mut FfiContext) -> FfiPoll<T>,
    drop_fn: unsafe extern "C" fn(future: *mut ()),
}

// SAFETY: `FfiFuture::new` takes only `Send` futures.
unsafe impl<T> Send for FfiFuture<T> {}

impl<T> FfiFuture<T> {
    /// Boxes `future` for the other side to poll. A panic while polling it is caught and
    /// reported as [`FfiPoll::Panicked`]; a panic while dropping it aborts the process.
    pub fn new<F: Future<Output = T> + Send + 'static>(future: F) -> Self {
        Self {
            future: Box::into_raw(Box::new(future)).cast(),
            poll_fn: poll_boxed::<F>,
            drop_fn: drop_boxed::<F>,
        }
    }
}

unsafe extern "C" fn poll_boxed<F: Future>(
    future: *mut (),
    cx: *mut FfiContext,
) -> FfiPoll<F::Output> {
    let polled = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: `future` is the box `FfiFuture::new` made, never moved out of.
        let future = Pin::new_unchecked(&mut *future.cast::<F>());
        (*cx).with_context(|cx| future.poll(cx))
    }));
    match polled {
        Ok(Poll::Ready(value)) => FfiPoll::Ready(value),
        Ok(Poll::Pending) => FfiPoll::Pending,
        // The payload is dropped in a function that cannot unwind: a payload that panics in
        // its destructor aborts here rather than unwinding across.
        Err(payload) => {
            drop(payload);
            FfiPoll::Panicked
        }
    }
}

unsafe extern "C" fn drop_boxed<F>(future: *mut ()) {
    drop(Box::from_raw(future.cast::<F>()));
}

impl<T> Drop for FfiFuture<T> {
    fn drop(&mut self) {
        // SAFETY: `drop_fn` is the dropper of `future`'s box, called once.
        unsafe { (self.drop_fn)(self.future) }
    }
}

impl<T> Future for FfiFuture<T> {
    type Output = T;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        let this = &*self;
        // SAFETY: `poll_fn` polls `future`, with a context live for the call.
        let polled = with_ffi_context(cx, |ffi| unsafe { (this.poll_fn)(this.future, ffi) });
        match polled {
            FfiPoll::Ready(value) => Poll::Ready(value),
            FfiPoll::Pending => Poll::Pending,
            // Caught across, raised again here, where the holder's own guard contains it.
            FfiPoll::Panicked => panic!("FFI future panicked"),
        }
    }
}
