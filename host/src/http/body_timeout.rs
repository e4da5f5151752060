//! Time limits on receiving a request body: `--http-body-timeout` for the whole body, from
//! the moment the request's head was read, and `--http-body-idle-timeout` between two of its
//! chunks.
//!
//! The connection's own limits ([`super::conn_timeout`]) end when a request's head is read:
//! from then on the request is being served, however long its handler takes. A client that
//! announces a body and never sends it (or sends one byte a minute) would hold the
//! connection, its socket and the handler waiting for the body forever; enough of them lock
//! every other client out once the process runs out of file descriptors. Here the body
//! itself carries the limits: reading it fails with [`BodyTimeout`] once one has passed, the
//! reader answers 408 with `Connection: close`, and hyper closes the connection.

use std::{
    fmt,
    future::Future as _,
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use axum::body::{Body, Bytes};
use hyper::body::{Frame, SizeHint};
use tokio::time::{Instant, Sleep};

/// The two limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyTimeouts {
    /// The whole body, from the head.
    pub total: Duration,
    /// Between two chunks (and before the first).
    pub idle: Duration,
}

impl Default for BodyTimeouts {
    fn default() -> Self {
        BodyTimeouts {
            total: Duration::from_secs(60),
            idle: Duration::from_secs(30),
        }
    }
}

/// The body did not arrive in time.
#[derive(Debug)]
pub struct BodyTimeout {
    /// Which limit passed, for the message.
    idle: bool,
    limit: Duration,
}

impl fmt::Display for BodyTimeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (what, option) = if self.idle {
            (
                "no part of the request body arrived",
                "--http-body-idle-timeout",
            )
        } else {
            ("the request body did not arrive", "--http-body-timeout")
        };
        write!(f, "{what} within {} s ({option})", self.limit.as_secs_f64())
    }
}

impl std::error::Error for BodyTimeout {}

/// A body with the limits on it.
pub struct TimedBody {
    inner: Body,
    limits: BodyTimeouts,
    /// When the whole body must have arrived by.
    total: Instant,
    /// Made at the first read that has to wait: a body that is there already (most are,
    /// small ones arrive with the head) costs no timer.
    timer: Option<Pin<Box<Sleep>>>,
    /// When the next chunk must arrive by.
    idle: Instant,
}

impl TimedBody {
    pub fn new(inner: Body, limits: BodyTimeouts) -> Self {
        let now = Instant::now();
        let total = now + limits.total;
        let idle = now + limits.idle;
        TimedBody {
            inner,
            limits,
            total,
            timer: None,
            idle,
        }
    }

    /// The limit that passed first, if any.
    fn passed(&self, now: Instant) -> Option<BodyTimeout> {
        if now >= self.total {
            Some(BodyTimeout {
                idle: false,
                limit: self.limits.total,
            })
        } else if now >= self.idle {
            Some(BodyTimeout {
                idle: true,
                limit: self.limits.idle,
            })
        } else {
            None
        }
    }
}

impl hyper::body::Body for TimedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                this.idle = Instant::now() + this.limits.idle;
                Poll::Ready(frame)
            }
            Poll::Pending => loop {
                if let Some(timeout) = this.passed(Instant::now()) {
                    return Poll::Ready(Some(Err(axum::Error::new(timeout))));
                }
                let deadline = this.total.min(this.idle);
                let timer = this
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                if timer.deadline() != deadline {
                    timer.as_mut().reset(deadline);
                }
                match timer.as_mut().poll(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(()) => continue,
                }
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt as _;

    fn limits(total: u64, idle: u64) -> BodyTimeouts {
        BodyTimeouts {
            total: Duration::from_secs(total),
            idle: Duration::from_secs(idle),
        }
    }

    /// A body that sends one chunk every `every`, `count` times.
    fn trickle(count: usize, every: Duration) -> Body {
        let stream = futures::stream::unfold(0, move |sent| async move {
            if sent == count {
                return None;
            }
            tokio::time::sleep(every).await;
            Some((Ok::<_, std::io::Error>(Bytes::from_static(b"x")), sent + 1))
        });
        Body::from_stream(stream)
    }

    fn error_of(result: Result<impl Sized, axum::Error>) -> String {
        match result {
            Ok(_) => panic!("the body arrived"),
            Err(err) => std::error::Error::source(&err)
                .map(|e| e.to_string())
                .unwrap_or_else(|| err.to_string()),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_that_never_comes_fails_at_the_idle_limit() {
        let body = TimedBody::new(trickle(1, Duration::from_secs(3600)), limits(60, 5));
        let err = error_of(body.collect().await);
        assert!(err.contains("--http-body-idle-timeout"), "{err}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_trickle_fails_at_the_total_limit() {
        let body = TimedBody::new(trickle(100, Duration::from_secs(4)), limits(60, 5));
        let err = error_of(body.collect().await);
        assert!(err.contains("--http-body-timeout"), "{err}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_within_the_limits_arrives_whole() {
        let body = TimedBody::new(trickle(10, Duration::from_secs(4)), limits(60, 5));
        let bytes = body.collect().await.unwrap().to_bytes();
        assert_eq!(&bytes[..], b"xxxxxxxxxx");
    }
}
