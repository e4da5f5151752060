//! The plugin's private tokio runtime and the adapter that makes plugin futures safe to hand
//! to the host.
//!
//! A cdylib links its own copy of tokio with its own thread-locals, so the host's runtime is
//! invisible here: `tokio::time::sleep` or `tokio::spawn` would panic with "no reactor
//! running". Every future the SDK hands to the host is wrapped in [`Guarded`], which has this
//! plugin's runtime entered for each poll (timers and spawns then work; see [`enter`]) and
//! turns a panic into an error value, so no panic ever unwinds into the host.

use std::{
    future::Future,
    pin::Pin,
    sync::{
        atomic::{AtomicBool, Ordering},
        OnceLock,
    },
    task::{Context, Poll},
};

use abi_stable::std_types::{RResult, RString};

use crate::abi::{self, panics};

static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
static PLUGIN_NAME: OnceLock<String> = OnceLock::new();
/// Set for good by the test kit ([`crate::testing`]): plugin code is then in the test's own
/// binary, where the test's runtime is the one to use (its paused clock, its spawns).
static ON_CALLER_RUNTIME: AtomicBool = AtomicBool::new(false);

/// Makes [`Guarded`] futures run on whatever runtime polls them instead of the private one.
/// Never undone: tests of one binary run in parallel, and all of them want it.
pub(crate) fn use_caller_runtime() {
    ON_CALLER_RUNTIME.store(true, Ordering::Relaxed);
}

/// How the calling thread has the plugin's runtime entered for a guarded poll.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Entry {
    /// Not looked at yet on this thread.
    Unknown,
    /// Entered for the thread's life: the thread had no runtime context of this library's
    /// tokio when first looked at (a host thread: the host's tokio is another copy, with
    /// thread-locals of its own).
    ForLife,
    /// Entered around each poll: the thread is one of a runtime of this library (the
    /// plugin's own workers), whose own context must come back after the poll.
    PerPoll,
}

thread_local! {
    static ENTRY: std::cell::Cell<Entry> = const { std::cell::Cell::new(Entry::Unknown) };
}

/// Enters the plugin's runtime for a guarded poll or drop, unless the test kit said not to.
///
/// On the path of every poll, so a host thread enters once, for good: the guard is kept
/// (leaked) at the bottom of the thread's context, where no other guard is below it to be
/// dropped out of order, and later polls cost a thread-local read instead of a handle clone
/// and two context swaps. The runtime is a static that lives as long as the process (the
/// host never unloads a plugin), so the handle a thread keeps never outlives it.
fn enter() -> Option<tokio::runtime::EnterGuard<'static>> {
    if ON_CALLER_RUNTIME.load(Ordering::Relaxed) {
        None
    } else {
        enter_for_poll(runtime)
    }
}

/// [`enter`]'s work, for the runtime `runtime` gives (the plugin's, made at its first call):
/// entered for the thread's life, or for one poll.
fn enter_for_poll(
    runtime: impl Fn() -> &'static tokio::runtime::Runtime,
) -> Option<tokio::runtime::EnterGuard<'static>> {
    match ENTRY.with(std::cell::Cell::get) {
        Entry::ForLife => None,
        Entry::PerPoll => Some(runtime().enter()),
        Entry::Unknown => {
            let per_poll = tokio::runtime::Handle::try_current().is_ok();
            let entry = if per_poll {
                Entry::PerPoll
            } else {
                Entry::ForLife
            };
            ENTRY.with(|cell| cell.set(entry));
            let guard = runtime().enter();
            if per_poll {
                return Some(guard);
            }
            std::mem::forget(guard);
            None
        }
    }
}

/// Records the plugin's name for thread names; the first call wins.
pub(crate) fn set_plugin_name(name: &str) {
    let _ = PLUGIN_NAME.set(name.to_owned());
}

/// The plugin's runtime, created on first use: at `create`, or at the first guarded poll.
///
/// One worker thread: a current-thread runtime would not drive timers unless someone blocked
/// on it, and the host, not this runtime, polls most plugin futures.
pub(crate) fn runtime() -> &'static tokio::runtime::Runtime {
    RUNTIME.get_or_init(|| {
        // Installed with the first guard, before logging exists: a panic while the host loads
        // the library is reported on one line too.
        panics::install_hook();
        let name = PLUGIN_NAME.get().map(String::as_str).unwrap_or("plugin");
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name(format!("{name}-rt"))
            .enable_all()
            .build()
            .unwrap_or_else(|err| panic!("cannot start the plugin's tokio runtime: {err}"))
    })
}

/// Runs `f` without starting the plugin's runtime, turning a panic into `Err`: for what
/// only describes the plugin (its arguments), which the host asks for before it creates the
/// plugin. The runtime then starts at creation, once the plugin's name is known to name its
/// threads, and a host that refuses the library (a duplicate name, bad arguments) never
/// starts it.
pub(crate) fn guard_describe<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    panics::install_hook();
    panics::catch(f)
}

/// Runs `f` inside the plugin runtime, turning a panic into `Err`.
pub(crate) fn guard_sync<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    let _enter = runtime().enter();
    panics::catch(f)
}

/// What a guarded future's error becomes when the plugin code panicked instead.
pub(crate) trait FromPanic {
    /// `report` is the one-line description (`panicked: …`).
    fn from_panic(report: String) -> Self;
}

impl FromPanic for RString {
    fn from_panic(report: String) -> Self {
        report.into()
    }
}

impl FromPanic for abi::FfiFailure {
    fn from_panic(report: String) -> Self {
        abi::FfiFailure::panicked(report)
    }
}

/// A plugin future made safe for the host: runs in the plugin runtime, never unwinds.
///
/// The future is kept inline (the FFI future boxes the whole `Guarded` once), polled in
/// place and dropped in place, inside the runtime.
pub(crate) struct Guarded<F> {
    fut: Option<F>,
}

impl<F> Guarded<F> {
    pub(crate) fn new(fut: F) -> Self {
        Guarded { fut: Some(fut) }
    }
}

impl<F, T, E> Future for Guarded<F>
where
    F: Future<Output = Result<T, E>>,
    E: FromPanic,
{
    type Output = RResult<T, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // SAFETY: `fut` is structurally pinned: it is never moved out of `self`, only polled
        // through this pin and dropped where it is (by `drop_in_place_entered`).
        let this = unsafe { self.get_unchecked_mut() };
        let Some(fut) = this.fut.as_mut() else {
            let report = "panicked: future polled after completion".to_owned();
            return Poll::Ready(RResult::RErr(E::from_panic(report)));
        };
        // One entry into the runtime per poll: the last poll drops the future inside it too.
        let _enter = enter();
        // SAFETY: see above; `fut` stays where it is until dropped in place.
        let fut = unsafe { Pin::new_unchecked(fut) };
        let output = match panics::catch(|| fut.poll(cx)) {
            Ok(Poll::Pending) => return Poll::Pending,
            Ok(Poll::Ready(result)) => result.into(),
            Err(report) => RResult::RErr(E::from_panic(report)),
        };
        drop_in_place_entered(&mut this.fut);
        Poll::Ready(output)
    }
}

impl<F> Drop for Guarded<F> {
    fn drop(&mut self) {
        if self.fut.is_some() {
            let _enter = enter();
            drop_in_place_entered(&mut self.fut);
        }
    }
}

/// Drops plugin state where it is, in the plugin's runtime (entered by the caller); a panic
/// in a destructor is contained.
fn drop_in_place_entered<T>(slot: &mut Option<T>) {
    if slot.is_some() {
        if let Err(report) = panics::catch(|| *slot = None) {
            // Nobody waits for this result: the panic is logged here, once.
            tracing::error!(target: "panic", "dropping a future {report}");
        }
    }
}

/// Wraps a plugin future into an FFI future the host can poll; a panic becomes `E`.
pub(crate) fn into_ffi<F, T, E>(fut: F) -> abi::FfiFuture<RResult<T, E>>
where
    F: Future<Output = Result<T, E>> + Send + 'static,
    T: 'static,
    E: FromPanic + 'static,
{
    abi::FfiFuture::new(Guarded::new(fut))
}

#[cfg(test)]
mod tests {
    use tokio::runtime::{Handle, RuntimeFlavor};

    use super::*;

    fn current_flavor() -> Option<RuntimeFlavor> {
        Handle::try_current().ok().map(|h| h.runtime_flavor())
    }

    /// A multi-thread runtime of the test's own, standing in for the plugin's: the plugin's
    /// would install the SDK's panic hook, which changes how other tests' panics read.
    fn plugin_runtime() -> &'static tokio::runtime::Runtime {
        static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
        RUNTIME.get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .build()
                .unwrap()
        })
    }

    #[test]
    fn a_thread_of_no_runtime_keeps_the_plugin_runtime_entered() {
        std::thread::spawn(|| {
            assert_eq!(current_flavor(), None);
            assert!(
                enter_for_poll(plugin_runtime).is_none(),
                "entered for good, no guard to drop"
            );
            // The plugin's runtime (multi-thread) stays current after the poll …
            assert_eq!(current_flavor(), Some(RuntimeFlavor::MultiThread));
            // … and later polls find it so.
            assert!(enter_for_poll(plugin_runtime).is_none());
            assert_eq!(current_flavor(), Some(RuntimeFlavor::MultiThread));
        })
        .join()
        .unwrap();
    }

    #[test]
    fn a_thread_inside_another_runtime_gets_that_runtime_back_after_each_poll() {
        std::thread::spawn(|| {
            let other = tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap();
            let _other = other.enter();
            for _ in 0..2 {
                let guard = enter_for_poll(plugin_runtime);
                assert!(guard.is_some(), "entered for the poll only");
                assert_eq!(current_flavor(), Some(RuntimeFlavor::MultiThread));
                drop(guard);
                assert_eq!(current_flavor(), Some(RuntimeFlavor::CurrentThread));
            }
        })
        .join()
        .unwrap();
    }
}
