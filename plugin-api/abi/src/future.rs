//! Futures that cross the library boundary, and the wakers they are polled with.
//!
//! A future crosses as [`FfiFuture`]: a pointer to the boxed future and two `extern "C"`
//! functions, one that polls it and one that drops it, both compiled by the side that built
//! it. The side holding an `FfiFuture` polls it like any future; its `Context` crosses as
//! [`FfiContext`], a borrowed pointer to an FFI waker: a C vtable (`clone`, `wake`,
//! `wake_by_ref`, `drop`) in front of what stands behind it. The design and the layout follow
//! the async-ffi crate's.
//!
//! What this module adds is that a waker which has crossed once is never wrapped again:
//!
//! - Polled with a waker that stands for an FFI waker from across (one that
//!   [`FfiContext::with_context`] made), an `FfiFuture` hands that FFI waker back as it is
//!   rather than a wrapper around the wrapper.
//! - Polled with an FFI waker that this binary made, a future finds the waker behind it and is
//!   polled with that very waker.
//!
//! So a host future that a plugin awaits — a publish in a plugin's task, which the host polls
//! — is polled with the host's own task waker. Registering it with a timer or a channel
//! clones a tokio waker (a reference count), where a waker wrapped at each crossing would box
//! an FFI waker on each side per clone; and `Waker::will_wake` sees the same waker from one
//! poll to the next, so a registration already made is kept. Which binary made a waker is
//! told by the address of its vtable: each binary, the host and every plugin, has its own
//! copy of this module's statics.

// Each binary has its own copy of these items and their statics; the tests include the file a
// second time to stand for the other side of the boundary.
include!("future/imp.rs");

#[cfg(test)]
mod tests;
