//! Trying an eventbus operation again while a broker is briefly out of reach.
//!
//! A publish never fails silently: when the broker is down, a node of a cluster is lost, the
//! broker refuses the message (an AMQP nack) or its confirm does not come in time, the
//! plugin gets an error (kind [`Unavailable`](ErrorKind::Unavailable) or
//! [`Timeout`](ErrorKind::Timeout)). Most of those are over within a second or two: the host
//! moves on to the next broker of its list and reconnects by itself. [`Retry`] runs an
//! operation again after such an error, with growing pauses, a bounded number of times;
//! every other error (an invalid topic, a message over the size limit, a broker refusing
//! an exchange of another type) is returned at once, because trying again cannot help.
//!
//! A retried publish is *at least once*: a confirm lost with its connection means the
//! broker may have taken the message, and the retry sends it again. Handlers of the
//! message should tolerate a duplicate.

use std::{future::Future, time::Duration};

use crate::{Error, ErrorKind, Result};

/// How often and how patiently to try again, for the eventbus errors a broker failover
/// causes (`Unavailable`, `Timeout`).
///
/// ```no_run
/// use plugin_api::Retry;
/// # async fn demo(ctx: plugin_api::Context) -> plugin_api::Result<()> {
/// let reading = serde_json::json!({"temperature[degC]": 20.5});
/// Retry::default()
///     .run(|| ctx.publish("brewcast", "fermenter", &reading))
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retry {
    attempts: u32,
    first_pause: Duration,
    longest_pause: Duration,
}

/// The most attempts a [`Retry`] makes, whatever it is asked for.
pub const MAX_RETRY_ATTEMPTS: u32 = 100;

impl Default for Retry {
    /// 5 attempts, pausing 100 ms, 200 ms, 400 ms and 800 ms between them (about 1.5 s in
    /// all, longer than a broker list takes to move to the next node).
    fn default() -> Self {
        Retry {
            attempts: 5,
            first_pause: Duration::from_millis(100),
            longest_pause: Duration::from_secs(2),
        }
    }
}

impl Retry {
    /// The number of attempts, the first included: 1 means no retry. Bounded to
    /// 1..=[`MAX_RETRY_ATTEMPTS`].
    ///
    /// ```
    /// assert_eq!(plugin_api::Retry::default().attempts(0).max_attempts(), 1);
    /// ```
    pub fn attempts(mut self, attempts: u32) -> Self {
        self.attempts = attempts.clamp(1, MAX_RETRY_ATTEMPTS);
        self
    }

    /// The pause after the first failure; each next one doubles, up to `longest`.
    pub fn pauses(mut self, first: Duration, longest: Duration) -> Self {
        self.first_pause = first;
        self.longest_pause = longest.max(first);
        self
    }

    /// The number of attempts this makes at most.
    pub fn max_attempts(&self) -> u32 {
        self.attempts
    }

    /// The pause after the `failures`-th failed attempt (1-based).
    ///
    /// ```
    /// use std::time::Duration;
    /// let retry = plugin_api::Retry::default();
    /// assert_eq!(retry.pause(1), Duration::from_millis(100));
    /// assert_eq!(retry.pause(3), Duration::from_millis(400));
    /// assert_eq!(retry.pause(30), Duration::from_secs(2));
    /// ```
    pub fn pause(&self, failures: u32) -> Duration {
        let doubling = 1u32 << failures.saturating_sub(1).min(20);
        self.first_pause
            .saturating_mul(doubling)
            .min(self.longest_pause)
    }

    /// Whether an error is one that trying again can cure: the bus was unreachable, the
    /// broker refused the message for now (a nack), or did not answer in time.
    ///
    /// ```
    /// use plugin_api::{Error, Retry};
    /// assert!(Retry::is_transient(&Error::unavailable("eventbus down")));
    /// assert!(!Retry::is_transient(&Error::invalid("bad topic")));
    /// ```
    pub fn is_transient(err: &Error) -> bool {
        matches!(err.kind(), ErrorKind::Unavailable | ErrorKind::Timeout)
    }

    /// Runs `operation` until it succeeds, fails with an error that is not
    /// [transient](Self::is_transient), or has been tried [`max_attempts`](Self::max_attempts)
    /// times; the last error then, with the number of attempts in its message.
    pub async fn run<T, F, Fut>(&self, mut operation: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let mut failures = 0;
        loop {
            match operation().await {
                Ok(value) => return Ok(value),
                Err(err) if !Self::is_transient(&err) => return Err(err),
                Err(err) => {
                    failures += 1;
                    if failures >= self.attempts {
                        return Err(err.noted(&format!("after {failures} attempts")));
                    }
                    tokio::time::sleep(self.pause(failures)).await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    async fn count_until(retry: Retry, ok_at: u32, error: fn() -> Error) -> (Result<u32>, u32) {
        let calls = AtomicU32::new(0);
        let result = retry
            .run(|| async {
                let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
                if n >= ok_at {
                    Ok(n)
                } else {
                    Err(error())
                }
            })
            .await;
        (result, calls.load(Ordering::SeqCst))
    }

    #[tokio::test(start_paused = true)]
    async fn a_transient_error_is_tried_again_until_it_passes() {
        let (result, calls) =
            count_until(Retry::default(), 3, || Error::unavailable("eventbus down")).await;
        assert_eq!(result.ok(), Some(3));
        assert_eq!(calls, 3);
    }

    #[tokio::test(start_paused = true)]
    async fn the_attempts_are_bounded_and_the_last_error_says_how_many() {
        let retry = Retry::default().attempts(4);
        let (result, calls) = count_until(retry, u32::MAX, || Error::timeout("no confirm")).await;
        assert_eq!(calls, 4);
        let err = result.expect_err("never passes");
        assert_eq!(err.kind(), ErrorKind::Timeout);
        assert!(err.message().contains("after 4 attempts"), "{err}");
    }

    #[tokio::test(start_paused = true)]
    async fn an_error_a_retry_cannot_cure_is_returned_at_once() {
        let (result, calls) =
            count_until(Retry::default(), 2, || Error::invalid("bad topic")).await;
        assert_eq!(calls, 1);
        assert_eq!(result.expect_err("invalid").kind(), ErrorKind::Invalid);
    }

    #[tokio::test(start_paused = true)]
    async fn the_pauses_grow_and_are_capped() {
        let retry = Retry::default().pauses(Duration::from_millis(10), Duration::from_millis(30));
        let start = tokio::time::Instant::now();
        let (_, calls) = count_until(retry, 4, || Error::unavailable("down")).await;
        assert_eq!(calls, 4);
        // 10 + 20 + 30 ms of (paused, virtual) time.
        assert_eq!(start.elapsed(), Duration::from_millis(60));
    }
}
