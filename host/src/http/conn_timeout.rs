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
        Arc, Mutex,
    },
    task::{Context, Poll, Waker},
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
    /// The reader that last found nothing to read while a request was served: it must poll
    /// again when the response is done, or the idle limit would never be armed (hyper does
    /// not read again until woken).
    parked_reader: Mutex<Option<Waker>>,
}

impl Activity {
    pub fn new() -> Arc<Self> {
        Arc::new(Activity {
            opened: Instant::now(),
            serving: AtomicUsize::new(0),
            served: AtomicUsize::new(0),
            idle_since: AtomicU64::new(0),
            head_started: AtomicU64::new(0),
            parked_reader: Mutex::new(None),
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
        let parked = activity
            .parked_reader
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(reader) = parked {
            reader.wake();
        }
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
            Poll::Pending => {
                let Some(deadline) = this.activity.deadline(this.limits) else {
                    *this
                        .activity
                        .parked_reader
                        .lock()
                        .unwrap_or_else(|e| e.into_inner()) = Some(cx.waker().clone());
                    return Poll::Pending;
                };
                if Instant::now() >= deadline {
                    return Poll::Ready(Err(timed_out()));
                }
                if this.timer.deadline() != deadline {
                    this.timer.as_mut().reset(deadline);
                }
                match this.timer.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Err(timed_out())),
                    Poll::Pending => Poll::Pending,
                }
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

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
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
    async fn a_reader_parked_while_serving_gets_the_idle_limit_when_the_response_is_done() {
        let (_client, server) = tokio::io::duplex(64);
        let activity = Activity::new();
        let serving = activity.serving();
        let mut io = TimedIo::new(server, Arc::clone(&activity), LIMITS);
        let read = tokio::spawn(async move { io.read(&mut [0; 8]).await });
        tokio::task::yield_now().await;
        tokio::time::advance(Duration::from_secs(10)).await;
        assert!(!read.is_finished(), "no limit while serving");
        drop(serving);
        let err = read.await.unwrap().unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
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
