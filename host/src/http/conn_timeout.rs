//! Time limits for a client connection while the server waits for a request: a client must
//! send a request's head within `--http-header-timeout`, and a keep-alive connection that
//! sends nothing for `--http-idle-timeout` is closed.
//!
//! hyper has one timer for both (its header-read timeout starts whenever it waits for a
//! head, so it also ends idle keep-alive connections), and none that knows whether a
//! request is being served. Here the connection's I/O is wrapped in [`TimedIo`], and the
//! service marks each request it serves in the connection's shared [`Activity`]: while a
//! request is served (its body read, its handler run, however long), no limit applies.
//!
//! | waiting for                                   | limit, counted from                  |
//! |-----------------------------------------------|--------------------------------------|
//! | the first request's head                      | header timeout, from the accept      |
//! | the next request on a keep-alive connection   | idle timeout, from the last response |
//! | the rest of a head whose first bytes came     | header timeout, from the first byte  |
//!
//! A connection past its limit fails its next read with `TimedOut`; hyper closes it.

use std::{
    future::Future,
    io,
    pin::Pin,
    sync::{
        atomic::{AtomicU64, AtomicUsize, Ordering},
        Arc,
    },
    task::{Context, Poll},
    time::Duration,
};

use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    time::{Instant, Sleep},
};

/// The two limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub header: Duration,
    pub idle: Duration,
}

/// What the service tells the I/O about one connection.
#[derive(Debug)]
pub struct Activity {
    opened: Instant,
    /// Requests being served.
    serving: AtomicUsize,
    /// Responses finished; 0 while the first request is awaited.
    served: AtomicUsize,
    /// Since `opened`, in µs: when the last response finished.
    idle_since: AtomicU64,
    /// Since `opened`, in µs, plus one: when the first byte of the awaited head came (0: none).
    head_started: AtomicU64,
}

impl Activity {
    pub fn new() -> Arc<Self> {
        Arc::new(Activity {
            opened: Instant::now(),
            serving: AtomicUsize::new(0),
            served: AtomicUsize::new(0),
            idle_since: AtomicU64::new(0),
            head_started: AtomicU64::new(0),
        })
    }

    fn micros(&self, at: Instant) -> u64 {
        u64::try_from(at.duration_since(self.opened).as_micros()).unwrap_or(u64::MAX)
    }

    fn at(&self, micros: u64) -> Instant {
        self.opened + Duration::from_micros(micros)
    }

    /// Marks a request as being served until the guard is dropped (its response is ready).
    pub fn serving(self: &Arc<Self>) -> Serving {
        self.serving.fetch_add(1, Ordering::SeqCst);
        self.head_started.store(0, Ordering::SeqCst);
        Serving(Arc::clone(self))
    }

    /// When the connection must have made progress by, if it is waiting for a request.
    fn deadline(&self, limits: Limits) -> Option<Instant> {
        if self.serving.load(Ordering::SeqCst) > 0 {
            return None;
        }
        let head = self.head_started.load(Ordering::SeqCst);
        Some(if head > 0 {
            self.at(head - 1) + limits.header
        } else if self.served.load(Ordering::SeqCst) == 0 {
            self.opened + limits.header
        } else {
            self.at(self.idle_since.load(Ordering::SeqCst)) + limits.idle
        })
    }

    fn bytes_arrived(&self) {
        if self.serving.load(Ordering::SeqCst) == 0 {
            let now = self.micros(Instant::now()) + 1;
            let _ = self
                .head_started
                .compare_exchange(0, now, Ordering::SeqCst, Ordering::SeqCst);
        }
    }
}

/// See [`Activity::serving`].
pub struct Serving(Arc<Activity>);

impl Drop for Serving {
    fn drop(&mut self) {
        let activity = &self.0;
        activity
            .idle_since
            .store(activity.micros(Instant::now()), Ordering::SeqCst);
        activity.served.fetch_add(1, Ordering::SeqCst);
        activity.serving.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A connection's I/O with the limits applied to its reads.
pub struct TimedIo<T> {
    inner: T,
    activity: Arc<Activity>,
    limits: Limits,
    timer: Pin<Box<Sleep>>,
}

impl<T> TimedIo<T> {
    pub fn new(inner: T, activity: Arc<Activity>, limits: Limits) -> Self {
        TimedIo {
            inner,
            activity,
            limits,
            timer: Box::pin(tokio::time::sleep(limits.header)),
        }
    }
}

fn timed_out() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, "client sent no request in time")
}

impl<T: AsyncRead + Unpin> AsyncRead for TimedIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    this.activity.bytes_arrived();
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(err)) => Poll::Ready(Err(err)),
            Poll::Pending => match this.activity.deadline(this.limits) {
                Some(deadline) => this.arm(deadline, cx),
                None => Poll::Pending,
            },
        }
    }
}

impl<T> TimedIo<T> {
    /// Makes sure the task is woken by `deadline`, and fails the read once it has passed.
    ///
    /// The timer is moved only when it would fire too late: each response moves the idle
    /// deadline a little further, and moving a tokio timer costs more than the rest of the
    /// request's bookkeeping. A timer that fires early just wakes the task, which finds the
    /// deadline still ahead and arms it again.
    fn arm(&mut self, deadline: Instant, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            if Instant::now() >= deadline {
                return Poll::Ready(Err(timed_out()));
            }
            if self.timer.deadline() > deadline || self.timer.is_elapsed() {
                self.timer.as_mut().reset(deadline);
            }
            match self.timer.as_mut().poll(cx) {
                Poll::Pending => return Poll::Pending,
                // Fired before `deadline` (armed for an earlier one): go round once more.
                Poll::Ready(()) => continue,
            }
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for TimedIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    /// A response has been written: the connection now waits for the next request, so its
    /// limit is armed here. hyper does not read again until the socket is readable (it read
    /// to `Pending` while the request was served, when no limit applied), so without this
    /// an idle connection would never time out; waking it to read again would cost every
    /// request a second poll of the connection.
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let flushed = Pin::new(&mut this.inner).poll_flush(cx);
        if flushed.is_ready() {
            if let Some(deadline) = this.activity.deadline(this.limits) {
                if this.arm(deadline, cx).is_ready() {
                    // Already past it: have the read find out.
                    cx.waker().wake_by_ref();
                }
            }
        }
        flushed
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const LIMITS: Limits = Limits {
        header: Duration::from_millis(200),
        idle: Duration::from_millis(600),
    };

    #[tokio::test(start_paused = true)]
    async fn a_silent_new_connection_times_out_after_the_header_limit() {
        let (client, server) = tokio::io::duplex(64);
        let mut io = TimedIo::new(server, Activity::new(), LIMITS);
        let started = Instant::now();
        let err = io.read(&mut [0; 8]).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_eq!(started.elapsed(), LIMITS.header);
        drop(client);
    }

    #[tokio::test(start_paused = true)]
    async fn a_keep_alive_connection_gets_the_idle_limit_and_serving_has_none() {
        let (mut client, server) = tokio::io::duplex(64);
        let activity = Activity::new();
        let mut io = TimedIo::new(server, Arc::clone(&activity), LIMITS);
        client.write_all(b"GET").await.unwrap();
        assert_eq!(io.read(&mut [0; 8]).await.unwrap(), 3);

        // While a request is served, nothing times out, however long it takes.
        let serving = activity.serving();
        let read = tokio::time::timeout(Duration::from_secs(3600), io.read(&mut [0; 8])).await;
        assert!(read.is_err(), "still waiting after an hour");
        drop(serving);

        let started = Instant::now();
        let err = io.read(&mut [0; 8]).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_eq!(started.elapsed(), LIMITS.idle);
    }

    #[tokio::test(start_paused = true)]
    async fn the_idle_limit_is_armed_when_a_response_is_flushed() {
        // hyper does not read again after a response until the socket is readable, so the
        // flush must arm the idle limit.
        let (_client, server) = tokio::io::duplex(64);
        let activity = Activity::new();
        let mut io = TimedIo::new(server, Arc::clone(&activity), LIMITS);
        tokio::time::advance(Duration::from_secs(5)).await;
        drop(activity.serving());
        io.flush().await.unwrap();
        let idle_deadline = activity.deadline(LIMITS).unwrap();
        assert_eq!(io.timer.deadline(), idle_deadline);
        assert!(!io.timer.is_elapsed());
    }

    #[tokio::test(start_paused = true)]
    async fn a_head_started_on_a_keep_alive_connection_gets_the_header_limit() {
        let (mut client, server) = tokio::io::duplex(64);
        let activity = Activity::new();
        let mut io = TimedIo::new(server, Arc::clone(&activity), LIMITS);
        drop(activity.serving());
        tokio::time::advance(Duration::from_millis(100)).await;
        client.write_all(b"GE").await.unwrap();
        assert_eq!(io.read(&mut [0; 8]).await.unwrap(), 2);
        let started = Instant::now();
        let err = io.read(&mut [0; 8]).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_eq!(started.elapsed(), LIMITS.header);
    }
}
