//! Repeaters: `prepare` once, then `run` in a loop (brewblox-service's `RepeaterFeature`).

use std::{future::Future, time::Duration};

use crate::Result;

/// Whether a repeater goes on after this step.
///
/// ```
/// assert_ne!(plugin_api::Repeat::Continue, plugin_api::Repeat::Stop);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Repeat {
    /// Call `run` again.
    Continue,
    /// End the repeater quietly (the original's `RepeaterCancelled`).
    Stop,
}

/// Work done over and over in the background, started with
/// [`Context::repeat`](crate::Context::repeat).
///
/// `prepare` runs once; an error there ends the repeater (logged). Then `run` is called in a
/// loop until it returns [`Repeat::Stop`] or the plugin shuts down. A failing `run` is logged
/// once per series of failures and retried after a growing pause (100 ms doubling to 30 s),
/// so a `run` that fails instantly is never a hot loop. `run` paces itself when it succeeds.
///
/// On the host, the first `run` waits until the service serves (the HTTP listener is bound
/// and this generation's routes are the ones served, see [`Context::serving`](crate::Context::serving)),
/// and `run` is not called while the generation is retiring (a hot swap has started the
/// next one: see [`Context::is_retiring`](crate::Context::is_retiring)), so two generations
/// never repeat side by side. `prepare` runs at once. Under the test kit a test steps
/// repeaters itself ([`TestHost::step`](crate::testing::TestHost::step)).
///
/// ```
/// use plugin_api::{Repeat, Repeater, Result};
/// use std::time::Duration;
///
/// struct Poller { interval: Duration }
///
/// impl Repeater for Poller {
///     async fn prepare(&mut self) -> Result<Repeat> {
///         // Like the original: a zero interval disables the repeater.
///         Ok(if self.interval.is_zero() { Repeat::Stop } else { Repeat::Continue })
///     }
///
///     async fn run(&mut self) -> Result<Repeat> {
///         tokio::time::sleep(self.interval).await;
///         tracing::info!("poll");
///         Ok(Repeat::Continue)
///     }
/// }
/// ```
pub trait Repeater: Send + 'static {
    /// Called once before the first `run`.
    fn prepare(&mut self) -> impl Future<Output = Result<Repeat>> + Send {
        async { Ok(Repeat::Continue) }
    }

    /// Called in a loop.
    fn run(&mut self) -> impl Future<Output = Result<Repeat>> + Send;
}

/// The pause before retrying a failed `run`: 100 ms, doubling, at most 30 s.
pub(crate) fn backoff(failures: u32) -> Duration {
    let millis = 100u64.saturating_mul(1u64 << failures.saturating_sub(1).min(16));
    Duration::from_millis(millis.min(30_000))
}

/// The repeater's loop, run as a host task. `failed` is awaited after each failed `run`
/// (the host counts them in its metrics); `gate` before each `run`: it waits until the
/// generation serves, and `false` ends the repeater (the generation stopped).
pub(crate) async fn drive<R, F, Fut, G, GFut>(
    name: String,
    mut repeater: R,
    failed: F,
    gate: G,
) -> Result<(), String>
where
    R: Repeater,
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = ()>,
    G: Fn() -> GFut,
    GFut: std::future::Future<Output = bool>,
{
    match repeater.prepare().await {
        Ok(Repeat::Continue) => {}
        Ok(Repeat::Stop) => {
            tracing::info!("{name} cancelled during setup.");
            return Ok(());
        }
        // Not logged here: the host logs a failed task once, with the plugin's name.
        Err(err) => return Err(format!("{name} error during setup: {err}")),
    }
    let mut failures = 0u32;
    loop {
        if !gate().await {
            return Ok(());
        }
        match repeater.run().await {
            Ok(Repeat::Continue) => {
                if failures > 0 {
                    tracing::info!("{name} resumed OK");
                    failures = 0;
                }
            }
            Ok(Repeat::Stop) => {
                tracing::info!("{name} cancelled during runtime.");
                return Ok(());
            }
            Err(err) => {
                failures = failures.saturating_add(1);
                failed().await;
                if failures == 1 {
                    tracing::error!("{name} error during runtime: {err}");
                }
                tokio::time::sleep(backoff(failures)).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    };

    use tracing_core::{span, Event, Metadata, Subscriber};

    use super::*;

    /// Counts the events logged while it is the default subscriber.
    struct CountEvents(Arc<AtomicUsize>);

    impl Subscriber for CountEvents {
        fn enabled(&self, _: &Metadata<'_>) -> bool {
            true
        }
        fn new_span(&self, _: &span::Attributes<'_>) -> span::Id {
            span::Id::from_u64(1)
        }
        fn record(&self, _: &span::Id, _: &span::Record<'_>) {}
        fn record_follows_from(&self, _: &span::Id, _: &span::Id) {}
        fn event(&self, _: &Event<'_>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
        fn enter(&self, _: &span::Id) {}
        fn exit(&self, _: &span::Id) {}
    }

    struct FailsToPrepare;

    impl Repeater for FailsToPrepare {
        async fn prepare(&mut self) -> Result<Repeat> {
            Err(crate::Error::msg("no device"))
        }
        async fn run(&mut self) -> Result<Repeat> {
            unreachable!("run after a failed prepare")
        }
    }

    #[test]
    fn a_failed_prepare_ends_the_repeater_with_its_error_and_leaves_logging_to_the_host() {
        let events = Arc::new(AtomicUsize::new(0));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let result = tracing::subscriber::with_default(CountEvents(Arc::clone(&events)), || {
            runtime.block_on(drive(
                "poller".into(),
                FailsToPrepare,
                || async {},
                || async { true },
            ))
        });
        assert_eq!(result, Err("poller error during setup: no device".into()));
        assert_eq!(
            events.load(Ordering::SeqCst),
            0,
            "the host logs the failed task"
        );
    }

    /// Counts its runs; never fails.
    struct Counting(Arc<AtomicUsize>);

    impl Repeater for Counting {
        async fn run(&mut self) -> Result<Repeat> {
            self.0.fetch_add(1, Ordering::SeqCst);
            Ok(Repeat::Continue)
        }
    }

    #[test]
    fn the_gate_is_passed_before_every_run_and_a_closed_one_ends_the_repeater() {
        let runs = Arc::new(AtomicUsize::new(0));
        let gates = Arc::new(AtomicUsize::new(0));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let passed = Arc::clone(&gates);
        // Open three times (three runs), then closed: the generation stopped.
        let gate = move || {
            let n = passed.fetch_add(1, Ordering::SeqCst);
            async move { n < 3 }
        };
        let result = runtime.block_on(drive(
            "counting".into(),
            Counting(Arc::clone(&runs)),
            || async {},
            gate,
        ));
        assert_eq!(result, Ok(()));
        assert_eq!(runs.load(Ordering::SeqCst), 3);
        assert_eq!(gates.load(Ordering::SeqCst), 4);
    }

    #[test]
    fn backoff_grows_and_caps() {
        assert_eq!(backoff(1), Duration::from_millis(100));
        assert_eq!(backoff(2), Duration::from_millis(200));
        assert_eq!(backoff(9), Duration::from_millis(25_600));
        assert_eq!(backoff(10), Duration::from_secs(30));
        assert_eq!(backoff(u32::MAX), Duration::from_secs(30));
    }
}
