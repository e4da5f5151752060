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

/// The repeater's loop, run as a host task.
pub(crate) async fn drive<R: Repeater>(name: String, mut repeater: R) -> Result<(), String> {
    match repeater.prepare().await {
        Ok(Repeat::Continue) => {}
        Ok(Repeat::Stop) => {
            tracing::info!("{name} cancelled during setup.");
            return Ok(());
        }
        Err(err) => {
            tracing::error!("{name} error during setup: {err}");
            return Err(format!("{name} error during setup: {err}"));
        }
    }
    let mut failures = 0u32;
    loop {
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
    use super::*;

    #[test]
    fn backoff_grows_and_caps() {
        assert_eq!(backoff(1), Duration::from_millis(100));
        assert_eq!(backoff(2), Duration::from_millis(200));
        assert_eq!(backoff(9), Duration::from_millis(25_600));
        assert_eq!(backoff(10), Duration::from_secs(30));
        assert_eq!(backoff(u32::MAX), Duration::from_secs(30));
    }
}
