//! Panics reported on one log line, with where they happened.
//!
//! std's default hook writes `thread '…' panicked at file:line:col:` and the message on lines
//! of their own to stderr, outside the log format, and a message may hold line breaks of its
//! own. Every binary links its own std (the host and each plugin library alike), so each
//! installs [`install_hook`], which describes a panic in one line:
//! `panicked: <message> (at file:line:col)`, the message's line breaks folded into spaces.
//!
//! A panic contained by [`catch`] or [`catch_future`] is not logged by the hook: its
//! description becomes the `Err` of the catch, and whoever holds that error logs it once, with
//! its context (the host names the plugin and the task, route or handler). Any other panic (in
//! a thread or a `tokio::spawn`ed task of the plugin's own) is logged by the hook, at ERROR
//! with the target `panic`. So one panic makes one line (two with `RUST_BACKTRACE=full`, which
//! adds its backtrace). A panic that plugin code catches itself inside a catch is not logged:
//! it was handled, like an error.

use std::{
    any::Any,
    cell::{Cell, RefCell},
    future::Future,
    panic::{catch_unwind, AssertUnwindSafe, PanicHookInfo},
    pin::Pin,
    sync::Once,
    task::{Context, Poll},
};

thread_local! {
    /// How many [`catch`]es are running on this thread.
    static CATCHING: Cell<u32> = const { Cell::new(0) };
    /// The last panic the hook saw inside a catch: its message and location.
    static LAST: RefCell<Option<(String, String)>> = const { RefCell::new(None) };
}

/// The message a panic was raised with (`panic!("…")`), from the payload
/// [`catch_unwind`] returns; `unknown panic payload` for a payload
/// that is not text. The SDK and the host describe every caught panic with it.
///
/// ```
/// let payload = std::panic::catch_unwind(|| panic!("kaboom {}", 1)).unwrap_err();
/// assert_eq!(plugin_abi::panic_text(&*payload), "kaboom 1");
/// ```
pub fn panic_text(payload: &(dyn Any + Send)) -> &str {
    if let Some(s) = payload.downcast_ref::<&str>() {
        s
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s
    } else {
        "unknown panic payload"
    }
}

/// `text` on one line: its line breaks become spaces (empty lines vanish), as the host folds
/// the reason of an error response.
///
/// ```
/// assert_eq!(plugin_abi::panics::fold_lines("first\r\nsecond\n\nthird"), "first second third");
/// ```
pub fn fold_lines(text: &str) -> String {
    text.split(['\n', '\r'])
        .filter(|part| !part.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The one-line description of a panic with `message`, raised at `location` if known.
fn describe(message: &str, location: Option<&str>) -> String {
    let message = fold_lines(message);
    match location {
        Some(location) => format!("panicked: {message} (at {location})"),
        None => format!("panicked: {message}"),
    }
}

/// Installs the one-line panic hook for this binary (once; later calls do nothing). Call it
/// after the `tracing` subscriber is set: a panic outside any catch is logged through it.
pub fn install_hook() {
    static INSTALLED: Once = Once::new();
    INSTALLED.call_once(|| std::panic::set_hook(Box::new(hook)));
}

fn hook(info: &PanicHookInfo<'_>) {
    let message = panic_text(info.payload());
    let location = info
        .location()
        .map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column()));
    if full_backtrace_wanted() {
        // Asked for explicitly: a record of its own, its lines escaped like any other's.
        let at = location.as_deref().unwrap_or("<unknown location>");
        log_line(&format!(
            "backtrace of the panic at {at}:\n{}",
            std::backtrace::Backtrace::force_capture()
        ));
    }
    if CATCHING.with(Cell::get) > 0 {
        // The catch reports it; the location is only known here.
        LAST.with(|last| {
            if let Ok(mut last) = last.try_borrow_mut() {
                *last = location.map(|location| (message.to_owned(), location));
            }
        });
        return;
    }
    let thread = std::thread::current();
    let report = format!(
        "thread '{}' {}",
        thread.name().unwrap_or("<unnamed>"),
        describe(message, location.as_deref())
    );
    log_line(&report);
}

/// Logs at ERROR with the target `panic`, or before any logger exists, on stderr folded.
fn log_line(text: &str) {
    if tracing::dispatcher::has_been_set() {
        tracing::error!(target: "panic", "{text}");
    } else {
        eprintln!("{}", fold_lines(text));
    }
}

/// `RUST_BACKTRACE=full`, a developer's explicit request, adds a backtrace record to each
/// panic; `RUST_BACKTRACE=1`, which many environments set for good, does not (symbolising
/// takes long, and the line would no longer be one).
fn full_backtrace_wanted() -> bool {
    std::env::var_os("RUST_BACKTRACE").is_some_and(|v| v == "full")
}

/// Counts a running catch on this thread for as long as it lives (a panic included).
struct Catching;

impl Catching {
    fn enter() -> Self {
        CATCHING.with(|n| n.set(n.get().saturating_add(1)));
        Catching
    }
}

impl Drop for Catching {
    fn drop(&mut self) {
        CATCHING.with(|n| n.set(n.get().saturating_sub(1)));
    }
}

/// The description of a caught panic: with its location when the hook saw this very panic
/// (a payload re-raised with `resume_unwind` never passes the hook, and is described
/// without one).
pub fn caught(payload: &(dyn Any + Send)) -> String {
    let message = panic_text(payload);
    let seen = LAST.with(|last| last.try_borrow_mut().ok().and_then(|mut l| l.take()));
    match seen {
        Some((seen, location)) if seen == message => describe(message, Some(&location)),
        _ => describe(message, None),
    }
}

/// Runs `f`, turning a panic into `Err` with its one-line description, which the hook then
/// leaves to the caller to log.
///
/// ```
/// let err = plugin_abi::panics::catch(|| -> u8 { panic!("two\nlines") }).unwrap_err();
/// assert!(err.starts_with("panicked: two lines"), "{err}");
/// ```
pub fn catch<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    let _catching = Catching::enter();
    catch_unwind(AssertUnwindSafe(f)).map_err(|payload| caught(&*payload))
}

/// A future whose panics are caught like [`catch`] does, at every poll.
pub struct CatchFuture<F> {
    future: F,
}

/// Wraps `future` so that a panic while it is polled ends it with `Err` (its one-line
/// description) instead of unwinding into the caller.
pub fn catch_future<F: Future + Unpin>(future: F) -> CatchFuture<F> {
    CatchFuture { future }
}

impl<F: Future + Unpin> Future for CatchFuture<F> {
    type Output = Result<F::Output, String>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let future = &mut self.future;
        match catch(|| Pin::new(future).poll(cx)) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(output)) => Poll::Ready(Ok(output)),
            Err(report) => Poll::Ready(Err(report)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_caught_panic_is_one_line_with_its_location() {
        install_hook();
        let line = line!() + 1;
        let err = catch(|| -> u8 { panic!("first line\nsecond line\r\n") }).unwrap_err();
        let at = format!("panicked: first line second line (at {}:{line}:", file!());
        assert!(err.starts_with(&at) && err.ends_with(')'), "{err}");
        assert!(!err.contains(['\n', '\r']), "{err}");
    }

    #[test]
    fn a_panic_the_hook_did_not_see_has_no_location() {
        install_hook();
        let err = catch(|| std::panic::resume_unwind(Box::new("re-raised"))).unwrap_err();
        assert_eq!(err, "panicked: re-raised");
        let err = catch(|| std::panic::panic_any(7_u32)).unwrap_err();
        assert!(err.starts_with("panicked: unknown panic payload"), "{err}");
    }

    #[test]
    fn a_future_that_panics_ends_with_its_description() {
        install_hook();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let ok = runtime.block_on(catch_future(Box::pin(async { 5 })));
        assert_eq!(ok, Ok(5));
        let err = runtime
            .block_on(catch_future(Box::pin(async {
                tokio::task::yield_now().await;
                panic!("late\nkaboom")
            })))
            .unwrap_err();
        assert!(err.starts_with("panicked: late kaboom (at "), "{err}");
        assert_eq!(CATCHING.with(Cell::get), 0);
    }

    #[test]
    fn folding_keeps_a_single_line_as_it_is() {
        assert_eq!(fold_lines("one line"), "one line");
        assert_eq!(fold_lines("\na\r\rb\n"), "a b");
    }
}
